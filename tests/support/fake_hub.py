"""A local server speaking the Hugging Face hub's file-resolution protocol.

What huggingface_hub and our hf backend use: `HEAD|GET /{owner}/{repo}/resolve/{revision}/{path}`
answers like the hub does for an LFS file, a 302 to a content URL with `X-Repo-Commit`,
`X-Linked-Etag` (the file's sha256, quoted) and `X-Linked-Size`; the content URL, on a second
origin like the hub's CDN, serves the bytes with Range support. A revision other than
`main` or the repository's commit is a 404, as for a commit that does not exist. A repository may require a token (`Authorization: Bearer ...`),
answering 401 without it as gated repositories do; an unknown repository or file is a 404
with `X-Error-Code` as the hub sends.
"""

from __future__ import annotations

import hashlib
from urllib.parse import unquote

from .threaded_server import QuietHandler, ThreadedServer


class FakeHub:
    def __init__(self):
        self.repos: dict[str, dict] = {}  # "owner/repo" -> {"commit", "token", "files": {path: bytes}}
        self.blobs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        # The content URLs live on a second origin, as the hub's CDN does: huggingface_hub
        # follows redirects within the hub's origin and reads file metadata (commit, sha256,
        # size) from the redirect that leaves it.
        self.servers = [ThreadedServer(_Handler, self) for _ in range(2)]
        self.url, self.cdn_url = (s.url for s in self.servers)

    def add(
        self,
        repo: str,
        files: dict[str, bytes],
        commit: str = "c0ffee" * 6 + "abcd",
        token: str | None = None,
    ) -> None:
        self.repos[repo] = {"commit": commit, "token": token, "files": dict(files)}
        for data in files.values():
            self.blobs[hashlib.sha256(data).hexdigest()] = data

    def start(self) -> FakeHub:
        for server in self.servers:
            server.start()
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


class _Handler(QuietHandler):
    owner: FakeHub

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", headers.get("Content-Length", str(len(body))))
        self.end_headers()
        if self.command == "GET" and body:
            self.wfile.write(body)

    def _route(self) -> None:
        path = unquote(self.path.split("?", 1)[0])
        self.owner.requests.append((self.command, path, self.headers.get("Range")))
        if path.startswith("/cdn/"):
            return self._blob(path[5:])
        parts = path.lstrip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self._reply(404, {"X-Error-Code": "EntryNotFound"}, b"not found")
        repo = self.owner.repos.get(f"{parts[0]}/{parts[1]}")
        if repo is None:
            return self._reply(
                401 if not self.headers.get("Authorization") else 404,
                {"X-Error-Code": "RepoNotFound"},
                b"Repository not found",
            )
        if repo["token"] and self.headers.get("Authorization") != f"Bearer {repo['token']}":
            return self._reply(401, {"X-Error-Code": "GatedRepo"}, b"Access to this repo is restricted")
        if parts[3] not in ("main", repo["commit"]):
            return self._reply(404, {"X-Error-Code": "RevisionNotFound"}, b"Invalid rev id")
        data = repo["files"].get("/".join(parts[4:]))
        if data is None:
            return self._reply(404, {"X-Error-Code": "EntryNotFound"}, b"Entry not found")
        sha = hashlib.sha256(data).hexdigest()
        self._reply(
            302,
            {
                "Location": f"{self.owner.cdn_url}/cdn/{sha}",
                "X-Repo-Commit": repo["commit"],
                "X-Linked-Etag": f'"{sha}"',
                "X-Linked-Size": str(len(data)),
                "ETag": f'"{sha}"',
                "Content-Length": "0",
            },
        )

    def _blob(self, sha: str) -> None:
        data = self.owner.blobs.get(sha)
        if data is None:
            return self._reply(404, {}, b"no such blob")
        rng = self.headers.get("Range")
        headers = {"ETag": f'"{sha}"', "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-", 1)[0])
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            return self._reply(206, headers | {"Content-Length": str(len(data) - start)}, data[start:])
        self._reply(200, headers | {"Content-Length": str(len(data))}, data)
