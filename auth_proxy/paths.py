"""The normalised path that the gate's decisions are made on.

The proxy decides on the percent-decoded path with dot segments and repeated slashes
resolved, so that no spelling (`%2e%2e`, `//`, `%252e`) changes what a path means to the
gate. Which routes are open without a login is said in auth_proxy/routes.py, by route: a
request that does not reach one of those routes is relayed, and only after the login.
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote


class BadPath(ValueError):
    pass


def normalise(raw_path: str) -> str:
    """Decode (repeatedly, so %252e cannot hide a dot) and collapse to one absolute path."""
    path = raw_path
    for _ in range(3):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    if "\x00" in path or "\\" in path:
        raise BadPath(raw_path)
    norm = posixpath.normpath("/" + path.lstrip("/"))
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm


def is_api_path(norm_path: str) -> bool:
    return norm_path.startswith("/api/") or norm_path == "/ws" or norm_path.startswith("/internal/")
