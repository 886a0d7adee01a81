"""model_sync against the usual ways of pulling a bucket, on one local SeaweedFS.

In one run, against the same SeaweedFS S3 gateway on loopback:
  cold:  a set of large and small files into an empty directory with
         `python -m model_sync mirror`, `aws s3 cp --recursive` (awscli) and a plain boto3
         `download_file` loop; throughput in MB/s and ratios against the references;
  warm:  re-sync of 2,000 files already present and recorded: wall time (whole process,
         interpreter start included) and bytes transferred, for `mirror` and for `sync`
         with a 2,000-entry manifest and `--from`.
Prints a table and writes bench/results/sync.json. Sizes: BENCH_SYNC_LARGE_MB (256) x
BENCH_SYNC_LARGE_N (3) plus BENCH_SYNC_SMALL_N (32) x BENCH_SYNC_SMALL_MB (4);
BENCH_SYNC_ROUNDS (3) cold rounds per tool, the best kept.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support import REPO, python_env
from tests.support.s3_server import start_seaweedfs

MB = 1024 * 1024
BUCKET = "bench"


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def make_dataset(client, src: Path) -> tuple[int, int]:
    from boto3.s3.transfer import TransferConfig
    large_n, large_mb = env_int("BENCH_SYNC_LARGE_N", 3), env_int("BENCH_SYNC_LARGE_MB", 256)
    small_n, small_mb = env_int("BENCH_SYNC_SMALL_N", 32), env_int("BENCH_SYNC_SMALL_MB", 4)
    files = [(f"diffusion_models/large{i}.safetensors", large_mb) for i in range(large_n)]
    files += [(f"loras/small{i}.pt", small_mb) for i in range(small_n)]
    # Single-part uploads, so the ETag is an MD5 and model_sync verifies every byte it gets.
    cfg = TransferConfig(multipart_threshold=8 * 1024 * MB)
    block = os.urandom(MB)
    total = 0
    for rel, mb in files:
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            if rel.endswith(".safetensors"):
                # a real safetensors layout (one U8 tensor), so the header check has work to do
                n = mb * MB - 8 - 128
                header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}})
                header = header.encode().ljust(128, b" ")
                f.write(len(header).to_bytes(8, "little") + header)
                f.write(block[: MB - 136])
                start = 1
            else:
                start = 0
            for i in range(start, mb):
                f.write(bytes([i % 251]) + block[1:])
        client.upload_file(str(path), BUCKET, f"models/{rel}", Config=cfg)
        total += mb * MB
        path.unlink()
    return len(files), total


def make_many(client, n: int) -> None:
    def put(i: int) -> None:
        client.put_object(Bucket=BUCKET, Key=f"many/loras/set{i // 100}/f{i}.pt",
                          Body=i.to_bytes(4, "little") * 256)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(n)))


CPU: list[float] = [0.0]   # CPU seconds (user + system) of the last timed command


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[0] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({p.returncode}): {p.stderr[-2000:]}")
    return wall, p.stdout


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and ".model_sync" not in p.parts)


def main() -> int:
    rounds = env_int("BENCH_SYNC_ROUNDS", 3)
    many = env_int("BENCH_SYNC_WARM_FILES", 2000)
    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    server = start_seaweedfs([BUCKET])
    try:
        client = server.client()
        n_files, total = make_dataset(client, work)
        make_many(client, many)
        env = python_env(**server.env())
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        py = sys.executable
        boto_loop = (
            "import boto3,os,sys\n"
            "c=boto3.client('s3')\n"
            "for page in c.get_paginator('list_objects_v2').paginate(Bucket=sys.argv[1],Prefix='models/'):\n"
            "  for o in page.get('Contents',[]):\n"
            "    d=os.path.join(sys.argv[2],o['Key'][7:]); os.makedirs(os.path.dirname(d),exist_ok=True)\n"
            "    c.download_file(sys.argv[1],o['Key'],d)\n")
        tools = {
            "model_sync": lambda d: [py, "-m", "model_sync", "mirror", f"s3://{BUCKET}/models", str(d), "-q"],
            "aws s3 cp --recursive": lambda d: [shutil.which("aws", path=env["PATH"]) or "aws", "s3", "cp",
                                                "--recursive", "--only-show-errors",
                                                f"s3://{BUCKET}/models", str(d)],
            "boto3 download_file loop": lambda d: [py, "-c", boto_loop, BUCKET, str(d)],
        }
        # One untimed pass first, so the server reads from its page cache in every timed
        # run, and the order rotates per round, so no tool always goes first.
        timed(tools["boto3 download_file loop"](work / "warmup"), env)
        shutil.rmtree(work / "warmup")
        cold: dict[str, dict] = {}
        names = list(tools)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                cmd = tools[name]
                dest = work / f"cold-{r}-{name.split()[0]}"
                subprocess.run(["sync"], check=False)
                wall, _ = timed(cmd(dest), env)
                got = tree_bytes(dest)
                if got != total:
                    raise RuntimeError(f"{name} produced {got} bytes, expected {total}")
                mbps = total / MB / wall
                best = cold.get(name)
                if best is None or mbps > best["MB_per_s"]:
                    cold[name] = {"seconds": round(wall, 3), "MB_per_s": round(mbps, 1),
                                  "cpu_seconds": round(CPU[0], 2)}
                shutil.rmtree(dest)
        refs = {k: v for k, v in cold.items() if k != "model_sync"}
        best_ref = max(refs, key=lambda k: refs[k]["MB_per_s"])
        for name, v in refs.items():
            v["model_sync_ratio"] = round(cold["model_sync"]["MB_per_s"] / v["MB_per_s"], 2)

        warm_dir = work / "warm"
        timed([py, "-m", "model_sync", "mirror", f"s3://{BUCKET}/many", str(warm_dir), "-q"], env)
        wall_m, out_m = timed([py, "-m", "model_sync", "mirror", f"s3://{BUCKET}/many", str(warm_dir), "-q"], env)
        manifest = work / "many.yaml"
        lines = ["version: 1", "profiles: {all: all}", "files:"]
        for i in range(many):
            lines.append(f"  - {{folder: loras, path: set{i // 100}/f{i}.pt, size: 1024, "
                         f"source: 's3://{BUCKET}/unused/f{i}.pt', profiles: [all]}}")
        manifest.write_text("\n".join(lines) + "\n")
        wall_s, out_s = timed([py, "-m", "model_sync", "sync", "--manifest", str(manifest),
                               "--models-dir", str(warm_dir), "--from", f"s3://{BUCKET}/many", "-q"], env)
        t = time.perf_counter()
        subprocess.run([py, "-c", "import model_sync.cli"], env=env, check=True)
        import_s = time.perf_counter() - t
        summ_m = json.loads(out_m.strip().splitlines()[-1])["summary"]
        summ_s = json.loads(out_s.strip().splitlines()[-1])["summary"]
        warm = {"files": many,
                "mirror": {"seconds": round(wall_m, 3), "bytes_transferred": summ_m["bytes_transferred"],
                           "skipped": summ_m["skipped"]},
                "sync_manifest_from": {"seconds": round(wall_s, 3),
                                       "bytes_transferred": summ_s["bytes_transferred"],
                                       "skipped": summ_s["skipped"]},
                "interpreter_and_import_seconds": round(import_s, 3)}
        result = {
            "server": "SeaweedFS (weed mini) S3 gateway on 127.0.0.1",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "cold": {"files": n_files, "bytes": total, "rounds": rounds, "tools": cold,
                     "best_reference": best_ref,
                     "target_met": cold["model_sync"]["MB_per_s"] >= refs[best_ref]["MB_per_s"]},
            "warm": warm | {"target_met": max(wall_m, wall_s) < 2.0
                            and summ_m["bytes_transferred"] == summ_s["bytes_transferred"] == 0},
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"cold: {n_files} files, {total / MB:.0f} MiB (best of {rounds})")
    print(f"  {'tool':28} {'seconds':>8} {'MB/s':>8} {'CPU s':>7} {'model_sync/x':>13}")
    for name, v in cold.items():
        ratio = v.get("model_sync_ratio", "")
        print(f"  {name:28} {v['seconds']:8.2f} {v['MB_per_s']:8.1f} {v['cpu_seconds']:7.2f} {ratio!s:>13}")
    print(f"warm: {many} files present")
    for k in ("mirror", "sync_manifest_from"):
        print(f"  {k:28} {warm[k]['seconds']:8.2f} s  {warm[k]['bytes_transferred']} bytes transferred")
    print(f"  (interpreter + import alone: {warm['interpreter_and_import_seconds']:.2f} s)")
    out = REPO / "bench/results/sync.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"targets: cold >= best reference ({best_ref}): {result['cold']['target_met']}; "
          f"warm < 2 s: {result['warm']['target_met']}  -> {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
