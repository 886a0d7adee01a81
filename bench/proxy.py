"""Benchmark: auth_proxy against nginx tuned the way people tune it, and against direct access.

Two upstreams on loopback:
  files  nginx serving a 1 GiB file at /view (sendfile), fast enough not to be the limit:
         its direct figure is the ceiling every path is held to;
  comfy  the ComfyUI stand-in (tests/support/fake_comfyui.py) for small requests and the
         WebSocket.
and the paths to them:
  direct        client -> upstream
  proxy         client -> auth_proxy -> upstream (a session cookie from a real login for the
                download, a Bearer token for the rest); the download's body zero-copy
                (AUTH_PROXY_RELAY=splice, the default)
  proxy plain   the same with AUTH_PROXY_RELAY=plain: every chunk copied through the event loop
  nginx         client -> nginx with the buffers people set for large downloads
                (proxy_buffering on, proxy_buffer_size 1m, proxy_buffers 8 1m,
                proxy_busy_buffers_size 2m, proxy_max_temp_file_size 0) -> upstream
  nginx untuned client -> nginx with proxy_buffering off -> upstream (shown for the record;
                small reads halve nginx's throughput, so it is no reference)
The 1 GiB download is measured BENCH_PROXY_ROUNDS (5) times per path, the order rotating every
round; the client is the same minimal socket reader for every path, so it costs each the same.
Also: small-request throughput and p50/p99 latency, WebSocket echo messages/s, Basic against
Bearer, the CPU seconds each download cost the process serving it (a figure the machine's
load does not skew as much as MB/s), and the download proxy's peak RSS over its whole life
(start-up, a login, every download), with its argon2 workers' (auth_proxy/hashing.py) beside
it. Prints a table with ratios and writes bench/results/proxy.json.
Targets: download >= 1.1x tuned nginx (median of the per-round ratios), proxy peak RSS < 60 MB.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import aiohttp

from bench import save
from tests.support import REPO, free_port, python_env, stop_process, wait_until

SMALL_REQUESTS = 2000
CONCURRENCY = 16
DOWNLOAD = 1 << 30
WS_MESSAGES = 20000
VIEW = "/view?filename=big.bin&type=output"
PASSWORD = "bench-password"
TARGET_RATIO, TARGET_RSS_MB = 1.1, 60.0

NGINX_HEAD = """daemon off; worker_processes 1; pid {tmp}/{name}.pid; error_log {tmp}/{name}.log warn;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; tcp_nopush on; client_body_temp_path {tmp}/{name}-body;
  proxy_temp_path {tmp}/{name}-proxy; fastcgi_temp_path {tmp}/f; uwsgi_temp_path {tmp}/u;
  scgi_temp_path {tmp}/s;
"""
FILES_CONF = (
    NGINX_HEAD
    + """  server {{ listen 127.0.0.1:{port};
    location = /view {{ alias {tmp}/big.bin; default_type application/octet-stream; }} }} }}
"""
)
# What nginx's documentation and the usual large-download guides set; the comfy upstream
# gets the WebSocket upgrade headers every ComfyUI-behind-nginx guide shows.
PROXY_CONF = (
    NGINX_HEAD
    + """  upstream files {{ server 127.0.0.1:{files}; keepalive 32; }}
  upstream comfy {{ server 127.0.0.1:{comfy}; keepalive 32; }}
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  server {{ listen 127.0.0.1:{tuned};
    location = /view {{ proxy_pass http://files; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering on; proxy_buffer_size 1m; proxy_buffers 8 1m; proxy_busy_buffers_size 2m;
      proxy_max_temp_file_size 0; }}
    location / {{ proxy_pass http://comfy; proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade; }} }}
  server {{ listen 127.0.0.1:{untuned};
    location = /view {{ proxy_pass http://files; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off; }} }} }}
"""
)


def rss_mb(pid: int, field: str = "VmRSS:") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def download(port: int, headers: dict[str, str]) -> float:
    """MB/s of one GET of VIEW, read into one reused buffer: the client's cost is one recv
    per MiB at most, the same for every path."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        lines = [f"GET {VIEW} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        t = time.perf_counter()
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError(f"port {port}: connection closed before the headers")
            head += chunk
        head, _, got_bytes = head.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status:
            raise RuntimeError(f"port {port}: {status.decode()}")
        got = len(got_bytes)
        buf = bytearray(1 << 20)
        while got < DOWNLOAD:
            n = s.recv_into(buf)
            if not n:
                break
            got += n
        wall = time.perf_counter() - t
    if got != DOWNLOAD:
        raise RuntimeError(f"port {port}: got {got} of {DOWNLOAD} bytes")
    return DOWNLOAD / wall / 1e6


def answers(port: int, method: str, path: str) -> bool:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    with urllib.request.urlopen(req, timeout=2) as resp:
        return resp.status == 200


def login_cookie(port: int) -> str:
    """Log in through the form as a browser does; the session cookie."""
    body = urllib.parse.urlencode({"username": "admin", "password": PASSWORD}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/login", data=body, method="POST")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        resp = urllib.request.build_opener(NoRedirect).open(req, timeout=30)
    except urllib.error.HTTPError as exc:  # the 303 after a login
        resp = exc
    cookie = resp.headers.get("Set-Cookie", "")
    if resp.status != 303 or not cookie:
        raise RuntimeError(f"login failed: {resp.status}")
    return cookie.split(";", 1)[0]


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
    return {
        "req_per_s": SMALL_REQUESTS / wall,
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * lat[int(len(lat) * 0.99)],
    }


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


async def interactive(base: str, headers: dict) -> dict:
    # latency one request at a time (what a person's click sees); throughput under load
    return {
        "small": await small(base, headers, 1),
        "loaded": await small(base, headers, CONCURRENCY),
        "ws_msgs_per_s": await websocket(base, headers),
    }


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_s(pid: int) -> float:
    """CPU seconds (user and system) of a process and its children (nginx's worker)."""
    total = 0.0
    for p in [pid, *children(pid)]:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def downloads(paths: dict[str, tuple[int, dict, int]], rounds: int, rss_pid: int) -> dict:
    """Each path: (port, request headers, the pid of the server whose CPU time it costs)."""
    runs: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    peak = 0.0
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            port, headers, pid = paths[name]
            before = cpu_s(pid)
            runs[name].append(round(download(port, headers), 1))
            cpu[name].append(round(cpu_s(pid) - before, 2))
            peak = max(peak, rss_mb(rss_pid))
        print(f"  download round {r + 1}/{rounds}", file=sys.stderr)
    per_round = [round(p / n, 3) for p, n in zip(runs["proxy"], runs["nginx"], strict=True)]
    return {
        "MB_per_s": runs,
        "median_MB_per_s": {k: statistics.median(v) for k, v in runs.items()},
        "server_cpu_s_per_GiB": {k: statistics.median(v) for k, v in cpu.items()},
        "proxy_over_nginx_per_round": per_round,
        "proxy_over_nginx": statistics.median(per_round),
        "proxy_over_direct": statistics.median(
            p / d for p, d in zip(runs["proxy"], runs["direct"], strict=True)
        ),
        "over_nginx": {
            name: statistics.median(p / n for p, n in zip(runs[name], runs["nginx"], strict=True))
            for name in names
            if name != "nginx"
        },
        "proxy_rss_after_a_download_MB": round(peak, 1),
    }


def start_proxy(tmp: Path, name: str, port: int, upstream: int, **extra: str) -> tuple[subprocess.Popen, str]:
    env = python_env(
        AUTH_PROXY_LISTEN=f"127.0.0.1:{port}",
        AUTH_PROXY_UPSTREAM=f"http://127.0.0.1:{upstream}",
        AUTH_PROXY_STATE_DIR=str(tmp / name),
        COMFY_JOBS_DIR=str(tmp / f"{name}-jobs"),
        COMFY_ADMIN_PASSWORD=PASSWORD,
        **extra,
    )
    token = subprocess.run(
        [sys.executable, "-m", "auth_proxy", "token", "create", "bench"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "auth_proxy"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / f"{name}.log", "wb"),
    )
    return proc, token


def report(res: dict) -> None:
    d = res["download"]
    print(
        f"1 GiB /view download, MB/s over {len(d['MB_per_s']['proxy'])} rounds (median; each round), "
        "and the CPU seconds the serving process spent (median):"
    )
    for name, runs in d["MB_per_s"].items():
        print(
            f"  {name:16}{d['median_MB_per_s'][name]:9.0f}   "
            + " ".join(f"{x:.0f}" for x in runs)
            + f"   cpu {d['server_cpu_s_per_GiB'][name]:.2f} s"
        )
    print(
        f"  proxy / tuned nginx {d['proxy_over_nginx']:.2f} (per round: "
        + " ".join(f"{x:.2f}" for x in d["proxy_over_nginx_per_round"])
        + f"), proxy / direct {d['proxy_over_direct']:.2f}"
    )
    print(
        "  each path / tuned nginx (median of per-round ratios): "
        + ", ".join(f"{name} {x:.2f}" for name, x in d["over_nginx"].items())
    )
    i = res["interactive"]
    dd, p, n = i["direct"], i["proxy"], i["nginx"]
    rows = [
        (
            f"req/s, {CONCURRENCY} at once",
            dd["loaded"]["req_per_s"],
            p["loaded"]["req_per_s"],
            n["loaded"]["req_per_s"],
        ),
        (
            f"p50 ms, {CONCURRENCY} at once",
            dd["loaded"]["p50_ms"],
            p["loaded"]["p50_ms"],
            n["loaded"]["p50_ms"],
        ),
        ("p50 ms, one at a time", dd["small"]["p50_ms"], p["small"]["p50_ms"], n["small"]["p50_ms"]),
        ("p99 ms, one at a time", dd["small"]["p99_ms"], p["small"]["p99_ms"], n["small"]["p99_ms"]),
        ("WebSocket msgs/s", dd["ws_msgs_per_s"], p["ws_msgs_per_s"], n["ws_msgs_per_s"]),
    ]
    print(f"{'':24}{'direct':>10}{'proxy':>10}{'nginx':>10}{'proxy/nginx':>13}{'proxy/direct':>14}")
    for name, a, b, c in rows:
        print(f"{name:24}{a:10.2f}{b:10.2f}{c:10.2f}{b / c:13.2f}{b / a:14.2f}")
    pb = res["proxy_basic"]
    print(
        f"{'p50 ms, Basic auth':24}{'':10}{pb['p50_ms']:10.2f}{'':23}"
        f"{pb['p50_ms'] / dd['small']['p50_ms']:14.2f}   ({pb['p50_ms'] / p['small']['p50_ms']:.2f}x Bearer)"
    )
    s = res["summary"]
    print(
        f"download proxy's peak RSS {s['proxy_peak_rss_MB']:.1f} MB over its life (start-up, a login, "
        f"{len(d['MB_per_s']['proxy'])} downloads; {d['proxy_rss_after_a_download_MB']:.1f} MB after one); "
        f"its argon2 workers' peak RSS: {', '.join(f'{w:.1f}' for w in s['hash_workers_peak_rss_MB'])} MB"
    )
    print(
        f"targets: download >= {TARGET_RATIO}x tuned nginx: {'met' if s['download_target_met'] else 'NOT met'}; "
        f"peak RSS < {TARGET_RSS_MB:.0f} MB: {'met' if s['rss_target_met'] else 'NOT met'}; "
        f"load average {s['load_average'][0]:.1f} at start, {s['load_average'][1]:.1f} at the end"
    )


def main() -> int:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        print("nginx is needed as the reference: apt-get install nginx-light", file=sys.stderr)
        return 2
    rounds = int(os.environ.get("BENCH_PROXY_ROUNDS", "5"))
    load_start = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    ports = {
        k: free_port()
        for k in ("files", "comfy", "tuned", "untuned", "proxy_files", "proxy_plain", "proxy_comfy")
    }
    procs: list[subprocess.Popen] = []
    try:
        tmp.chmod(0o755)  # nginx's workers drop root and must read the file
        with open(tmp / "big.bin", "wb") as f:
            f.truncate(DOWNLOAD)  # sparse: nginx sends it from the page cache, zeros cost no disk
        for name, conf in (
            ("files", FILES_CONF.format(tmp=tmp, name="files", port=ports["files"])),
            ("nginx", PROXY_CONF.format(tmp=tmp, name="nginx", **ports)),
        ):
            (tmp / f"{name}.conf").write_text(conf)
            procs.append(
                subprocess.Popen(
                    [nginx, "-c", str(tmp / f"{name}.conf"), "-p", str(tmp)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.support.fake_comfyui",
                    "--port",
                    str(ports["comfy"]),
                    "--output-directory",
                    str(tmp / "out"),
                ],
                cwd=REPO,
                env=python_env(),
                stdout=subprocess.DEVNULL,
            )
        )
        proxy_files, _ = start_proxy(tmp, "proxy-files", ports["proxy_files"], ports["files"])
        proxy_plain, _ = start_proxy(
            tmp, "proxy-plain", ports["proxy_plain"], ports["files"], AUTH_PROXY_RELAY="plain"
        )
        proxy_comfy, token = start_proxy(tmp, "proxy-comfy", ports["proxy_comfy"], ports["comfy"])
        procs += [proxy_files, proxy_plain, proxy_comfy]
        for key, method, path in (
            ("files", "HEAD", VIEW),
            ("tuned", "HEAD", VIEW),
            ("untuned", "HEAD", VIEW),
            ("comfy", "GET", "/system_stats"),
            ("proxy_files", "GET", "/healthz"),
            ("proxy_plain", "GET", "/healthz"),
            ("proxy_comfy", "GET", "/healthz"),
        ):
            wait_until(
                functools.partial(answers, ports[key], method, path),
                timeout=30,
                what=f"{key} on port {ports[key]}",
            )
        cookie = login_cookie(ports["proxy_files"])
        plain_cookie = login_cookie(ports["proxy_plain"])
        files, nginx_proxy = procs[0].pid, procs[1].pid
        res: dict = {
            "download": downloads(
                {
                    "direct": (ports["files"], {}, files),
                    "proxy": (ports["proxy_files"], {"Cookie": cookie}, proxy_files.pid),
                    "proxy plain": (ports["proxy_plain"], {"Cookie": plain_cookie}, proxy_plain.pid),
                    "nginx": (ports["tuned"], {}, nginx_proxy),
                    "nginx untuned": (ports["untuned"], {}, nginx_proxy),
                },
                rounds,
                proxy_files.pid,
            )
        }
        peak = rss_mb(proxy_files.pid, "VmHWM:")
        # the argon2 workers (auth_proxy/hashing.py), where the login's 64 MiB went
        workers = [rss_mb(c, "VmHWM:") for c in children(proxy_files.pid)]
        bearer = {"Authorization": f"Bearer {token}"}
        res["interactive"] = {
            "direct": asyncio.run(interactive(f"http://127.0.0.1:{ports['comfy']}", {})),
            "proxy": asyncio.run(interactive(f"http://127.0.0.1:{ports['proxy_comfy']}", bearer)),
            "nginx": asyncio.run(interactive(f"http://127.0.0.1:{ports['tuned']}", {})),
        }
        # scripts that use HTTP Basic: the password's argon2 check is paid once, not per request
        basic = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
        res["proxy_basic"] = asyncio.run(
            small(f"http://127.0.0.1:{ports['proxy_comfy']}", {"Authorization": basic}, 1)
        )
    finally:
        for p in reversed(procs):
            stop_process(p)
        shutil.rmtree(tmp, ignore_errors=True)
    d, i = res["download"], res["interactive"]
    res["summary"] = {
        "download_ratio_vs_tuned_nginx": d["proxy_over_nginx"],
        "download_target_met": d["proxy_over_nginx"] >= TARGET_RATIO,
        "proxy_peak_rss_MB": round(peak, 1),
        "rss_target_met": peak < TARGET_RSS_MB,
        "hash_workers_peak_rss_MB": [round(w, 1) for w in workers],
        "added_p50_ms_vs_direct": i["proxy"]["small"]["p50_ms"] - i["direct"]["small"]["p50_ms"],
        "basic_p50_ratio_vs_bearer": res["proxy_basic"]["p50_ms"] / i["proxy"]["small"]["p50_ms"],
        "load_average": [load_start, os.getloadavg()[0]],
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    res["params"] = {
        "small_requests": SMALL_REQUESTS,
        "concurrency": CONCURRENCY,
        "download_bytes": DOWNLOAD,
        "ws_messages": WS_MESSAGES,
        "rounds": rounds,
    }
    report(res)
    save("proxy", res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
