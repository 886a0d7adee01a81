"""The v2 asset routes: upload (multipart, streamed to disk and hashed in one pass), a new
asset over a known blob, existence by hash, metadata and content (Range-capable); each
reads the request, calls the service's assets (comfy_jobs/assets.py) and writes its answer."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from typing import TypeVar

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from auth_proxy.replies import USER_FILE
from auth_proxy.v2.shapes import asset_json
from auth_proxy.v2.wire import caller_of, parse_json
from comfy_jobs.assets import Upload
from comfy_jobs.errors import NotFound, Stalled, Unacceptable
from comfy_jobs.model import Caller
from comfy_jobs.service import JobsService

T = TypeVar("T")
FIELD_LIMIT = 4096  # bytes of one text field
MAX_FIELDS = 64  # text fields (tags included) in one form: with FIELD_LIMIT, what a form may hold
# A body that stops arriving is given up after this long without a byte, with its temp file.
IDLE_S = 30.0


async def _timed(read: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(read, IDLE_S)
    except asyncio.TimeoutError:
        raise Stalled(IDLE_S) from None


async def _chunks(part: BodyPartReader):
    while chunk := await _timed(part.read_chunk(1 << 18)):
        yield chunk


class AssetRoutes:
    def __init__(self, service: JobsService):
        self.svc = service

    async def upload(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            raise Unacceptable(
                "invalid_request", "send multipart/form-data with file, content_type and file_path"
            )
        key = request.headers.get("Idempotency-Key")
        assets, caller = self.svc.assets, caller_of(request)
        try:
            async with assets.exclusive(caller, key):
                upload, stored = Upload(), None
                reader = await request.multipart()
                while (part := await _timed(reader.next())) is not None:
                    if not isinstance(part, BodyPartReader):
                        continue  # a nested multipart: no field of the contract's
                    if part.name == "file":
                        if stored is not None:
                            raise Unacceptable("invalid_request", "send one file part per upload")
                        async with assets.staged(_chunks(part)) as staged:
                            # the rest of the form (the expected hash may follow the file)
                            stored = await self._finish(reader, caller, upload, staged, key)
                        break
                    await self._field(part, upload)
                if stored is None:
                    stored = await assets.store(caller, None, upload, key)
        except (ValueError, BadHttpMessage) as exc:  # aiohttp's multipart parser refused the body
            raise Unacceptable(
                "invalid_request", f"malformed multipart body: {str(exc).splitlines()[0]}"
            ) from None
        if stored.replayed:
            return web.json_response(
                asset_json(request, stored.asset, False), status=200, headers={"Idempotency-Replayed": "true"}
            )
        headers = {"Idempotency-Replayed": "false"} if key is not None else {}
        return web.json_response(
            asset_json(request, stored.asset, stored.created_new),
            status=201 if stored.created_new else 200,
            headers=headers,
        )

    async def _finish(self, reader, caller: Caller, upload: Upload, staged, key):
        while (part := await _timed(reader.next())) is not None:
            if isinstance(part, BodyPartReader):
                if part.name == "file":
                    raise Unacceptable("invalid_request", "send one file part per upload")
                await self._field(part, upload)
        return await self.svc.assets.store(caller, staged, upload, key)

    @staticmethod
    async def _field(part: BodyPartReader, upload: Upload) -> None:
        if not part.name:
            return
        upload.parts += 1
        if upload.parts > MAX_FIELDS:
            raise Unacceptable("invalid_request", f"a form of at most {MAX_FIELDS} fields; send fewer tags")
        data = bytearray()
        while chunk := await _timed(part.read_chunk(FIELD_LIMIT)):
            data += chunk
            if len(data) > FIELD_LIMIT:
                raise Unacceptable(
                    "invalid_request", f"the field {part.name[:40]!r} is over {FIELD_LIMIT} bytes"
                )
        text = part.decode(bytes(data)).decode("utf-8", "replace")
        if part.name == "tags":
            upload.tags.append(text)
        else:
            upload.fields[part.name] = text

    async def from_hash(self, request: web.Request) -> web.Response:
        try:
            body = parse_json(await request.read())
        except Unacceptable:
            body = None
        if not isinstance(body, dict):
            raise NotFound("blob_not_found", 'send {"hash": "blake3:..."}')
        asset, new = await self.svc.assets.from_hash(
            caller_of(request), body.get("hash"), body.get("file_path"), body.get("tags")
        )
        return web.json_response(asset_json(request, asset, False), status=201 if new else 200)

    async def head_by_hash(self, request: web.Request, hash: str) -> web.Response:  # noqa: A002 - the contract's
        return web.Response(status=200 if await self.svc.assets.has_blob(caller_of(request), hash) else 404)

    async def get(self, request: web.Request, id: str) -> web.Response:  # noqa: A002
        return web.json_response(asset_json(request, await self.svc.assets.get(caller_of(request), id)))

    async def content(self, request: web.Request, id: str) -> web.StreamResponse:  # noqa: A002
        asset = await self.svc.assets.get(caller_of(request), id)
        path = await self.svc.assets.local_path(asset)
        name = re.sub(r"[^A-Za-z0-9._ -]", "_", (asset.file_path or asset.id).rsplit("/", 1)[-1])[-120:]
        # FileResponse answers Range (206, 416) and HEAD the way the contract asks. Shown
        # inline with its own type (an image in a page), under the rule ComfyUI's /view
        # answers get: an uploaded HTML or SVG page runs no script in this origin.
        return web.FileResponse(
            path,
            headers={
                "Content-Type": asset.content_type,
                "Content-Disposition": f'inline; filename="{name}"',
                "Cache-Control": "private, max-age=3600",
                **USER_FILE,
            },
        )
