"""Verification of a downloaded (or present) file against what the source and manifest say.

One sequential pass (during a ranged download, or a read afterwards) computes every digest
needed: OSS's CRC64-ECMA through oss2's own Crc64; for S3 the store's full-object CRC32 when it
keeps one (zlib, about five times cheaper than MD5), else the MD5 of a single-part ETag; and
the manifest's sha256. A .safetensors file
also has its header parsed by the safetensors library and its data offsets checked against
the file size, which catches truncation even when no digest is published.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError, safe_open

from .errors import VerificationError

log = logging.getLogger(__name__)
CHUNK = 4 * 1024 * 1024
_MD5 = re.compile(r"^[0-9a-f]{32}$")


def etag_md5(etag: str) -> str | None:
    """The MD5 a single-part ETag is (S3 and OSS alike, in either case), or None: a multipart
    ETag ends in "-N" and is no digest of the content."""
    etag = etag.strip('"').lower()
    return etag if _MD5.match(etag) else None


@dataclass(frozen=True)
class Expect:
    size: int
    crc64: str | None = None
    md5: str | None = None
    sha256: str | None = None
    crc32: int | None = None  # an S3 store's full-object x-amz-checksum-crc32


def _crc64():
    # Imported here: oss2 (with the Alibaba Cloud SDK it pulls in) takes longer to import
    # than the rest of model_sync together, and only OSS sources publish a CRC64.
    from oss2.utils import Crc64

    return Crc64()


class Digests:
    """The digests an Expect asks for, fed in file order.

    A ranged download feeds it as the contiguous prefix of finished parts grows, so hashing
    overlaps the transfer instead of re-reading the whole file afterwards.
    """

    def __init__(self, expect: Expect):
        self.crc = _crc64() if expect.crc64 else None
        self.md5 = hashlib.md5() if expect.md5 else None
        self.sha = hashlib.sha256() if expect.sha256 else None
        self.crc32 = 0 if expect.crc32 is not None else None
        self.fed = 0
        self.vouched_crc64: str | None = None  # checked by oss2 against the server already

    @property
    def needed(self) -> bool:
        return any(d is not None for d in (self.crc, self.md5, self.sha, self.crc32))

    @property
    def crc32_only(self) -> bool:
        """Only a CRC32 is asked for: it can be computed per part, in any order, and combined."""
        return self.crc32 is not None and self.crc is None and self.md5 is None and self.sha is None

    def update(self, chunk: bytes) -> None:
        for d in (self.crc, self.md5, self.sha):
            if d is not None:
                d.update(chunk)
        if self.crc32 is not None:
            self.crc32 = zlib.crc32(chunk, self.crc32)
        self.fed += len(chunk)

    def update_crc32_parts(self, parts: list[tuple[int, int]]) -> None:
        """Feed the file as consecutive parts of which only (CRC32, length) is known."""
        assert self.crc32_only and self.crc32 is not None
        for crc, length in parts:
            self.crc32 = crc32_combine(self.crc32, crc, length)
            self.fed += length


# CRC32 of a concatenation from the CRCs of its pieces, as zlib's crc32_combine does
# (zlib 1.2.12's multmodp/x2nmodp); Python's zlib module does not expose it. Arithmetic on
# polynomials over GF(2) modulo the CRC-32 polynomial, bit-reflected as zlib keeps it.
_POLY = 0xEDB88320


def _multmodp(a: int, b: int) -> int:
    """a(x) * b(x) modulo the polynomial."""
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if a & (m - 1) == 0:
                return p
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1


def _x2n_table() -> list[int]:
    table, p = [], 1 << 30  # x^1
    for _ in range(32):
        table.append(p)
        p = _multmodp(p, p)
    return table


_X2N = _x2n_table()


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC32 of A + B from crc1 = crc32(A), crc2 = crc32(B) and len2 = len(B)."""
    p, k = 1 << 31, 3  # x^0; the shift is 8 * len2 bits = len2 * 2^3
    n = len2
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return _multmodp(p, crc1) ^ crc2


def verify_file(path: Path, expect: Expect, what: str, digests: Digests | None = None) -> str | None:
    """Raise VerificationError on any mismatch; return the sha256 when it was computed.

    `digests` already fed with the whole file (during the download) saves the re-read.
    """
    size = path.stat().st_size
    if size != expect.size:
        raise VerificationError(f"{what}: size {size} != expected {expect.size}")
    if digests is None or digests.fed != size:
        vouched = digests.vouched_crc64 if digests is not None else None
        if vouched is not None and str(vouched) == str(expect.crc64):
            expect = Expect(expect.size, None, expect.md5, expect.sha256, expect.crc32)
        digests = Digests(expect)
        if digests.needed:
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    digests.update(chunk)
    crc, md5, sha = digests.crc, digests.md5, digests.sha
    if digests.crc32 is not None and digests.crc32 != expect.crc32:
        raise VerificationError(
            f"{what}: CRC32 {digests.crc32:08x} != source x-amz-checksum-crc32 {expect.crc32:08x}"
        )
    if crc is not None and str(crc.crc) != str(expect.crc64):
        raise VerificationError(f"{what}: CRC64 {crc.crc} != source x-oss-hash-crc64ecma {expect.crc64}")
    if md5 is not None and md5.hexdigest() != expect.md5:
        raise VerificationError(f"{what}: MD5 {md5.hexdigest()} != source ETag {expect.md5}")
    if sha is not None and sha.hexdigest() != expect.sha256:
        raise VerificationError(f"{what}: sha256 {sha.hexdigest()} != expected {expect.sha256}")
    if path.name.endswith(".safetensors") or ".safetensors." in path.name:
        check_safetensors(path, size, what)
    return sha.hexdigest() if sha is not None else None


def check_safetensors(path: Path, size: int, what: str) -> None:
    """The header parses and the last tensor ends exactly at the end of the file."""
    try:
        with open(path, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(min(header_len, 100_000_000)))
        # The library validates dtypes, shapes and that offsets are contiguous and inside
        # the file; we add that the data region ends exactly at the file size.
        with safe_open(str(path), framework="numpy"):
            pass
        end = max((int(m["data_offsets"][1]) for k, m in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise VerificationError(f"{what}: not a valid safetensors file ({exc})") from None
    if 8 + header_len + end != size:
        raise VerificationError(
            f"{what}: safetensors data ends at byte {8 + header_len + end}, the file has {size}"
        )
