"""Which paths are open without a login, decided on the normalised path.

ComfyUI (aiohttp) normalises `..` and `//` itself and matches routes case-sensitively, so
the proxy decides on the same normalised, percent-decoded path it forwards: anything that
would reach ComfyUI is a protected path, whatever its spelling or file extension.
"""
from __future__ import annotations

import posixpath
from urllib.parse import unquote

# Exact paths reachable without credentials; everything else needs a login.
PUBLIC = {"/login", "/healthz", "/readyz", "/_auth/login.css", "/favicon.ico"}
OWN = PUBLIC | {"/logout", "/metrics", "/_auth/password"}


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


def is_public(norm_path: str) -> bool:
    return norm_path in PUBLIC


def is_api_path(norm_path: str) -> bool:
    return norm_path.startswith("/api/") or norm_path == "/ws" or norm_path.startswith("/internal/")
