"""Each person's files their own, by every route that shows them: the one step the relay
(auth_proxy/relay.py) takes for a member's requests that name, list or upload files.

- `/view`, and VideoHelperSuite's `/vhs/viewvideo`, `/vhs/viewaudio`, `/vhs/queryvideo`
  (and their older names without `/vhs`), which read a file by `filename`, `type` and
  `subfolder`: a member reads only what auth_proxy/user_files.py says is theirs; another's
  file gets the answer a missing one gets. The query goes to ComfyUI as the gate read it,
  so ComfyUI cannot read it otherwise. `type=path` (a path anywhere on the disk) and
  `/vhs/getpath` (a listing of any folder) are closed to members;
- `/upload/image` and `/upload/mask`: the form is rewritten on its way
  (auth_proxy/user_uploads.py);
- `/object_info` (and `/object_info/{class}`), `/internal/files/{type}`: the input-file
  lists are made the member's (auth_proxy/user_lists.py).

`/view_metadata/{folder}` reads the metadata of model files, which everyone shares: it is
relayed as it is. The admin's requests are all relayed as they are. Decisions are made on
the normalised path, so every spelling of a route comes here; on a cluster's gateway none
of this runs: a worker's own gate does it in front of its ComfyUI.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass

from aiohttp import web
from yarl import URL

from auth_proxy.ownership import owner_key
from auth_proxy.services import GATE, NORM_PATH, WHO, Gate, Who
from auth_proxy.user_files import BadName, FileRef, file_ref, in_own_folder, shared
from auth_proxy.user_lists import member_lists, member_top_files, own_files
from auth_proxy.user_previews import TempOwners
from auth_proxy.user_uploads import UploadForm

READERS = re.compile(r"^(?:/api)?/(view|vhs/viewvideo|viewvideo|vhs/viewaudio|vhs/queryvideo)$")
LISTERS = re.compile(r"^(?:/api)?/(vhs/getpath|getpath)$")
UPLOADS = re.compile(r"^(?:/api)?/upload/(image|mask)$")
OBJECT_INFO = re.compile(r"^(?:/api)?/object_info(/[^/]+)?$")
TOP_FILES = re.compile(r"^(?:/api)?/internal/files/([^/]+)$")
QUERY_NAMES = ("filename", "type", "subfolder")


@dataclass
class Onward:
    """How the relay sends a member's request on: the query as the gate read it, or the
    upload form rewritten as it streams."""

    url: URL | None = None
    form: UploadForm | None = None


class Files:
    """What the file rules keep per application: the temporary files' owners, made at the
    first use (the upstream client is made at the gate's start)."""

    def __init__(self, gate: Gate):
        self.gate = gate
        self._temp: TempOwners | None = None

    @property
    def temp(self) -> TempOwners:
        if self._temp is None:
            assert self.gate.client is not None
            self._temp = TempOwners(self.gate.s.upstream, self.gate.client)
        return self._temp


FILES = web.AppKey("own_files", Files)


def install(app: web.Application, gate: Gate) -> None:
    app[FILES] = Files(gate)


async def may_read(request: web.Request, who: Who, ref: FileRef) -> bool:
    if who.is_admin:
        return True
    if in_own_folder(ref, who.user) or shared(ref):
        return True
    if ref.kind != "temp":
        return False
    owner = await request.config_dict[FILES].temp.owner("/".join(ref.subfolder), ref.name)
    return owner == owner_key(request.config_dict[FILES].gate.accounts, who.user)


def missing(norm: str) -> web.Response:
    """What ComfyUI answers for a file it does not have: /view a bare 404, VideoHelperSuite
    a 204."""
    status = 404 if norm.rstrip("/").endswith("view") else 204
    return web.Response(status=status, headers={"Cache-Control": "private"})


async def handle(request: web.Request, upstream: str) -> web.StreamResponse | Onward | None:
    """A refusal or an answer, how to send the request on (`Onward`), or None to relay it
    as it is."""
    who = request[WHO]
    norm = request[NORM_PATH]
    if who.is_admin:
        return None
    if READERS.match(norm) and request.method in ("GET", "HEAD"):
        return await reader(request, who, norm, upstream)
    if LISTERS.match(norm):
        return web.json_response({"error": "listing the server's folders is for the admin"}, status=403)
    if UPLOADS.match(norm) and request.method == "POST":
        return Onward(form=UploadForm(request, who.user, lambda ref: may_read(request, who, ref)))
    if request.method == "GET" and (OBJECT_INFO.match(norm) or TOP_FILES.match(norm)):
        return await lists(request, who, norm, upstream)
    return None


async def reader(request: web.Request, who: Who, norm: str, upstream: str) -> web.StreamResponse | Onward:
    query = request.query
    if any(len(query.getall(name, [])) > 1 for name in QUERY_NAMES):
        return web.json_response({"error": "filename, type and subfolder may each be given once"}, status=400)
    if "filename" not in query:
        return Onward(url=as_read(request, upstream))
    if query.get("type") == "path":
        return web.json_response(
            {"error": "reading files by their path on the disk is for the admin"}, status=403
        )
    try:
        ref = file_ref(query["filename"], query.get("type", "output"), query.get("subfolder", ""))
    except BadName as exc:
        return web.json_response({"error": str(exc)}, status=400)
    if not await may_read(request, who, ref):
        return missing(norm)
    return Onward(url=as_read(request, upstream))


def as_read(request: web.Request, upstream: str) -> URL:
    """ComfyUI's URL with the query as the gate parsed it (no second parser to disagree)."""
    path = request.raw_path.split("?", 1)[0]
    return URL(upstream + path, encoded=True).with_query(list(request.query.items()))


async def lists(request: web.Request, who: Who, norm: str, upstream: str) -> web.StreamResponse:
    gate = request.config_dict[GATE]
    assert gate.client is not None
    async with gate.client.get(URL(upstream + request.raw_path, encoded=True)) as up:
        if up.status != 200:
            return web.Response(status=up.status, body=await up.read(), content_type=up.content_type)
        answer = await up.json(content_type=None)
    top = TOP_FILES.match(norm)
    if top:
        answer = member_top_files(top.group(1), answer if isinstance(answer, list) else [])
    elif isinstance(answer, dict):
        mine = await asyncio.to_thread(own_files, gate.s.input_dir, who.user)
        answer = member_lists(answer, mine)
    return web.Response(
        text=json.dumps(answer), content_type="application/json", headers={"Cache-Control": "private"}
    )
