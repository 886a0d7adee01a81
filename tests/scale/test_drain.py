"""Drain, on the worker process: SIGTERM mid-job lets the job finish, then the worker exits;
no second job is claimed meanwhile, and the one it had queued in ComfyUI behind the first
(pipelining) is deleted there and handed back unstarted (it stays queued for the other workers)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

from tests.support import python_env, wait_until

SLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "drain/d"}},
}


def test_sigterm_mid_job_finishes_it_then_exits_without_claiming_another(cluster):
    gateway = cluster.add_gateway()
    worker = cluster.add_worker(delay=3.0)
    first, second = cluster.submit(gateway, SLOW), cluster.submit(gateway, SLOW)
    wait_until(
        lambda: cluster.job(gateway, first)["status"] == "running", timeout=30, what="the first job to run"
    )
    worker.proc.proc.send_signal(signal.SIGTERM)
    assert worker.proc.proc.wait(timeout=60) == 0
    done = cluster.job(gateway, first)
    assert done["status"] == "succeeded" and done["attempts"] == 1 and len(done["outputs"]) == 1
    later = cluster.job(gateway, second)
    assert later["status"] == "queued" and later["attempts"] == 0
    assert cluster.sql("SELECT count(*) FROM attempts WHERE job_id = %s", second) == [(0,)]
    assert len(cluster.prompts_run(worker)) == 1  # its ComfyUI ran the first job only
    assert worker.name not in cluster.ledger_workers()  # it said goodbye
    # Another worker takes the job that waited.
    cluster.add_worker(delay=0.0)
    wait_until(
        lambda: cluster.job(gateway, second)["status"] == "succeeded",
        timeout=30,
        what="the second job on the other worker",
    )


def test_comfyctl_drain_stops_the_pods_worker_claiming_and_waits_for_its_job(cluster):
    """The worker pod's preStop: `comfyctl drain` asks the proxy's in-process worker, through
    the ledger, to stop claiming, and returns once its job is done."""
    gateway = cluster.add_gateway()
    pod = cluster.add_worker_proxy(delay=3.0)
    first, second = cluster.submit(gateway, SLOW), cluster.submit(gateway, SLOW)
    wait_until(
        lambda: cluster.job(gateway, first)["status"] == "running", timeout=30, what="the first job to run"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "comfyctl",
            "drain",
            "--url",
            f"http://127.0.0.1:{pod.comfy_port}",
            "--timeout",
            "60",
            "--interval",
            "0.2",
        ],
        env=python_env(COMFY_JOBS_DATABASE_URL=cluster.db_url, COMFY_JOBS_WORKER_ID=pod.name),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert out.returncode == 0, out.stderr
    assert "claims no more jobs and holds none" in out.stderr
    assert cluster.job(gateway, first)["status"] == "succeeded"
    assert cluster.job(gateway, second)["status"] == "queued"
    assert len(cluster.prompts_run(pod)) == 1
    assert pod.alive  # the pod stops after the hook; the proxy itself keeps serving until then


def test_sigterm_with_a_job_queued_behind_hands_it_back_unstarted(cluster):
    gateway = cluster.add_gateway()
    worker = cluster.add_worker(delay=3.0)
    first, second = cluster.submit(gateway, SLOW), cluster.submit(gateway, SLOW)

    def comfy_queue() -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.comfy_port}/queue", timeout=5) as r:
            return json.loads(r.read())

    queued = wait_until(
        lambda: (q := comfy_queue())["queue_running"] and q["queue_pending"] and q["queue_pending"][0][1],
        timeout=30,
        what="the second job queued in ComfyUI behind the first",
    )
    worker.proc.proc.send_signal(signal.SIGTERM)
    assert worker.proc.proc.wait(timeout=60) == 0
    assert cluster.job(gateway, first)["status"] == "succeeded"
    later = cluster.job(gateway, second)
    assert later["status"] == "queued" and later["attempts"] == 0
    assert cluster.sql("SELECT count(*) FROM attempts WHERE job_id = %s", second) == [(0,)]
    assert queued not in cluster.prompts_run(worker)  # deleted from ComfyUI's queue, never run
    cluster.add_worker(delay=0.0)
    wait_until(
        lambda: cluster.job(gateway, second)["status"] == "succeeded",
        timeout=30,
        what="the second job on the other worker",
    )
