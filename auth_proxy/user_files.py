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

from comfy_jobs.member_policy import BadName, parts_of

KINDS = ("output", "input", "temp")  # folder_paths.get_directory_by_type
# ComfyUI's annotated names ("x.png [output]") pick the folder whatever `type` says; it cuts
# the annotation and the character before it.
ANNOTATIONS = (("[output]", "output"), ("[input]", "input"), ("[temp]", "temp"))


def user_subfolder(value: str, user: str) -> str:
    """A member's upload `subfolder`, moved into their folder (one already there stays)."""
    parts = parts_of(value, "subfolder")
    return "/".join(parts if parts[:1] == [user] else [user, *parts])


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
