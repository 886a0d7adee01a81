"""Where each person's files are, and which file names are theirs (rules only, no I/O).

A member's files live in a folder named after their account in each of ComfyUI's three
folders: outputs in `output/<name>/` (the gate rewrites every `filename_prefix` of their
prompts), uploads in `input/<name>/` (the gate rewrites the upload form's `subfolder`), and
whatever they upload or save as temporary in `temp/<name>/`. Account names are safe as
folder names (auth_proxy/accounts.py). The admin's prompts and uploads are left as they
are, so their existing files and workflows stay where they were.

A member may read: in `output`, their folder; in `input`, their folder and the files at the
top of `input/` (shared: what the admin put there); in `temp`, their folder and the
previews their own prompts produced (auth_proxy/user_previews.py). The names are read as
ComfyUI's /view reads them (server.py `view_image`, folder_paths.annotated_filepath), so
that the gate decides on the very file ComfyUI would serve.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX_INPUT = "filename_prefix"
KINDS = ("output", "input", "temp")  # folder_paths.get_directory_by_type
# ComfyUI's annotated names ("x.png [output]") pick the folder whatever `type` says; it cuts
# the annotation and the character before it.
ANNOTATIONS = (("[output]", "output"), ("[input]", "input"), ("[temp]", "temp"))


class BadName(ValueError):
    """A name that could leave its folder, or that ComfyUI would read differently; the
    message says which (a 400)."""


def parts_of(value: str, what: str) -> list[str]:
    """The folder names of a relative path, as os.path.normpath leaves them; `..`, absolute
    paths, backslashes (a separator on Windows) and control characters are refused."""
    if any(ord(c) < 32 or c == "\x7f" for c in value) or "\\" in value:
        raise BadName(f"{what} holds a backslash or a control character")
    if value.startswith("/"):
        raise BadName(f"{what} must be a relative path, not {value!r}")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadName(f"{what} may not contain '..'")
    return parts


def user_subfolder(value: str, user: str) -> str:
    """A member's upload `subfolder`, moved into their folder (one already there stays)."""
    parts = parts_of(value, "subfolder")
    return "/".join(parts if parts[:1] == [user] else [user, *parts])


def user_prefix(value: str, user: str) -> str:
    """A member's `filename_prefix`, moved into their folder. ComfyUI takes its last part as
    the file name's start, so a prefix already in their folder must keep a part after it
    ("alice" alone would be a file named alice_00001_.png at the top of output/)."""
    parts = parts_of(value, PREFIX_INPUT)
    if not parts:
        raise BadName(f"{PREFIX_INPUT} is empty: give the saved files' name")
    return "/".join(parts if parts[:1] == [user] and len(parts) > 1 else [user, *parts])


def own_outputs(prompt: dict, user: str) -> None:
    """Rewrite, in place, every `filename_prefix` of a member's prompt (API format:
    {node_id: {"class_type", "inputs"}}) into their output folder: SaveImage, the animated
    and video savers, SaveAudio, SaveGLB, the model savers, VideoHelperSuite's VideoCombine
    and every pack node that names its files the same way (folder_paths.get_save_image_path).

    A prefix fed by another node (`[node_id, slot]`) is refused: its text is only known
    while the prompt runs, and it could name another person's folder or the top of output/.
    """
    for node_id, node in prompt.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict) or PREFIX_INPUT not in inputs:
            continue
        value = inputs[PREFIX_INPUT]
        if not isinstance(value, str):
            raise BadName(
                f"node {node_id}: {PREFIX_INPUT} must be text written in the node (a member's "
                "outputs go to their own folder, which a value from another node could leave)"
            )
        try:
            inputs[PREFIX_INPUT] = user_prefix(value, user)
        except BadName as exc:
            raise BadName(f"node {node_id}: {exc}") from None


@dataclass(frozen=True)
class FileRef:
    """One file of ComfyUI's folders, as /view names it."""

    kind: str  # "output", "input" or "temp"; anything else is no file of a person's
    subfolder: tuple[str, ...]
    name: str


def file_ref(filename: str, kind: str, subfolder: str) -> FileRef:
    """The file a /view-style query names (`filename`, `type` defaulting to output,
    `subfolder`), read as ComfyUI reads it; a name with a slash in it is refused (ComfyUI
    would read only its last part: one name, one file)."""
    for annotation, annotated in ANNOTATIONS:
        if filename.endswith(annotation):
            filename, kind = filename[: -len(annotation) - 1], annotated
            break
    if not filename or filename in (".", "..") or "/" in filename:
        raise BadName("filename must be a file's name, without a folder (that goes in subfolder)")
    if any(ord(c) < 32 or c == "\x7f" for c in filename) or "\\" in filename:
        raise BadName("filename holds a backslash or a control character")
    return FileRef(kind, tuple(parts_of(subfolder, "subfolder")), filename)


def in_own_folder(ref: FileRef, user: str) -> bool:
    return ref.kind in KINDS and ref.subfolder[:1] == (user,)


def shared(ref: FileRef) -> bool:
    """A file at the top of input/: what the admin put there for everyone."""
    return ref.kind == "input" and not ref.subfolder
