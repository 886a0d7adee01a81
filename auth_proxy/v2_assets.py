"""The Comfy API v2 asset routes: upload (multipart, streamed to disk and hashed with
blake3 in one pass), mint over a known blob, existence by hash, metadata and content
(Range-capable, from the data volume or fetched back from COMFY_OUTPUTS_TO)."""

from __future__ import annotations

import hashlib
import logging
import re
import time

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from auth_proxy.v2_common import ApiError, asset_json
from comfy_jobs.blobs import PREFIX
from comfy_jobs.errors import AssetTooLarge, IdempotencyKeyReuse
from comfy_jobs.ledger import IdemKey
from comfy_jobs.model import Asset
from comfy_jobs.outputs import new_asset_id
from comfy_jobs.workflow import content_type_of

log = logging.getLogger(__name__)
FIELD_LIMIT = 4096
TAG = re.compile(r"^[A-Za-z0-9 _.:/-]{1,64}$")  # category labels such as "input"
# A media type as RFC 9110 writes it; anything else is not served back as Content-Type.
MEDIA_TYPE = re.compile(
    r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+"
    r"(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(\"[\x20-\x7e]*\"|[A-Za-z0-9!#$&^_.+-]+))*$"
)


def check_digest(value) -> str:
    if (
        not isinstance(value, str)
        or not value.startswith(PREFIX)
        or len(value) != len(PREFIX) + 64
        or any(c not in "0123456789abcdef" for c in value[len(PREFIX) :])
    ):
        raise ApiError(
            404, "blob_not_found", "no blob with that hash; hashes are written blake3:<64 hex digits>"
        )
    return value


class AssetRoutes:
    def __init__(self, service):
        self.svc = service
        self.in_flight: set[str] = set()

    async def upload(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            raise ApiError(
                422, "invalid_request", "send multipart/form-data with file, content_type and file_path"
            )
        key = request.headers.get("Idempotency-Key")
        if key is not None and key in self.in_flight:
            raise ApiError(
                409,
                "idempotency_conflict",
                "an upload with this Idempotency-Key is still in progress",
                None,
                **{"Retry-After": "1"},
            )
        if key is not None:
            self.in_flight.add(key)
        try:
            return await self._upload(request, key)
        except (ValueError, BadHttpMessage) as exc:  # aiohttp's multipart parser refused the body
            raise ApiError(
                422, "invalid_request", f"malformed multipart body: {str(exc).splitlines()[0]}"
            ) from None
        finally:
            self.in_flight.discard(key)

    async def _upload(self, request: web.Request, key: str | None) -> web.Response:
        fields: dict[str, str] = {}
        tags: list[str] = []
        stored = None
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue  # a nested multipart: no field of the contract's
            if part.name == "file":
                try:
                    stored = await self.svc.blobs.ingest(_chunks(part), self.svc.s.asset_max_bytes)
                except AssetTooLarge as exc:
                    raise ApiError(422, "too_large", f"the file is {exc}") from None
                fields.setdefault("_name", part.filename or "")
            elif part.name:
                text = (await part.read(decode=True))[:FIELD_LIMIT].decode("utf-8", "replace")
                if part.name == "tags":
                    tags.append(text)
                else:
                    fields[part.name] = text
        missing = [f for f in ("content_type", "file_path") if not fields.get(f)] + (
            [] if stored else ["file"]
        )
        if missing:
            raise ApiError(422, "invalid_request", f"missing multipart field(s): {', '.join(missing)}")
        bad_tags = [t for t in tags if not TAG.match(t)]
        if bad_tags or len(tags) > 32:
            raise ApiError(
                422, "invalid_request", "tags are up to 32 labels of 1-64 letters, digits, space or _.:/-"
            )
        assert stored is not None
        digest, size, created_new = stored
        expected = fields.get("expected_hash")
        if expected and expected != digest:
            raise ApiError(
                409,
                "hash_mismatch",
                f"the bytes hash to {digest}, not {expected}; nothing was stored under a new asset",
                {"computed": digest, "expected": expected},
            )
        idem = None
        if key is not None:
            idem = IdemKey(
                key,
                hashlib.sha256(
                    f"{digest}\0{fields['file_path']}\0{fields['content_type']}\0{','.join(tags)}".encode()
                ).hexdigest(),
            )
            try:
                earlier = await self.svc.ledger.idem_lookup("assets", idem)
            except IdempotencyKeyReuse:
                raise ApiError(
                    422,
                    "idempotency_key_reuse",
                    "this Idempotency-Key was used for another upload; use a new key",
                ) from None
            if earlier and (asset := await self.svc.ledger.get_asset(earlier)):
                return web.json_response(
                    asset_json(request, asset, False), status=200, headers={"Idempotency-Replayed": "true"}
                )
        ctype = fields["content_type"].strip()
        if not MEDIA_TYPE.match(ctype):
            ctype = content_type_of(fields["file_path"])
        asset = Asset(
            new_asset_id(), digest, size, ctype, fields["file_path"], time.time(), tags=tags or ["input"]
        )
        await self.svc.ledger.put_asset(asset)
        if created_new:  # in a cluster the worker that runs the job fetches it from there
            await self.svc.files.mirror_blob(digest)
        if idem is not None:
            await self.svc.ledger.idem_record("assets", idem, asset.id)
        headers = {"Idempotency-Replayed": "false"} if idem else {}
        return web.json_response(
            asset_json(request, asset, created_new), status=201 if created_new else 200, headers=headers
        )

    async def from_hash(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
            body = None
        if not isinstance(body, dict):
            raise ApiError(404, "blob_not_found", "send {\"hash\": \"blake3:...\"}")
        digest = check_digest(body.get("hash"))
        known = await self.svc.ledger.find_blob(digest)
        if known is None or not (self.svc.blobs.exists(digest) or known.remote_uri):
            raise ApiError(
                404, "blob_not_found", f"no blob {digest} here; upload the bytes with POST /api/v2/assets"
            )
        file_path = body.get("file_path") if isinstance(body.get("file_path"), str) else None
        tags = (
            [t for t in body.get("tags") or [] if isinstance(t, str)]
            if isinstance(body.get("tags"), list)
            else []
        )
        if known.file_path == file_path and known.job_id is None:
            return web.json_response(asset_json(request, known, False), status=200)
        asset = Asset(
            new_asset_id(),
            digest,
            known.size,
            content_type_of(file_path or "", known.content_type),
            file_path,
            time.time(),
            tags=tags or ["input"],
        )
        await self.svc.ledger.put_asset(asset)
        return web.json_response(asset_json(request, asset, False), status=201)

    async def head_by_hash(self, request: web.Request, hash: str) -> web.Response:  # noqa: A002 - the contract's
        try:
            digest = check_digest(hash)
        except ApiError:
            return web.Response(status=404)
        known = await self.svc.ledger.find_blob(digest)
        ok = known is not None and (self.svc.blobs.exists(digest) or known.remote_uri)
        return web.Response(status=200 if ok else 404)

    async def _asset(self, asset_id: str) -> Asset:
        asset = await self.svc.ledger.get_asset(asset_id)
        if asset is None:
            raise ApiError(404, "not_found", f"no asset {asset_id}")
        return asset

    async def get(self, request: web.Request, id: str) -> web.Response:  # noqa: A002
        return web.json_response(asset_json(request, await self._asset(id)))

    async def content(self, request: web.Request, id: str) -> web.StreamResponse:  # noqa: A002
        asset = await self._asset(id)
        try:
            path = await self.svc.blobs.ensure_local(asset.hash, asset.remote_uri)
        except Exception as exc:  # noqa: BLE001 - object storage failed or the copy is damaged
            log.error("asset %s: cannot fetch it back from %s: %s", id, asset.remote_uri, exc)
            raise ApiError(
                404,
                "not_found",
                f"the bytes of asset {id} are gone here and the stored copy "
                f"could not be fetched or failed verification: {exc}",
            ) from None
        if path is None:
            raise ApiError(404, "not_found", f"the bytes of asset {id} are gone from this server")
        name = re.sub(r"[^A-Za-z0-9._ -]", "_", (asset.file_path or asset.id).rsplit("/", 1)[-1])[-120:]
        # FileResponse answers Range (206, 416) and HEAD the way the contract asks.
        return web.FileResponse(
            path,
            headers={
                "Content-Type": asset.content_type,
                "Content-Disposition": f'inline; filename="{name}"',
                "Cache-Control": "private, max-age=3600",
                "X-Content-Type-Options": "nosniff",
            },
        )


async def _chunks(part):
    while chunk := await part.read_chunk(1 << 18):
        yield chunk
