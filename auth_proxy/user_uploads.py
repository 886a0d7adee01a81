"""A member's upload form (`/upload/image`, `/upload/mask`), rewritten as it streams to
ComfyUI: the file lands in their own folder, and a mask is only ever made from a file they
may read.

ComfyUI's form (server.py `image_upload`): `image` (the file), `type` (input, the default;
output or temp), `subfolder`, `overwrite`, and for a mask `original_ref`, a JSON reference
to the image the mask is cut from, which ComfyUI opens and copies into the upload. The
gate re-frames the form with its own boundary and:
- `subfolder` is moved into the member's folder (one is added when the form has none), so
  a name can only collide with their own files, and `overwrite=true` can only replace them;
  ComfyUI's answer names the subfolder the file landed in, as it does for every upload;
- each file part's name is checked (no folder in it: ComfyUI joins it to the folder, so
  `../bob/x.png` would land in another's) and its header written anew, so that ComfyUI
  reads the very name the gate checked;
- `original_ref` must name a file the member may read (auth_proxy/user_files.py).

The file is passed on in chunks as it arrives (uploads may be videos of many GB); the small
text fields are read whole, up to FIELD_MAX bytes. A form found wrong part-way is refused:
the stream to ComfyUI is cut, so ComfyUI stores nothing, and the client gets the refusal.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import BodyPartReader, web

from auth_proxy.user_files import BadName, FileRef, file_ref, user_subfolder

CHUNK = 256 * 1024
FIELD_MAX = 64 * 1024


class FormRefused(Exception):
    def __init__(self, response: web.Response):
        super().__init__(response.status)
        self.response = response


def bad_form(message: str, status: int = 400) -> FormRefused:
    return FormRefused(web.json_response({"error": message}, status=status))


def plain(value: str, what: str) -> str:
    """A name written into a part's header as it is: nothing a parser could read otherwise."""
    if any(c in value for c in '"\\') or any(ord(c) < 32 or c == "\x7f" for c in value):
        raise bad_form(f"{what} may not hold a quote, a backslash or a control character")
    return value


class UploadForm:
    """`body()` is the rewritten form for ComfyUI, `content_type` its header; `refusal`
    is set when the stream was cut because the form was refused."""

    def __init__(
        self,
        request: web.Request,
        user: str,
        may_read: Callable[[FileRef], Awaitable[bool]],
    ):
        self.request = request
        self.user = user
        self.may_read = may_read
        self.boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self.refusal: web.Response | None = None

    async def body(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._parts():
                yield chunk
        except FormRefused as exc:
            self.refusal = exc.response
            raise

    async def _parts(self) -> AsyncIterator[bytes]:
        try:
            reader = await self.request.multipart()
        except (AssertionError, ValueError, KeyError):
            raise bad_form("send the upload as multipart/form-data") from None
        had_subfolder = False
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise bad_form("a form part may not itself be multipart")
            name = part.name or ""
            if part.filename is not None:
                yield self._head(name, part.filename, part.headers.get("Content-Type"))
                while chunk := await part.read_chunk(CHUNK):
                    yield chunk
                yield b"\r\n"
                continue
            text = await self._field(part, name)
            if name == "subfolder":
                had_subfolder = True
                try:
                    text = user_subfolder(text, self.user)
                except BadName as exc:
                    raise bad_form(str(exc)) from None
            elif name == "original_ref":
                await self._check_ref(text)
            yield self._field_bytes(name, text)
        if not had_subfolder:
            yield self._field_bytes("subfolder", self.user)
        yield f"--{self.boundary}--\r\n".encode()

    def _head(self, name: str, filename: str, ctype: str | None) -> bytes:
        if not filename or filename in (".", "..") or "/" in filename:
            raise bad_form("the file's name may not hold a folder")
        lines = [
            f"--{self.boundary}",
            f'Content-Disposition: form-data; name="{plain(name, "a field name")}"; '
            f'filename="{plain(filename, "the file name")}"',
        ]
        if ctype:
            lines.append(f"Content-Type: {ctype}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def _field(self, part: BodyPartReader, name: str) -> str:
        data = bytearray()
        while chunk := await part.read_chunk(CHUNK):
            data += chunk
            if len(data) > FIELD_MAX:
                raise bad_form(f"the form field {name!r} is longer than {FIELD_MAX} bytes", 413)
        return bytes(data).decode("utf-8", errors="replace")

    def _field_bytes(self, name: str, text: str) -> bytes:
        head = f'Content-Disposition: form-data; name="{plain(name, "a field name")}"'
        return f"--{self.boundary}\r\n{head}\r\n\r\n{text}\r\n".encode()

    async def _check_ref(self, text: str) -> None:
        """The image a mask is cut from, as ComfyUI's upload_mask reads it (type defaulting
        to output): another person's file is as missing as one that does not exist."""
        try:
            ref = json.loads(text)
            found = file_ref(
                str(ref["filename"]), str(ref.get("type", "output")), str(ref.get("subfolder", ""))
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise bad_form(
                "original_ref must be a JSON object naming a file: filename, subfolder, type"
            ) from None
        except BadName as exc:
            raise bad_form(f"original_ref: {exc}") from None
        if not await self.may_read(found):
            raise FormRefused(web.Response(status=404))
