"""Benchmark: ComfyUI stand-in reached directly, through auth_proxy, and through nginx.

One run, one upstream (tests/support/fake_comfyui.py, an aiohttp server with ComfyUI's
routes), three paths to it, all on loopback:
  direct   client -> upstream
  proxy    client -> auth_proxy (Bearer token) -> upstream
  nginx    client -> nginx (Debian's, a plain reverse proxy) -> upstream
Measured: small-request throughput and p50/p99 latency under bounded concurrency, a 1 GiB
download, WebSocket echo messages/s, the proxy's peak RSS, and the p50 of requests that
authenticate with HTTP Basic (argon2 once, then remembered) against Bearer. Prints a table with
ratios and writes bench/results/proxy.json. Targets: large download >= 0.7x nginx, added
p50 latency < 1 ms over direct, proxy peak RSS < 100 MB during the download.
"""
from __future__ import annotations

import asyncio
import base64
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

from tests.support import REPO, free_port, python_env, stop_process, wait_until

SMALL_REQUESTS = 2000
CONCURRENCY = 16
DOWNLOAD = 1 << 30
WS_MESSAGES = 20000
NGINX_CONF = """daemon off; worker_processes 1; pid {tmp}/nginx.pid; error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/f; uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;
  upstream comfy {{ server 127.0.0.1:{up}; keepalive 32; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://comfy; proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade;
      proxy_buffering off; proxy_request_buffering off; }} }}
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }} }}
"""


def rss_mb(pid: int, field: str = "VmRSS:") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


async def download_watching(base: str, headers: dict, pid: int | None) -> tuple[float, float]:
    """The download's throughput and the largest RSS `pid` had while it ran. Sampled
    rather than VmHWM: the process's lifetime peak includes argon2's 64 MiB hashing at
    start, which is not what streaming costs."""
    peak = 0.0
    done = False

    async def sample():
        nonlocal peak
        while not done:
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.02)
    sampler = asyncio.ensure_future(sample()) if pid else None
    try:
        mbps = await download(base, headers)
    finally:
        done = True
        if sampler:
            await sampler
    return mbps, peak


async def small(base: str, headers: dict, concurrency: int) -> dict:
    lat: list[float] = []
    async with aiohttp.ClientSession(headers=headers) as s:
        for _ in range(50):  # warm-up
            async with s.get(base + "/system_stats") as r:
                await r.read()
        todo = iter(range(SMALL_REQUESTS))

        async def worker():
            for _ in todo:
                t = time.perf_counter()
                async with s.get(base + "/system_stats") as r:
                    await r.read()
                    assert r.status == 200
                lat.append(time.perf_counter() - t)
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    lat.sort()
    return {"req_per_s": SMALL_REQUESTS / wall, "p50_ms": 1000 * statistics.median(lat),
            "p99_ms": 1000 * lat[int(len(lat) * 0.99)]}


async def download(base: str, headers: dict) -> float:
    got = 0
    async with aiohttp.ClientSession(headers=headers) as s:
        t = time.perf_counter()
        async with s.get(f"{base}/_test/stream/{DOWNLOAD}") as r:
            async for chunk in r.content.iter_chunked(1 << 20):
                got += len(chunk)
        wall = time.perf_counter() - t
    assert got == DOWNLOAD
    return DOWNLOAD / wall / 1e6


async def websocket(base: str, headers: dict) -> float:
    async with aiohttp.ClientSession(headers=headers) as s:
        ws = await s.ws_connect(base.replace("http", "ws") + "/_test/ws")
        t = time.perf_counter()

        async def send():
            for i in range(WS_MESSAGES):
                await ws.send_str(f"m{i}")
        sender = asyncio.ensure_future(send())
        for _ in range(WS_MESSAGES):
            await ws.receive()
        await sender
        wall = time.perf_counter() - t
        await ws.close()
    return WS_MESSAGES / wall


async def measure(name: str, base: str, headers: dict, rss_pid: int | None) -> dict:
    # latency one request at a time (what a person's click sees); throughput under load
    res = {"small": await small(base, headers, 1), "loaded": await small(base, headers, CONCURRENCY)}
    res["download_MBps"], peak = await download_watching(base, headers, rss_pid)
    res["ws_msgs_per_s"] = await websocket(base, headers)
    if rss_pid:
        res["peak_rss_MB"] = peak
        res["lifetime_peak_rss_MB"] = rss_mb(rss_pid, "VmHWM:")
    print(f"  measured {name}", file=sys.stderr)
    return res


def main() -> int:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        print("nginx is needed as the reference: apt-get install nginx", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    up, pport, nport = free_port(), free_port(), free_port()
    procs = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "tests.support.fake_comfyui", "--port", str(up),
                                       "--output-directory", str(tmp / "out")], cwd=REPO, env=python_env(),
                                      stdout=subprocess.DEVNULL))
        env = python_env(AUTH_PROXY_LISTEN=f"127.0.0.1:{pport}", AUTH_PROXY_UPSTREAM=f"http://127.0.0.1:{up}",
                         AUTH_PROXY_STATE_DIR=str(tmp / "auth"), COMFY_ADMIN_PASSWORD="bench-password")
        token = subprocess.run([sys.executable, "-m", "auth_proxy", "token", "create", "bench"], cwd=REPO,
                               env=env, capture_output=True, text=True, check=True).stdout.split()[-1]
        proxy = subprocess.Popen([sys.executable, "-m", "auth_proxy"], cwd=REPO, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proxy)
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, up=up, port=nport))
        procs.append(subprocess.Popen([nginx, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in (up, pport, nport):
            wait_until(lambda p=port: urllib.request.urlopen(f"http://127.0.0.1:{p}/healthz" if p == pport
                                                             else f"http://127.0.0.1:{p}/system_stats",
                                                             timeout=1).status == 200, timeout=30,
                       what=f"port {port}")
        results = {
            "direct": asyncio.run(measure("direct", f"http://127.0.0.1:{up}", {}, None)),
            "proxy": asyncio.run(measure("proxy", f"http://127.0.0.1:{pport}",
                                         {"Authorization": f"Bearer {token}"}, proxy.pid)),
            "nginx": asyncio.run(measure("nginx", f"http://127.0.0.1:{nport}", {}, None)),
        }
        # scripts that use HTTP Basic: the password's argon2 check is paid once, not per request
        basic = "Basic " + base64.b64encode(b"admin:bench-password").decode()
        results["proxy_basic"] = asyncio.run(small(f"http://127.0.0.1:{pport}", {"Authorization": basic}, 1))
    finally:
        for p in reversed(procs):
            stop_process(p)
        shutil.rmtree(tmp, ignore_errors=True)
    d, p, n = results["direct"], results["proxy"], results["nginx"]
    rows = [(f"req/s, {CONCURRENCY} at once", d["loaded"]["req_per_s"], p["loaded"]["req_per_s"], n["loaded"]["req_per_s"]),
            (f"p50 ms, {CONCURRENCY} at once", d["loaded"]["p50_ms"], p["loaded"]["p50_ms"], n["loaded"]["p50_ms"]),
            ("p50 ms, one at a time", d["small"]["p50_ms"], p["small"]["p50_ms"], n["small"]["p50_ms"]),
            ("p99 ms, one at a time", d["small"]["p99_ms"], p["small"]["p99_ms"], n["small"]["p99_ms"]),
            ("1 GiB download MB/s", d["download_MBps"], p["download_MBps"], n["download_MBps"]),
            ("WebSocket msgs/s", d["ws_msgs_per_s"], p["ws_msgs_per_s"], n["ws_msgs_per_s"])]
    print(f"{'':22}{'direct':>10}{'proxy':>10}{'nginx':>10}{'proxy/nginx':>13}{'proxy/direct':>14}")
    for name, a, b, c in rows:
        print(f"{name:22}{a:10.2f}{b:10.2f}{c:10.2f}{b / c:13.2f}{b / a:14.2f}")
    summary = {"download_ratio_vs_nginx": p["download_MBps"] / n["download_MBps"],
               "added_p50_ms_vs_direct": p["small"]["p50_ms"] - d["small"]["p50_ms"],
               "proxy_peak_rss_MB": p["peak_rss_MB"]}
    pb = results["proxy_basic"]
    print(f"{'p50 ms, Basic auth':22}{'':10}{pb['p50_ms']:10.2f}{'':10}{'':13}"
          f"{pb['p50_ms'] / d['small']['p50_ms']:14.2f}   ({pb['p50_ms'] / p['small']['p50_ms']:.2f}x Bearer)")
    summary["basic_p50_ratio_vs_bearer"] = pb["p50_ms"] / p["small"]["p50_ms"]
    print(f"proxy peak RSS during the download {p['peak_rss_MB']:.1f} MB (lifetime peak "
          f"{p['lifetime_peak_rss_MB']:.1f} MB, argon2 at start);  download {summary['download_ratio_vs_nginx']:.2f}x nginx "
          f"(target >= 0.7); added p50 {summary['added_p50_ms_vs_direct']:.2f} ms (target < 1)")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "proxy.json").write_text(json.dumps({"results": results, "summary": summary,
                                                "params": {"small_requests": SMALL_REQUESTS,
                                                           "concurrency": CONCURRENCY, "download_bytes": DOWNLOAD,
                                                           "ws_messages": WS_MESSAGES}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
