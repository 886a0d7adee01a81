"""The v2 asset rules: an upload's fields, its Idempotency-Key, its expected hash (checked
before the bytes get a name, so a mismatch stores nothing), a new asset over a blob already
held, and where an asset's bytes are (fetched back from object storage when the local copy
is gone).

Each asset is its owner's (model.Caller): a member reaches only their own, and bytes only
another person holds are unknown to them (by-hash, from-hash, and an upload of the same
bytes says `created_new` as for bytes never seen), so no answer tells what others uploaded.
The blob store itself is shared: the same bytes are kept once."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from comfy_jobs.blobs import PREFIX, BlobStore, Staged
from comfy_jobs.errors import Conflict, HashMismatch, NotFound, Unacceptable
from comfy_jobs.idempotency import idem_key
from comfy_jobs.ledger import Ledger
from comfy_jobs.model import Asset, Caller
from comfy_jobs.outputs import Files, new_asset_id
from comfy_jobs.workflow import content_type_of

log = logging.getLogger(__name__)
TAG = re.compile(r"^[A-Za-z0-9 _.:/-]{1,64}$")  # category labels such as "input"
MAX_TAGS = 32
# A media type as RFC 9110 writes it; anything else is not served back as Content-Type.
MEDIA_TYPE = re.compile(
    r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+"
    r"(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(\"[\x20-\x7e]*\"|[A-Za-z0-9!#$&^_.+-]+))*$"
)


@dataclass
class Upload:
    """What an upload form carried: its text fields and tags (the bytes are staged apart)."""

    fields: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    parts: int = 0  # text parts read, a repeated name counted each time


@dataclass(frozen=True)
class Stored:
    asset: Asset
    created_new: bool  # the blob was not held before
    replayed: bool  # an earlier upload with the same Idempotency-Key answered


def check_digest(value: object) -> str:
    if (
        not isinstance(value, str)
        or not value.startswith(PREFIX)
        or len(value) != len(PREFIX) + 64
        or any(c not in "0123456789abcdef" for c in value[len(PREFIX) :])
    ):
        raise NotFound("blob_not_found", "no blob with that hash; hashes are written blake3:<64 hex digits>")
    return value


class Assets:
    def __init__(self, ledger: Ledger, blobs: BlobStore, files: Files, max_bytes: int):
        self.ledger, self.blobs, self.files, self.max_bytes = ledger, blobs, files, max_bytes
        self._in_flight: set[tuple[str, str]] = set()

    @contextlib.asynccontextmanager
    async def exclusive(self, caller: Caller, key: str | None):
        """One upload per Idempotency-Key (the caller's) at a time in this process: a second
        one is told to come back rather than storing the bytes twice."""
        mine = (caller.user, key) if key is not None else None
        if mine is not None and mine in self._in_flight:
            raise Conflict(
                "idempotency_conflict",
                "an upload with this Idempotency-Key is still in progress",
                retry_after_s=1,
            )
        if mine is not None:
            self._in_flight.add(mine)
        try:
            yield
        finally:
            if mine is not None:
                self._in_flight.discard(mine)

    def staged(self, chunks: AsyncIterator[bytes]) -> contextlib.AbstractAsyncContextManager[Staged]:
        """The file part's bytes, hashed in a temp file; `store` names them."""
        return self.blobs.staged(chunks, self.max_bytes)

    async def store(self, caller: Caller, staged: Staged | None, upload: Upload, key: str | None) -> Stored:
        fields, tags = upload.fields, upload.tags
        missing = [f for f in ("content_type", "file_path") if not fields.get(f)] + (
            [] if staged else ["file"]
        )
        if missing:
            raise Unacceptable("invalid_request", f"missing multipart field(s): {', '.join(missing)}")
        assert staged is not None
        if len(tags) > MAX_TAGS or not all(TAG.match(t) for t in tags):
            raise Unacceptable(
                "invalid_request", f"tags are up to {MAX_TAGS} labels of 1-64 letters, digits, space or _.:/-"
            )
        expected = fields.get("expected_hash")
        if expected and expected != staged.digest:
            raise HashMismatch(staged.digest, expected)
        ctype = fields["content_type"].strip()
        if not MEDIA_TYPE.match(ctype):
            ctype = content_type_of(fields["file_path"])
        idem = idem_key(
            key,
            {"hash": staged.digest, "file_path": fields["file_path"], "content_type": ctype, "tags": tags},
            caller.user,
        )
        if idem is not None:
            earlier = await self.ledger.idem_lookup("assets", idem)
            if earlier and (asset := await self.ledger.get_asset(earlier, caller.scope)):
                return Stored(asset, False, True)
        # new to the caller, whoever else holds the same bytes (that is not theirs to learn)
        held_before = await self.ledger.find_blob(staged.digest, caller.scope) is not None
        if await staged.keep():  # in a cluster the worker that runs the job fetches it from there
            await self.files.mirror_blob(staged.digest)
        asset = Asset(
            new_asset_id(),
            staged.digest,
            staged.size,
            ctype,
            fields["file_path"],
            time.time(),
            tags=tags or ["input"],
            owner=caller.user,
        )
        await self.ledger.put_asset(asset)
        if idem is not None:
            await self.ledger.idem_record("assets", idem, asset.id)
        return Stored(asset, not held_before, False)

    async def from_hash(
        self, caller: Caller, digest: object, file_path: object, tags: object
    ) -> tuple[Asset, bool]:
        """A new asset of the caller's over a blob they hold already (uploaded before, or an
        output of their job), or the upload it came from when that one has the same name:
        (asset, new)."""
        digest = check_digest(digest)
        known = await self.ledger.find_blob(digest, caller.scope)
        if known is None or not (self.blobs.exists(digest) or known.remote_uri):
            raise NotFound(
                "blob_not_found", f"no blob {digest} here; upload the bytes with POST /api/v2/assets"
            )
        path = file_path if isinstance(file_path, str) else None
        labels = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
        if known.file_path == path and known.job_id is None:
            return known, False
        asset = Asset(
            new_asset_id(),
            digest,
            known.size,
            content_type_of(path or "", known.content_type),
            path,
            time.time(),
            tags=labels or ["input"],
            owner=caller.user,
        )
        await self.ledger.put_asset(asset)
        return asset, True

    async def has_blob(self, caller: Caller, digest: str) -> bool:
        """Whether the caller holds these bytes (in an asset of theirs)."""
        try:
            digest = check_digest(digest)
        except NotFound:
            return False
        known = await self.ledger.find_blob(digest, caller.scope)
        return known is not None and (self.blobs.exists(digest) or bool(known.remote_uri))

    async def get(self, caller: Caller, asset_id: str) -> Asset:
        asset = await self.ledger.get_asset(asset_id, caller.scope)
        if asset is None:
            raise NotFound("not_found", f"no asset {asset_id}")
        return asset

    async def local_path(self, asset: Asset) -> Path:
        """The asset's bytes on this volume, fetched back (and verified) from object storage
        when the local copy is gone."""
        try:
            path = await self.blobs.ensure_local(asset.hash, asset.remote_uri)
        except Exception as exc:  # noqa: BLE001 - object storage failed or the copy is damaged
            log.error("asset %s: cannot fetch it back from %s: %s", asset.id, asset.remote_uri, exc)
            raise NotFound(
                "not_found",
                f"the bytes of asset {asset.id} are gone here and the stored copy "
                f"could not be fetched or failed verification: {exc}",
            ) from None
        if path is None:
            raise NotFound("not_found", f"the bytes of asset {asset.id} are gone from this server")
        return path
