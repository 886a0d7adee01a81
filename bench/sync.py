"""model_sync against the usual ways of pulling a bucket, on one local SeaweedFS.

In one run, against the same SeaweedFS S3 gateway (`weed mini`) on loopback:
  cold:  two sets into an empty directory, each tool in turn, the order rotating every round
         so that no tool always runs first (or always right after another):
           mixed  BENCH_SYNC_LARGE_N (3) x BENCH_SYNC_LARGE_MB (256) MiB safetensors files
                  plus BENCH_SYNC_SMALL_N (2000) x BENCH_SYNC_SMALL_KB (1) KiB files
           large  the large files alone
         tools: `python -m model_sync mirror`; boto3's transfer manager as a loop of
         `download_file` calls (what most scripts do); boto3's transfer manager with every
         file queued at once (`create_transfer_manager`, its defaults: 10 threads, 8 MiB
         parts); `aws s3 cp --recursive` (awscli). model_sync fsyncs each file and folder
         and keeps resume records; the references do neither, except the loop's twin
         "+ fsync", which fsyncs each file it downloaded (the same durability for the
         bytes, without resume records).
  disk:  the large set's bytes written to one file and fsynced, no network: the ceiling for
         a tool whose files are on disk when it exits.
  warm:  the mixed set again, already present and recorded: wall time (interpreter start
         included) and bytes transferred, for `mirror` and for `sync` with a manifest and
         `--from`.
Per tool and set: the median MB/s over BENCH_SYNC_ROUNDS (3) rounds, CPU seconds, and the
ratio model_sync / reference, both of the medians and per round (the same round's figures).
Prints a table and writes bench/results/sync.json.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import save
from tests.support import REPO, python_env
from tests.support.s3_server import start_seaweedfs

MB = 1024 * 1024
BUCKET = "bench"
TARGET = 1.2  # issue: cold throughput at least 1.2x the download_file loop
LOOP = "boto3 download_file loop"

# The references, as their users run them. Each gets BUCKET, the prefix and the destination.
BOTO_LOOP = """
import boto3, os, sys
bucket, prefix, dest = sys.argv[1:4]
c = boto3.client("s3")
for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
    for o in page.get("Contents", []):
        d = os.path.join(dest, o["Key"][len(prefix) + 1:])
        os.makedirs(os.path.dirname(d), exist_ok=True)
        c.download_file(bucket, o["Key"], d)
"""
# The loop as a script that needs its files on disk when it exits writes it: each file
# fsynced after its download. The plain loop leaves the writeback to the kernel after its
# clock stops; model_sync fsyncs every file (and folder) before it counts as placed.
BOTO_LOOP_FSYNC = (
    BOTO_LOOP
    + """\
        fd = os.open(d, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
"""
)
BOTO_QUEUED = """
import boto3, os, sys
from boto3.s3.transfer import TransferConfig, create_transfer_manager
bucket, prefix, dest = sys.argv[1:4]
c = boto3.client("s3")
futures = []
with create_transfer_manager(c, TransferConfig()) as tm:
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            d = os.path.join(dest, o["Key"][len(prefix) + 1:])
            os.makedirs(os.path.dirname(d), exist_ok=True)
            futures.append(tm.download(bucket, o["Key"], d))
for f in futures:
    f.result()
"""


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def safetensors_file(path: Path, size: int, seed: int) -> None:
    """A real safetensors layout (one U8 tensor), so the header check has work to do."""
    block = os.urandom(MB)
    n = size - 8 - 128
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode().ljust(128)
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        left = n
        i = seed
        while left:
            chunk = bytes([i % 251]) + block[1 : min(MB, left)]
            f.write(chunk)
            left -= len(chunk)
            i += 1


def make_sets(client, work: Path) -> dict[str, dict]:
    from boto3.s3.transfer import TransferConfig

    large_n, large_mb = env_int("BENCH_SYNC_LARGE_N", 3), env_int("BENCH_SYNC_LARGE_MB", 256)
    small_n, small_kb = env_int("BENCH_SYNC_SMALL_N", 2000), env_int("BENCH_SYNC_SMALL_KB", 1)
    # Single-part uploads, so the ETag is an MD5 and model_sync verifies every byte it gets.
    cfg = TransferConfig(multipart_threshold=8 * 1024 * MB)
    for i in range(large_n):
        path = work / f"large{i}.safetensors"
        safetensors_file(path, large_mb * MB, i)
        for prefix in ("mixed", "large"):
            client.upload_file(
                str(path), BUCKET, f"{prefix}/diffusion_models/large{i}.safetensors", Config=cfg
            )
        path.unlink()

    def put(i: int) -> None:
        body = (i.to_bytes(4, "little") * 256 * small_kb)[: small_kb * 1024]
        client.put_object(Bucket=BUCKET, Key=f"mixed/loras/set{i // 100}/f{i}.pt", Body=body)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(small_n)))
    large = large_n * large_mb * MB
    return {
        "mixed": {
            "files": large_n + small_n,
            "bytes": large + small_n * small_kb * 1024,
            "shape": f"{large_n} x {large_mb} MiB + {small_n} x {small_kb} KiB",
        },
        "large": {"files": large_n, "bytes": large, "shape": f"{large_n} x {large_mb} MiB"},
    }


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system of the child) and stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({p.returncode}): {p.stderr[-2000:]}")
    return wall, cpu, p.stdout


def durable_write(work: Path, nbytes: int) -> float:
    """MB/s of writing `nbytes` to one file and fsyncing it, no network: the ceiling for any
    tool that keeps its files on disk when it ends."""
    block, path = os.urandom(8 * MB), work / "disk-probe"
    subprocess.run(["sync"], check=False)
    t = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(nbytes // len(block)):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    wall = time.perf_counter() - t
    path.unlink()
    return round(nbytes // len(block) * len(block) / MB / wall, 1)


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and ".model_sync" not in p.parts)


def cold_runs(tools: dict, sets: dict, work: Path, env: dict, rounds: int) -> dict:
    runs: dict[str, dict[str, list[dict]]] = {s: {t: [] for t in tools} for s in sets}
    names = list(tools)
    for r in range(rounds):
        for set_name, meta in sets.items():
            for name in names[r % len(names) :] + names[: r % len(names)]:
                dest = work / f"cold-{set_name}-{r}-{name.split()[0]}"
                subprocess.run(["sync"], check=False)  # earlier runs' writeback is not ours
                wall, cpu, _ = timed(tools[name](set_name, dest), env)
                got = tree_bytes(dest)
                if got != meta["bytes"]:
                    raise RuntimeError(f"{name} produced {got} bytes of {set_name}, expected {meta['bytes']}")
                runs[set_name][name].append(
                    {
                        "round": r,
                        "seconds": round(wall, 3),
                        "MB_per_s": round(meta["bytes"] / MB / wall, 1),
                        "cpu_seconds": round(cpu, 2),
                    }
                )
                shutil.rmtree(dest)
            print(f"  round {r + 1}/{rounds}: {set_name} done", file=sys.stderr)
    out = {}
    for set_name, by_tool in runs.items():
        med = {t: statistics.median(x["MB_per_s"] for x in v) for t, v in by_tool.items()}
        tools_out = {}
        for t, v in by_tool.items():
            entry = {
                "median_MB_per_s": round(med[t], 1),
                "median_cpu_seconds": round(statistics.median(x["cpu_seconds"] for x in v), 2),
                "rounds": v,
            }
            if t != "model_sync":
                entry["model_sync_ratio"] = round(med["model_sync"] / med[t], 2)
                entry["model_sync_ratio_per_round"] = [
                    round(a["MB_per_s"] / b["MB_per_s"], 2)
                    for a, b in zip(by_tool["model_sync"], v, strict=True)
                ]
            tools_out[t] = entry
        best = max((t for t in tools_out if t != "model_sync"), key=lambda t: med[t])
        out[set_name] = sets[set_name] | {
            "tools": tools_out,
            "best_reference": best,
            "target": f">= {TARGET}x {LOOP}",
            "target_met": tools_out[LOOP]["model_sync_ratio"] >= TARGET,
        }
    return out


def warm_runs(py: str, work: Path, env: dict, meta: dict) -> dict:
    dest = work / "warm"
    timed([py, "-m", "model_sync", "mirror", f"s3://{BUCKET}/mixed", str(dest), "-q"], env)
    wall_m, _, out_m = timed([py, "-m", "model_sync", "mirror", f"s3://{BUCKET}/mixed", str(dest), "-q"], env)
    manifest = work / "mixed.yaml"
    lines = ["version: 1", "profiles: {all: all}", "files:"]
    for p in sorted(dest.rglob("*")):
        if p.is_file() and ".model_sync" not in p.parts:
            folder, _, rel = p.relative_to(dest).as_posix().partition("/")
            lines.append(
                f"  - {{folder: {folder}, path: {rel}, size: {p.stat().st_size}, "
                f"source: 's3://{BUCKET}/unused/{rel}', profiles: [all]}}"
            )
    manifest.write_text("\n".join(lines) + "\n")
    wall_s, _, out_s = timed(
        [
            py,
            "-m",
            "model_sync",
            "sync",
            "--manifest",
            str(manifest),
            "--models-dir",
            str(dest),
            "--from",
            f"s3://{BUCKET}/mixed",
            "-q",
        ],
        env,
    )
    t = time.perf_counter()
    subprocess.run([py, "-c", "import model_sync.cli"], env=env, check=True)
    import_s = time.perf_counter() - t
    summ_m = json.loads(out_m.strip().splitlines()[-1])["summary"]
    summ_s = json.loads(out_s.strip().splitlines()[-1])["summary"]
    warm = {
        "files": meta["files"],
        "mirror": {
            "seconds": round(wall_m, 3),
            "bytes_transferred": summ_m["bytes_transferred"],
            "skipped": summ_m["skipped"],
        },
        "sync_manifest_from": {
            "seconds": round(wall_s, 3),
            "bytes_transferred": summ_s["bytes_transferred"],
            "skipped": summ_s["skipped"],
        },
        "interpreter_and_import_seconds": round(import_s, 3),
    }
    warm["target_met"] = (
        max(wall_m, wall_s) < 2.0 and summ_m["bytes_transferred"] == summ_s["bytes_transferred"] == 0
    )
    return warm


def report(result: dict) -> None:
    for set_name, c in result["cold"].items():
        print(
            f"cold {set_name}: {c['shape']} ({c['bytes'] / MB:.0f} MiB), median of {result['rounds']} rounds"
        )
        print(f"  {'tool':36} {'MB/s':>8} {'CPU s':>7} {'model_sync/x':>13}  per round")
        for name, v in c["tools"].items():
            ratio = v.get("model_sync_ratio", "")
            per = " ".join(f"{x:.2f}" for x in v.get("model_sync_ratio_per_round", []))
            print(
                f"  {name:36} {v['median_MB_per_s']:8.1f} {v['median_cpu_seconds']:7.2f} {ratio!s:>13}  {per}"
            )
        print(
            f"  target {c['target']}: {'met' if c['target_met'] else 'NOT met'} "
            f"(best reference: {c['best_reference']})"
        )
    disk = result["disk_write_and_fsync_MB_per_s"]
    large = result["cold"]["large"]["tools"]["model_sync"]["median_MB_per_s"]
    print(
        f"disk alone, the large set's bytes written and fsynced: {statistics.median(disk):.1f} MB/s "
        f"({' '.join(f'{x:.0f}' for x in disk)}); model_sync's large-set rate is "
        f"{large / statistics.median(disk):.2f} of it"
    )
    w = result["warm"]
    print(f"warm: {w['files']} files present")
    for k in ("mirror", "sync_manifest_from"):
        print(f"  {k:36} {w[k]['seconds']:8.2f} s  {w[k]['bytes_transferred']} bytes transferred")
    print(
        f"  (interpreter + import alone: {w['interpreter_and_import_seconds']:.2f} s); "
        f"target < 2 s and nothing transferred: {'met' if w['target_met'] else 'NOT met'}"
    )


def main() -> int:
    rounds = env_int("BENCH_SYNC_ROUNDS", 3)
    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    server = start_seaweedfs([BUCKET])
    try:
        sets = make_sets(server.client(), work)
        env = python_env(**server.env())
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        py = sys.executable
        aws = shutil.which("aws", path=env["PATH"]) or "aws"
        tools = {
            "model_sync": lambda s, d: [py, "-m", "model_sync", "mirror", f"s3://{BUCKET}/{s}", str(d), "-q"],
            LOOP: lambda s, d: [py, "-c", BOTO_LOOP, BUCKET, s, str(d)],
            LOOP + " + fsync": lambda s, d: [py, "-c", BOTO_LOOP_FSYNC, BUCKET, s, str(d)],
            "boto3 transfer manager, all queued": lambda s, d: [py, "-c", BOTO_QUEUED, BUCKET, s, str(d)],
            "aws s3 cp --recursive": lambda s, d: [
                aws,
                "s3",
                "cp",
                "--recursive",
                "--only-show-errors",
                f"s3://{BUCKET}/{s}",
                str(d),
            ],
        }
        # One untimed pass, so that the server reads from its page cache in every timed run.
        timed(tools[LOOP]("mixed", work / "warmup"), env)
        shutil.rmtree(work / "warmup")
        result = {
            "server": "SeaweedFS (weed mini -master.telemetry=false) S3 gateway on 127.0.0.1",
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load_average_at_start": os.getloadavg()[0],
            },
            "rounds": rounds,
            "cold": cold_runs(tools, sets, work, env, rounds),
            "disk_write_and_fsync_MB_per_s": [
                durable_write(work, sets["large"]["bytes"]) for _ in range(rounds)
            ],
            "warm": warm_runs(py, work, env, sets["mixed"]),
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        result["machine"]["load_average_at_end"] = os.getloadavg()[0]
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(result)
    out = save("sync", result)
    print(
        f"load average {result['machine']['load_average_at_start']:.1f} at start, "
        f"{result['machine']['load_average_at_end']:.1f} at the end -> {out.relative_to(REPO)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
