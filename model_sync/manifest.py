"""The model manifest (workflows/models.yaml): parsing and validation.

Validation is strict because a typo in a folder key or path would otherwise surface as a
model that ComfyUI silently does not list, an hour into a pod's life.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ManifestError
from .uris import SourceURI, parse_uri

# ComfyUI's folder_paths keys (plus the legacy aliases it still maps) and the ones the
# bundled packs register. A manifest may add more under `folders:`.
FOLDER_KEYS = frozenset(
    {
        "checkpoints",
        "configs",
        "loras",
        "vae",
        "text_encoders",
        "clip",
        "diffusion_models",
        "unet",
        "clip_vision",
        "style_models",
        "embeddings",
        "diffusers",
        "vae_approx",
        "controlnet",
        "t2i_adapter",
        "gligen",
        "upscale_models",
        "latent_upscale_models",
        "hypernetworks",
        "photomaker",
        "classifiers",
        "model_patches",
        "audio_encoders",
        "unet_gguf",
        "clip_gguf",
    }
)
EXTENSIONS = frozenset({".safetensors", ".sft", ".ckpt", ".pt", ".pt2", ".pth", ".bin", ".pkl", ".gguf"})


@dataclass(frozen=True)
class ManifestFile:
    folder: str
    path: str
    source: SourceURI
    key: str
    profiles: tuple[str, ...]
    size: int | None = None
    sha256: str | None = None

    @property
    def dest(self) -> str:
        """Destination relative to the models directory."""
        return f"{self.folder}/{self.path}"


@dataclass(frozen=True)
class Manifest:
    profiles: dict[str, str]
    files: tuple[ManifestFile, ...]
    folders: frozenset[str] = field(default=FOLDER_KEYS)
    extensions: frozenset[str] = field(default=EXTENSIONS)


def check_destination(
    folder: str, path: str, folders: frozenset[str], extensions: frozenset[str], where: str
) -> None:
    """Raise ManifestError unless <folder>/<path> is a safe, recognised model destination."""
    if folder not in folders:
        raise ManifestError(
            f"{where}: unknown folder key {folder!r}; use one of "
            f"{', '.join(sorted(folders))} or declare it under `folders:`"
        )
    norm = posixpath.normpath(path) if path else ""
    if (
        not path
        or path.startswith("/")
        or norm != path
        or norm.startswith("..")
        or "\\" in path
        or any(part.startswith(".") for part in path.split("/"))
    ):
        raise ManifestError(
            f"{where}: path {path!r} must be a plain relative path (no leading /, no .. or hidden parts)"
        )
    ext = posixpath.splitext(path)[1].lower()
    if ext not in extensions:
        raise ManifestError(
            f"{where}: unrecognised extension {ext or '(none)'!r} in {path!r}; "
            f"ComfyUI lists {', '.join(sorted(extensions))} "
            "(declare others under `extensions:`)"
        )


def parse_manifest(data: object, origin: str = "manifest") -> Manifest:
    if not isinstance(data, dict):
        raise ManifestError(f"{origin}: expected a mapping with version, profiles, files")
    if data.get("version") != 1:
        raise ManifestError(f"{origin}: `version: 1` is required (got {data.get('version')!r})")
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise ManifestError(f"{origin}: `profiles` must map a profile name to its description")
    folders = FOLDER_KEYS | frozenset(data.get("folders") or ())
    extensions = EXTENSIONS | frozenset(e.lower() for e in (data.get("extensions") or ()))
    raw_files = data.get("files")
    if not isinstance(raw_files, list):
        raise ManifestError(f"{origin}: `files` must be a list")
    files: list[ManifestFile] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(raw_files):
        where = f"{origin}: files[{i}]"
        if not isinstance(entry, dict):
            raise ManifestError(f"{where}: expected a mapping")
        unknown = set(entry) - {"folder", "path", "size", "sha256", "source", "key", "profiles"}
        if unknown:
            raise ManifestError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        folder, path = entry.get("folder"), entry.get("path")
        if not isinstance(folder, str) or not isinstance(path, str):
            raise ManifestError(f"{where}: `folder` and `path` are required strings")
        where = f"{where} ({folder}/{path})"
        check_destination(folder, path, folders, extensions, where)
        if "source" not in entry:
            raise ManifestError(f"{where}: `source` is required")
        try:
            source = parse_uri(entry["source"])
        except ManifestError as exc:
            raise ManifestError(f"{where}: {exc}") from None
        size = entry.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise ManifestError(f"{where}: `size` must be a non-negative integer of bytes")
        sha = entry.get("sha256")
        if sha is not None:
            sha = str(sha).lower()
            if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                raise ManifestError(f"{where}: `sha256` must be 64 hex digits")
        file_profiles = entry.get("profiles") or []
        if not isinstance(file_profiles, list) or not all(isinstance(p, str) for p in file_profiles):
            raise ManifestError(f"{where}: `profiles` must be a list of profile names")
        for p in file_profiles:
            if p not in profiles:
                raise ManifestError(f"{where}: profile {p!r} is not declared under `profiles:`")
        key = entry.get("key") or f"{folder}/{path}"
        mf = ManifestFile(folder, path, source, str(key).lstrip("/"), tuple(file_profiles), size, sha)
        if mf.dest in seen:
            raise ManifestError(
                f"{where}: destination {mf.dest} is also given by "
                f"files[{seen[mf.dest]}]; keep one entry per destination"
            )
        seen[mf.dest] = i
        files.append(mf)
    return Manifest(dict(profiles), tuple(files), folders, extensions)


def load_manifest(path: str | Path) -> Manifest:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}; check --manifest") from None
    try:
        # libyaml's loader when PyYAML was built with it: a 2,000-entry manifest parses in
        # a tenth of the time, which is most of a warm start.
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise ManifestError(f"manifest {path} is not valid YAML: {exc}") from None
    return parse_manifest(data, str(path))
