"""Where a request came from and which host it asked for.

Behind a reverse proxy (the bundled Ingress) every connection comes from the proxy, so the
client's address is in X-Forwarded-For, and the host and scheme the browser used are in
X-Forwarded-Host and X-Forwarded-Proto. Those headers are believed only when the
connection comes from AUTH_PROXY_TRUSTED_PROXIES; from anyone else they are the client's
own claims and are ignored (and not passed on to ComfyUI).

Written here rather than taken from aiohttp-remotes: its strict variant wants one trusted
set per hop and refuses direct clients that send the header, and both variants take the
scheme and host from the first (client-written) value.

The Host check stops DNS rebinding: a page on a name the attacker controls, re-pointed at
this server, arrives with that name in Host (and in Origin, so same-origin checks pass).
A name is answered only when it is built in (below) or in AUTH_PROXY_ALLOWED_HOSTS.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from functools import lru_cache

from aiohttp import web

# Suffixes of names a browser resolves only inside the machine or the cluster.
INTERNAL_SUFFIXES = (".localhost", ".svc", ".svc.cluster.local", ".cluster.local")


@dataclass(frozen=True)
class Arrival:
    peer: str  # the address the connection came from
    client: str  # the client's address: the peer, or the last untrusted X-Forwarded-For hop
    host: str  # host[:port] the client asked for
    scheme: str  # "http" or "https", as the client used it
    forwarded_for: str  # the X-Forwarded-For chain to send on, ending with the peer
    trusted: bool  # the peer is a trusted proxy


def _ip(value: str):
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(address: str, networks: tuple) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip in net for net in networks)


def _last(request: web.Request, name: str) -> str | None:
    values = [
        v.strip() for header in request.headers.getall(name, []) for v in header.split(",") if v.strip()
    ]
    return values[-1] if values else None


def arrival(request: web.Request, trusted_proxies: tuple) -> Arrival:
    peer = request.remote or ""
    if not _trusted(peer, trusted_proxies):
        return Arrival(peer, peer, request.host, request.scheme, peer, False)
    hops = [h.strip() for header in request.headers.getall("X-Forwarded-For", []) for h in header.split(",")]
    hops = [h for h in hops if _ip(h) is not None]
    # Walk back from the nearest hop: the first address that is not a trusted proxy is the
    # client; what lies before it was written by the client and proves nothing.
    client = peer
    for hop in reversed(hops):
        client = hop
        if not _trusted(hop, trusted_proxies):
            break
    scheme = (_last(request, "X-Forwarded-Proto") or request.scheme).lower()
    chain = ", ".join([*hops, peer])
    return Arrival(
        peer,
        client,
        _last(request, "X-Forwarded-Host") or request.host,
        scheme if scheme in ("http", "https") else request.scheme,
        chain,
        True,
    )


@lru_cache(maxsize=1)
def machine_names() -> frozenset[str]:
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(n for n in names if n)


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """`host` (with or without a port) is a name this server answers to.

    Built in: IP literals (a page can only reach those under their own origin, so no
    rebinding is possible), `localhost` and `*.localhost`, single-label names (resolved by
    the local network, not by an attacker's DNS), this machine's own names, and Kubernetes
    Service names (`*.svc`, `*.svc.cluster.local`). AUTH_PROXY_ALLOWED_HOSTS adds names
    (`comfy.example.com`, `*.example.com`), or `*` for any.
    """
    name = host.strip().lower()
    if name.startswith("["):  # [v6]:port
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    name = name.rstrip(".")
    if not name or _ip(name) is not None or name == "localhost" or "." not in name:
        return True
    if name.endswith(INTERNAL_SUFFIXES) or name in machine_names():
        return True
    for pattern in allowed:
        pattern = pattern.lower().rstrip(".")
        if pattern == "*" or pattern == name:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False
