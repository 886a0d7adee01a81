"""ComfyUI's official workflow templates as model profiles: `template:NAME`.

The pinned ComfyUI's requirements install the templates its frontend offers (the
`comfyui-workflow-templates` package; newer releases move the graphs into
`comfyui-workflow-templates-json`). On each loader node a template's graph carries
`properties.models`: the file name, the hub URL and the folder of the models the node may
load. The profile `template:NAME` is the set the frontend itself reports as needed when it
opens the template (its missing-models check): the entries whose name is the node's current
widget value, on every node including those in subgraph definitions, plus the graph's
top-level `models`. The package is read where ComfyUI has it, at run time; nothing of it is
copied into this repository.

Only `https://huggingface.co/<owner>/<repo>/resolve/<revision>/<path>` URLs become sources
(`hf://...`, so HF_ENDPOINT, HF_TOKEN and the hub's sha256 apply as for any curated file).
Any other URL (a Civitai download, a hub `blob` page) is reported, never turned into a
guessed source: such a file must come from `--from` or be added to the manifest.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import logging
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import ManifestError, UsageError
from .manifest import Manifest, ManifestFile, check_destination
from .settings import Settings
from .uris import SourceURI

log = logging.getLogger(__name__)

PREFIX = "template:"
# Import names that hold a templates/ folder with index.json, the newer layout first (the
# 0.2+ meta package `comfyui_workflow_templates` has none and is skipped by that test).
PACKAGES = ("comfyui_workflow_templates_json", "comfyui_workflow_templates")
HUB_HOSTS = ("huggingface.co", "www.huggingface.co")
# Run in ComfyUI's interpreter when the package is not importable here (a bare-metal
# `comfyctl serve` keeps ComfyUI's packages in COMFYUI_PYTHON's environment).
_FIND = (
    "import importlib.util, os, sys\n"
    "for name in sys.argv[1:]:\n"
    "    spec = importlib.util.find_spec(name)\n"
    "    for where in (spec and spec.submodule_search_locations) or ():\n"
    "        print(os.path.join(where, 'templates'))\n"
)


@dataclass(frozen=True)
class TemplateModel:
    folder: str
    path: str
    url: str
    source: SourceURI | None  # None: the URL is not a hub resolve URL (see `problem`)

    @property
    def dest(self) -> str:
        return f"{self.folder}/{self.path}"


@dataclass(frozen=True)
class Template:
    name: str
    title: str
    size_gb: float | None  # the index's published download size, when it has one
    models: tuple[TemplateModel, ...]
    problems: tuple[str, ...]  # entries that cannot be synced as the template gives them

    @property
    def profile(self) -> str:
        return PREFIX + self.name

    @property
    def unsourced(self) -> tuple[TemplateModel, ...]:
        return tuple(m for m in self.models if m.source is None)


def unsourced_problem(m: TemplateModel) -> str:
    return (
        f"{m.dest}: {m.url} is not a hub resolve URL (https://huggingface.co/<owner>/<repo>/"
        "resolve/<revision>/<path>); add the file to the manifest with a source, or sync "
        "with --from a bucket holding it"
    )


def template_names(profiles: tuple[str, ...]) -> list[str]:
    return [p[len(PREFIX) :] for p in profiles if p.startswith(PREFIX)]


def hub_source(url: str) -> SourceURI | None:
    """`https://huggingface.co/O/R/resolve/REV/PATH[?download=true]` -> hf://O/R/PATH@REV
    (no @ for main, the default); anything else -> None."""
    parts = urlsplit(url)
    bits = [unquote(b) for b in parts.path.split("/")[1:]]
    if (
        parts.scheme != "https"
        or parts.hostname not in HUB_HOSTS
        or len(bits) < 5
        or bits[2] != "resolve"
        or not all(bits)
    ):
        return None
    revision = "" if bits[3] == "main" else bits[3]
    return SourceURI("hf", f"{bits[0]}/{bits[1]}", "/".join(bits[4:]), revision)


def _candidates_here() -> list[Path]:
    out = []
    for name in PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        out += [Path(p) / "templates" for p in (spec and spec.submodule_search_locations) or ()]
    return out


def _candidates_in(python: Path) -> list[Path]:
    try:
        out = subprocess.run(
            [str(python), "-c", _FIND, *PACKAGES], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("cannot ask %s where the templates are: %s", python, exc)
        return []
    return [Path(line) for line in out.stdout.splitlines() if line.strip()]


def find_templates_dir(explicit: Path | None, comfyui_python: Path | None) -> Path:
    """The installed templates folder (the one with index.json)."""
    if explicit is not None:
        if (explicit / "index.json").is_file():
            return explicit
        raise UsageError(
            f"MODEL_SYNC_TEMPLATES_DIR / --templates-dir {explicit} has no index.json: "
            "point it at the templates/ folder of ComfyUI's templates package"
        )
    for candidate in _candidates_here() + (_candidates_in(comfyui_python) if comfyui_python else []):
        if (candidate / "index.json").is_file():
            return candidate
    where = f"here or in COMFYUI_PYTHON={comfyui_python}" if comfyui_python else "here"
    raise UsageError(
        f"ComfyUI's official templates are not installed {where}: install ComfyUI's "
        "requirements (comfyui-workflow-templates), set COMFYUI_PYTHON to ComfyUI's "
        "interpreter, or MODEL_SYNC_TEMPLATES_DIR to the package's templates/ folder"
    )


def embedded_models(graph: dict) -> list[dict]:
    """The model entries the frontend collects from a graph when it opens it."""
    nodes = list(graph.get("nodes") or [])
    for sub in (graph.get("definitions") or {}).get("subgraphs") or []:
        nodes += sub.get("nodes") or []
    found = []
    for node in nodes:
        models = (node.get("properties") or {}).get("models") or []
        values = node.get("widgets_values") or []
        values = list(values.values()) if isinstance(values, dict) else values
        chosen = {v for v in values if isinstance(v, str) and v.strip()}
        found += [m for m in models if isinstance(m, dict) and m.get("name") in chosen]
    found += [m for m in graph.get("models") or [] if isinstance(m, dict)]
    return [m for m in found if m.get("url")]


def resolve(
    name: str, graph: dict, folders: frozenset[str], extensions: frozenset[str]
) -> tuple[tuple[TemplateModel, ...], tuple[str, ...]]:
    """The template's files, one per destination, and the entries that cannot be synced as
    given: a folder or file name ComfyUI would not list, or one destination named with two
    different sources (which one is meant is not guessed)."""
    models: dict[str, TemplateModel] = {}
    problems: list[str] = []
    for entry in embedded_models(graph):
        folder, path, url = str(entry.get("directory") or ""), str(entry.get("name") or ""), str(entry["url"])
        try:
            check_destination(folder, path, folders, extensions, f"template {name}")
        except ManifestError as exc:
            problems.append(str(exc))
            continue
        model = TemplateModel(folder, path, url, hub_source(url))
        known = models.get(model.dest)
        if known is None:
            models[model.dest] = model
        elif (known.source or known.url) != (model.source or model.url):
            problems.append(
                f"{model.dest}: named with two sources, {known.url} and {url}; "
                "add the file to the manifest with the one you want"
            )
    return tuple(models.values()), tuple(problems)


class Library:
    """The templates of one installed package."""

    def __init__(self, directory: Path):
        self.dir = directory
        self._index: dict[str, dict] | None = None

    def index(self) -> dict[str, dict]:
        """name -> its index entry (title, size in GB, ...), in the frontend's order."""
        if self._index is None:
            try:
                categories = json.loads((self.dir / "index.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ManifestError(f"cannot read {self.dir / 'index.json'}: {exc}") from None
            self._index = {
                t["name"]: t
                for c in categories
                for t in c.get("templates") or []
                if isinstance(t, dict) and t.get("name")
            }
        return self._index

    def load(self, name: str, folders: frozenset[str], extensions: frozenset[str]) -> Template:
        path = self.dir / f"{name}.json"
        if "/" in name or name.startswith(".") or not path.is_file():
            close = difflib.get_close_matches(name, list(self.index()), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UsageError(
                f"no official template {name!r} in {self.dir}{hint}; "
                "`python -m model_sync templates` lists them"
            )
        try:
            graph = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ManifestError(f"template {name}: cannot read {path}: {exc}") from None
        entry = self.index().get(name, {})
        size = entry.get("size")
        models, problems = resolve(name, graph, folders, extensions)
        return Template(
            name,
            str(entry.get("title") or name),
            float(size) if isinstance(size, (int, float)) and size > 0 else None,
            models,
            problems,
        )


def with_templates(
    manifest: Manifest, profiles: tuple[str, ...], library: Library, from_prefix: str | None
) -> Manifest:
    """The manifest plus a profile for each `template:NAME` selected.

    A destination the manifest already has keeps the manifest's entry (its pinned size,
    sha256 and commit, and its source), joined to the template's profile. Any other problem,
    and without --from a file with no hub source, stops the sync before anything is
    transferred."""
    files = {f.dest: f for f in manifest.files}
    declared = dict(manifest.profiles)
    for name in template_names(profiles):
        t = library.load(name, manifest.folders, manifest.extensions)
        problems = list(t.problems)
        if not from_prefix:
            problems += [unsourced_problem(m) for m in t.unsourced if m.dest not in files]
        if problems:
            raise ManifestError(f"template {name}: " + "; ".join(problems))
        declared[t.profile] = t.title
        for m in t.models:
            known = files.get(m.dest)
            if known is not None:
                if known.source != m.source:
                    log.info(
                        "%s names %s at %s; the manifest's source %s is used",
                        t.profile,
                        m.dest,
                        m.url,
                        known.source,
                    )
                files[m.dest] = replace(known, profiles=known.profiles + (t.profile,))
            else:
                # Without a hub source the file can only come from --from (checked above);
                # the URL is kept for messages and never fetched.
                source = m.source or SourceURI(urlsplit(m.url).scheme or "https", url=m.url)
                files[m.dest] = ManifestFile(m.folder, m.path, source, m.dest, (t.profile,))
    return replace(manifest, profiles=declared, files=tuple(files.values()))


def apply_templates(manifest: Manifest, settings: Settings) -> Manifest:
    """`with_templates` for the selected profiles; the package is looked for only when a
    `template:` profile is selected, so curated syncs never depend on it."""
    if not template_names(settings.profiles):
        return manifest
    library = Library(find_templates_dir(settings.templates_dir, settings.comfyui_python))
    return with_templates(manifest, settings.profiles, library, settings.from_prefix)
