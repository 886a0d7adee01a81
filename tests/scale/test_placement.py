"""Placement: a job runs on a worker that has its model files on disk (as model_sync placed
them), preferring the one that ran that model last; a job whose models no worker has waits,
saying why, until a worker that has them starts."""

from __future__ import annotations

from pathlib import Path

from model_sync.state import StateStore
from tests.support import wait_until


def models_dir(base: Path, *dests: str) -> Path:
    """A models directory as model_sync leaves it: the files and their state records."""
    base.mkdir(parents=True)
    store = StateStore(base / ".model_sync")
    for dest in dests:
        path = base / dest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights of " + dest.encode())
        store.put(dest, f"s3://models/{dest}", "etag-1", path, None)
    return base


def needing(model: str) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": model}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "place/p"}},
    }


def ran_on(cluster, job_id: str) -> str:
    [(worker,)] = cluster.sql("SELECT worker FROM attempts WHERE job_id = %s", job_id)
    return worker


def test_jobs_for_a_model_only_one_worker_has_all_run_there(cluster, tmp_path):
    gateway = cluster.add_gateway()
    cluster.add_worker(0.2, models_dir(tmp_path / "a", "checkpoints/sd15/only-a.safetensors"))
    cluster.add_worker(0.2, models_dir(tmp_path / "b", "checkpoints/other.safetensors"))
    cluster.add_worker(0.2, models_dir(tmp_path / "c"))  # has no model: takes only jobs that load none
    ids = [cluster.submit(gateway, needing("sd15/only-a.safetensors")) for _ in range(6)]
    plain = [cluster.submit(gateway, needing("none")) for _ in range(3)]  # loads no model file
    wait_until(
        lambda: all(cluster.job(gateway, j)["status"] == "succeeded" for j in ids + plain),
        timeout=60,
        what="every job",
    )
    assert {ran_on(cluster, j) for j in ids} == {"worker-0"}


def test_a_job_whose_models_no_worker_has_waits_with_the_reason(cluster, tmp_path):
    gateway = cluster.add_gateway()
    cluster.add_worker(0.0, models_dir(tmp_path / "a", "checkpoints/a.safetensors"))
    job_id = cluster.submit(gateway, needing("wan/missing.safetensors"))
    wait_until(
        lambda: (
            "wan/missing.safetensors"
            in ((cluster.job(gateway, job_id)["progress"] or {}).get("message") or "")
        ),
        timeout=30,
        what="the reason",
    )
    job = cluster.job(gateway, job_id)
    assert job["status"] == "queued" and job["attempts"] == 0
    assert "worker-0" in job["progress"]["message"]
    cluster.add_worker(0.0, models_dir(tmp_path / "b", "diffusion_models/wan/missing.safetensors"))
    wait_until(lambda: cluster.job(gateway, job_id)["status"] == "succeeded", timeout=30, what="the job")
    assert ran_on(cluster, job_id) == "worker-1"


def test_the_worker_that_ran_a_model_last_gets_the_next_job_for_it(cluster, tmp_path):
    gateway = cluster.add_gateway()
    cluster.add_worker(0.2, models_dir(tmp_path / "a", "checkpoints/m.safetensors"))
    first = cluster.submit(gateway, needing("m.safetensors"))
    wait_until(lambda: cluster.job(gateway, first)["status"] == "succeeded", timeout=30, what="the first job")
    cluster.add_worker(0.2, models_dir(tmp_path / "b", "checkpoints/m.safetensors"))
    for _ in range(3):  # one at a time, with both workers idle: worker-0 has the model loaded
        job_id = cluster.submit(gateway, needing("m.safetensors"))
        wait_until(
            lambda j=job_id: cluster.job(gateway, j)["status"] == "succeeded", timeout=30, what="a job"
        )
        assert ran_on(cluster, job_id) == "worker-0"
