"""The server `comfyctl run` talks to: its address, its credentials (sent to its own origin
only), and how its answers are read: bounded, into typed errors, never trusted as shaped.

Whatever a server sends (a ComfyUI, the gate, or anything answering on that address) is
read as untrusted: JSON bodies up to MAX_JSON bytes and of the expected type, text shown
on one line without control characters, URLs followed with the credentials only when
they point at the server's own origin.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from comfy_stack import variables as v
from comfy_stack.env import Env
from comfyctl.errors import BadAnswer
from comfyctl.saving import Budget
from comfyctl.workflow import WorkflowError

MAX_JSON = 64 << 20  # a history entry of thousands of outputs is a few MB
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def shown(text, limit: int = 300) -> str:
    """Server text fit for one line of a terminal: no control characters (no escape
    sequences, no line breaks), at most `limit` characters."""
    text = CONTROL.sub(" ", str(text)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Server:
    """Where to send the workflow and how to sign in: each from its flag, else its variable."""

    url: str
    token: str = field(default="", repr=False)
    user: str = ""
    password: str = field(default="", repr=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Server:
        env = Env(environ, error=WorkflowError)
        return cls(
            env.get(v.COMFY_SERVER, args.server).rstrip("/"),
            env.get(v.COMFY_TOKEN, args.token),
            env.get(v.COMFY_USER, args.user),
            env.get(v.COMFY_PASSWORD, args.password),
        )

    def auth_headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.user:
            return {"Authorization": aiohttp.BasicAuth(self.user, self.password).encode()}
        return {}

    def at(self, ref) -> str:
        """The URL for a path or URL the server handed us: a path is under --server (as a
        prefix behind a reverse proxy keeps working), a URL must be http(s)."""
        if isinstance(ref, str) and ref.startswith("/") and not ref.startswith("//"):
            return self.url + ref
        if isinstance(ref, str):
            try:
                url = URL(ref)
            except ValueError:
                url = None
            if url is not None and url.scheme in ("http", "https") and url.host:
                return ref
        raise BadAnswer(
            f"the server sent {shown(repr(ref), 120)} where a URL belongs; is --server the right server?"
        )

    def headers_for(self, url: str) -> dict[str, str]:
        """The credentials, for a URL of the server's own origin only: an output URL naming
        another host gets none (a server cannot make comfyctl hand its token elsewhere)."""
        try:
            same = URL(url).origin() == URL(self.url).origin()
        except ValueError:
            same = False
        return self.auth_headers() if same else {}


async def snippet(resp: aiohttp.ClientResponse, limit: int = 300) -> str:
    """The start of an error answer, for a message (never the whole body)."""
    try:
        return shown((await resp.content.read(limit)).decode("utf-8", "replace"), limit)
    except (aiohttp.ClientError, ValueError):
        return ""


async def read_json(resp: aiohttp.ClientResponse, what: str, kind: type = dict):
    """The answer's JSON, at most MAX_JSON bytes and of `kind`, else BadAnswer."""
    body = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > MAX_JSON:
            raise BadAnswer(f"{what}: the answer is over {MAX_JSON} bytes; is --server the right server?")
    try:
        data = json.loads(bytes(body))
    except ValueError:
        raise BadAnswer(
            f"{what}: the answer (HTTP {resp.status}, {shown(resp.content_type, 60)}) is not JSON: "
            f"{shown(body[:120].decode('utf-8', 'replace'), 120)!r}; is --server a ComfyUI or this project's gate?"
        ) from None
    return expect(data, kind, what)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def expect(value, kind: type, what: str):
    """`value` if it is a `kind`, else BadAnswer naming what was found."""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadAnswer(
            f"{what}: expected {kind.__name__}, the server sent {type(value).__name__} "
            f"{shown(repr(value), 80)}; is --server the right server?"
        )
    return value


@dataclass
class Run:
    """One `comfyctl run`: the server, its HTTP session, the bytes it may still write, and
    what it is doing now (for the message when --timeout ends it)."""

    server: Server
    budget: Budget
    session: aiohttp.ClientSession = field(init=False, repr=False)
    doing: str = "connecting"

    def url(self, path: str) -> str:
        return self.server.url + path

    @property
    def auth(self) -> dict[str, str]:
        """Credentials for a request to --server itself (its origin, by construction)."""
        return self.server.auth_headers()
