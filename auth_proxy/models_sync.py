"""The admin's "sync models now", behind the login: new models without a restart.

`POST /_models/sync` starts the sync the start ran (the plan `comfyctl serve` kept in the
run folder, run by `python -m comfyctl.sync_job`; its log goes to the container's), one at
a time: a second request while one runs is answered 409 with its state. `GET /_models/sync`
says whether one runs, how far it is (model_sync's progress file) and how the last one
ended. Files are placed atomically, so a running job never reads half of one, and ComfyUI
lists a new model at the page's next refresh. A cluster's gateway, which has no models of
its own, has no plan and answers 409 saying so.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass

from aiohttp import web

from auth_proxy.access import Access
from auth_proxy.services import GATE, WHO
from comfy_stack import run_files
from model_sync import progress as sync_progress

log = logging.getLogger(__name__)


@dataclass
class SyncRuns:
    """The sync this proxy started, if any, and how the last one ended."""

    proc: asyncio.subprocess.Process | None = None
    started_at: float | None = None
    last_exit: int | None = None
    waiter: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self, _app: web.Application | None = None) -> None:
        """On the proxy's stop: a sync it started stops too (the next one resumes its files)."""
        if self.running:
            assert self.proc is not None
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()


SYNC_RUNS = web.AppKey("model_sync_runs", SyncRuns)


def _state(request: web.Request) -> dict:
    gate, runs = request.config_dict[GATE], request.config_dict[SYNC_RUNS]
    progress = sync_progress.read(gate.s.progress_file)
    return {
        "running": runs.running,
        "started_at": runs.started_at,
        "last_exit": runs.last_exit,
        "progress": progress.summary() if progress else None,
    }


async def state(request: web.Request) -> web.Response:
    return web.json_response(_state(request))


async def start(request: web.Request) -> web.Response:
    gate, runs = request.config_dict[GATE], request.config_dict[SYNC_RUNS]
    plan = gate.s.run_dir / run_files.SYNC_PLAN if gate.s.run_dir else None
    if plan is None or not plan.is_file():
        return web.json_response(
            {
                "error": "no_sync_plan",
                "message": "nothing to sync here: set MODEL_PROFILES or MODEL_SYNC_FROM and restart once "
                "(a cluster's gateway has no models: sync on the GPU pods)",
            },
            status=409,
        )
    if runs.running:
        return web.json_response({"error": "already_running", **_state(request)}, status=409)
    runs.proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "comfyctl.sync_job", "--plan", str(plan)
    )
    runs.started_at, runs.last_exit = time.time(), None
    log.info("model sync started by %s (pid %d)", request[WHO].user, runs.proc.pid)

    async def wait(proc: asyncio.subprocess.Process) -> None:
        runs.last_exit = await proc.wait()
        log.info("model sync ended with exit code %d", runs.last_exit)

    runs.waiter = asyncio.ensure_future(wait(runs.proc))
    return web.json_response(_state(request), status=202)


async def sync_now(request: web.Request) -> web.Response:
    return await (start(request) if request.method == "POST" else state(request))


def add_routes(app: web.Application, add) -> None:
    """`add` is auth_proxy.routes' registrar: the route is the admins' (and CSRF applies to
    a cookie's POST)."""
    app[SYNC_RUNS] = SyncRuns()
    app.on_cleanup.append(app[SYNC_RUNS].stop)
    add("/_models/sync", ("GET", "HEAD", "POST"), sync_now, Access.ADMIN)
