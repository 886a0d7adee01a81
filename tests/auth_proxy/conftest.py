"""The proxy and a ComfyUI stand-in, both on real loopback sockets: in this process
(`make_stack`), or each as its own process (`spawn_proxy`, `proxy_process`) where a test
measures the proxy's memory, limits its file descriptors or reads its log."""

from __future__ import annotations

import resource
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from auth_proxy.accounts import open_accounts
from auth_proxy.app import create_app
from auth_proxy.extension import CUSTOM_NODES
from auth_proxy.settings import Settings
from comfyctl import model_paths
from tests.support import REPO, fake_comfyui, free_port, python_env, stop_process, wait_until
from tests.support.comfyui import RealComfyUI
from tests.support.proxy import PASSWORD, proxy_settings


@dataclass
class Stack:
    proxy: object  # aiohttp TestServer
    upstream: object
    settings: Settings
    token: str
    tmp: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.proxy.port}{path}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"

    @property
    def up_state(self) -> dict:
        return self.upstream.app[fake_comfyui.STATE]


@pytest.fixture
async def make_stack(tmp_path, aiohttp_server):
    count = iter(range(100))

    async def make(web_dirs: dict | None = None, **overrides) -> Stack:
        base = tmp_path / f"stack{next(count)}"
        upstream = await aiohttp_server(fake_comfyui.create_app(base / "output", web_dirs=web_dirs))
        settings = proxy_settings(
            overrides.pop("upstream", f"http://127.0.0.1:{upstream.port}"), base, **overrides
        )
        token = open_accounts(settings).create_token("tests")
        proxy = await aiohttp_server(create_app(settings))
        return Stack(proxy, upstream, settings, token, base)

    return make


@pytest.fixture
async def stack(make_stack):
    return await make_stack()


@pytest.fixture
async def http():
    # A cookie jar that keeps cookies for IP hosts, like a browser on 127.0.0.1.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


@dataclass
class ProxyProcess:
    proc: subprocess.Popen
    base: str
    token: str
    log: Path
    env: dict


def spawner(root: Path, procs: list[subprocess.Popen]):
    """`spawn(nofile=None, **env)`: start `python -m auth_proxy` in front of the stand-in
    (its own process too) under `root`, with extra environment, and optionally a lowered
    RLIMIT_NOFILE (soft, hard); the processes are added to `procs` for the caller to stop."""
    count = iter(range(100))

    def spawn(nofile: tuple[int, int] | None = None, **extra: str) -> ProxyProcess:
        base = root / f"proc{next(count)}"
        up_port, port = free_port(), free_port()
        upstream = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.fake_comfyui",
                "--port",
                str(up_port),
                "--output-directory",
                str(base / "out"),
            ],
            cwd=REPO,
            env=python_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(upstream)
        env = python_env(
            AUTH_PROXY_LISTEN=f"127.0.0.1:{port}",
            AUTH_PROXY_UPSTREAM=f"http://127.0.0.1:{up_port}",
            AUTH_PROXY_STATE_DIR=str(base / "auth"),
            COMFY_JOBS_DIR=str(base / "jobs"),
            COMFY_ADMIN_PASSWORD=PASSWORD,
            **extra,
        )
        token = (
            subprocess.run(
                [sys.executable, "-m", "auth_proxy", "token", "create", "bench"],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile)) if nofile else None
        log = base / "proxy.log"
        with open(log, "wb") as out:
            proxy = subprocess.Popen(
                [sys.executable, "-m", "auth_proxy"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=limit,
            )
        procs.append(proxy)
        wait_until(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200,
            timeout=30,
            what="the proxy and its upstream",
        )
        return ProxyProcess(proxy, f"http://127.0.0.1:{port}", token, log, env)

    return spawn


@pytest.fixture
def spawn_proxy(tmp_path):
    """A `spawner` for this test: its processes stop when the test ends."""
    procs: list[subprocess.Popen] = []
    yield spawner(tmp_path, procs)
    for proc in reversed(procs):
        stop_process(proc)


@pytest.fixture(scope="module")
def module_proxy(tmp_path_factory):
    """One spawned proxy (and stand-in) shared by a module's tests, for checks that leave
    no state behind."""
    procs: list[subprocess.Popen] = []
    yield spawner(tmp_path_factory.mktemp("proxy"), procs)()
    for proc in reversed(procs):
        stop_process(proc)


@pytest.fixture
def proxy_process(spawn_proxy):
    p = spawn_proxy()
    return p.proc, p.base, p.token, p.log, p.env


@pytest.fixture(scope="package")
def comfy(tmp_path_factory):
    """The opt-in tier's real ComfyUI on CPU (skipped unless COMFYUI_DIR/COMFYUI_PYTHON), one
    for this package, run as comfyctl serve runs it: extra_model_paths.yaml lists the data
    volume's custom_nodes and the gate's front-end extension. The pinned packs are left out
    (all but the extension, and ComfyUI's own SaveImageWebsocket example node, which one of
    its script_examples uses), so that it starts in seconds."""
    data = tmp_path_factory.mktemp("comfy")
    config = data / "extra_model_paths.yaml"
    c = RealComfyUI(
        data,
        (
            "--extra-model-paths-config",
            str(config),
            "--disable-all-custom-nodes",
            "--whitelist-custom-nodes",
            "comfy_stack_session",
            "websocket_image_save.py",
        ),
    )
    (data / "custom_nodes").mkdir()
    model_paths.write(data / "models", config, data / "custom_nodes", CUSTOM_NODES)
    c.start()
    yield c
    c.stop()
