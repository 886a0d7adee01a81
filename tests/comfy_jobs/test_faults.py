"""Faults, each a test, with ComfyUI's stand-in and the proxy as real processes: after
each, every job ends in the state the contract says, nothing runs again after it
succeeded, and no output is lost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.comfy_jobs.conftest import SMOKE
from tests.support import wait_until
from tests.support.jobs_stack import JobsStack


@pytest.fixture
def make_stack(tmp_path):
    stacks = []

    def make(delay: float, **env) -> JobsStack:
        s = JobsStack(tmp_path / f"s{len(stacks)}", delay, **env)
        stacks.append(s)
        return s.start()

    yield make
    for s in stacks:
        s.stop()


def submit(stack: JobsStack, graph=SMOKE) -> str:
    status, body, _ = stack.request("POST", "/api/v2/jobs", {"workflow": graph})
    assert status == 201, body
    return body["id"]


def running_in_comfy(stack: JobsStack) -> str:
    return wait_until(
        lambda: (stack.comfy_queue()["queue_running"] or [[None, None]])[0][1],
        timeout=15,
        what="ComfyUI to run the job",
    )


def final(stack: JobsStack, job_id: str, timeout: float = 40) -> dict:
    return wait_until(
        lambda: (j := stack.job(job_id))["status"] in ("succeeded", "failed", "canceled") and j,
        timeout=timeout,
        interval=0.1,
        what=f"job {job_id} to end",
    )


def outputs_on_disk(stack: JobsStack) -> list[Path]:
    return sorted((stack.base / "comfy/output").rglob("*.png"))


def assert_ran_once_after_success(stack: JobsStack, job_id: str) -> None:
    outcomes = [a["outcome"] for a in stack.ledger_attempts(job_id)]
    assert outcomes.count("succeeded") == 1 and outcomes[-1] == "succeeded", outcomes


def assert_output_kept(stack: JobsStack, job: dict) -> None:
    [out] = job["outputs"]
    status, _, headers = stack.request("GET", f"/api/v2/assets/{out['id']}")
    assert status == 200
    blob = stack.base / "jobs/blobs" / out["hash"][7:9] / out["hash"][7:]
    assert blob.stat().st_size == out["size_bytes"]


def test_comfyui_kill9_mid_job_is_resubmitted_when_it_is_back(make_stack):
    stack = make_stack(delay=2.0)
    job_id = submit(stack)
    first = running_in_comfy(stack)
    stack.comfy.kill9()
    # The ledger tells the truth meanwhile: still running, waiting for ComfyUI.
    wait_until(
        lambda: "waiting" in ((stack.job(job_id)["progress"] or {}).get("message") or ""),
        timeout=10,
        what="the job to say it waits for ComfyUI",
    )
    assert stack.job(job_id)["status"] == "running"
    stack.start_comfy()
    job = final(stack, job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    attempts = stack.ledger_attempts(job_id)
    assert [a["outcome"] for a in attempts] == ["lost", "succeeded"] and attempts[0]["prompt_id"] == first
    assert len(outputs_on_disk(stack)) == 1
    assert_output_kept(stack, job)


def test_comfyui_lost_the_run_max_attempts_times_fails_with_the_reason(make_stack):
    stack = make_stack(delay=30.0, COMFY_JOB_MAX_ATTEMPTS="2")
    job_id = submit(stack)
    seen = set()
    for _ in range(2):
        seen.add(
            wait_until(lambda: (p := running_in_comfy(stack)) not in seen and p, timeout=20, what="a new run")
        )
        stack.comfy.kill9()
        stack.start_comfy()
    job = final(stack, job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "comfyui_lost_run"
    assert "2 time(s)" in job["error"]["message"]
    assert [a["outcome"] for a in stack.ledger_attempts(job_id)] == ["lost", "lost"]
    assert stack.comfy_queue() == {"queue_running": [], "queue_pending": []}  # not submitted a third time


def test_proxy_kill9_mid_job_resumes_the_same_run(make_stack):
    stack = make_stack(delay=3.0)
    job_id = submit(stack)
    prompt = running_in_comfy(stack)
    stack.proxy.kill9()
    stack.start_proxy()
    job = final(stack, job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 1
    assert [(a["prompt_id"], a["outcome"]) for a in stack.ledger_attempts(job_id)] == [(prompt, "succeeded")]
    assert len(outputs_on_disk(stack)) == 1  # ComfyUI ran it once
    assert_output_kept(stack, job)


def test_whole_stack_restarted_with_jobs_queued(make_stack):
    stack = make_stack(delay=1.5)
    ids = [submit(stack) for _ in range(3)]
    running_in_comfy(stack)
    stack.proxy.kill9()
    stack.comfy.kill9()
    statuses = {stack_job: None for stack_job in ids}
    stack.start_comfy()
    stack.start_proxy()
    for job_id in ids:
        job = final(stack, job_id, timeout=60)
        statuses[job_id] = job["status"]
        assert_ran_once_after_success(stack, job_id)
        assert_output_kept(stack, job)
    assert set(statuses.values()) == {"succeeded"}
    assert len(outputs_on_disk(stack)) == 3  # one file per job: none ran twice


def test_a_finished_job_never_runs_again_after_a_restart(make_stack):
    stack = make_stack(delay=0.0)
    job_id = submit(stack)
    assert final(stack, job_id)["status"] == "succeeded"
    stack.proxy.kill9()
    stack.start_proxy()
    second = submit(stack)
    assert final(stack, second)["status"] == "succeeded"
    assert len(outputs_on_disk(stack)) == 2
    assert [a["outcome"] for a in stack.ledger_attempts(job_id)] == ["succeeded"]


def test_duplicate_submit_across_a_proxy_restart_is_the_same_job(make_stack):
    stack = make_stack(delay=0.5)
    key = {"Idempotency-Key": "retry-after-crash"}
    status, first, _ = stack.request("POST", "/api/v2/jobs", {"workflow": SMOKE}, key)
    assert status == 201
    stack.proxy.kill9()
    stack.start_proxy()
    status, again, headers = stack.request("POST", "/api/v2/jobs", {"workflow": SMOKE}, key)
    assert status == 201 and again["id"] == first["id"] and headers["Idempotency-Replayed"] == "true"
    status, other, _ = stack.request("POST", "/api/v2/jobs", {"workflow": {**SMOKE, "5": SMOKE["2"]}}, key)
    assert status == 422 and other["error"]["code"] == "idempotency_key_reuse"
    assert final(stack, first["id"])["status"] == "succeeded"
    assert len(outputs_on_disk(stack)) == 1


def test_a_run_lost_after_it_saved_leaves_only_the_next_runs_output(make_stack):
    """ComfyUI killed between a run's SaveImage and its history entry: the output was
    committed while it ran, the run is lost and submitted again, and the job's outputs are
    the second run's alone (not one per attempt)."""
    stack = make_stack(delay=0.5, history_delay=30.0)
    job_id = submit(stack)
    wait_until(lambda: stack.job(job_id)["outputs"], timeout=20, what="the first run's output")
    first = stack.job(job_id)["outputs"][0]
    stack.comfy.kill9()
    stack.comfy.argv[stack.comfy.argv.index("--fake-history-delay") + 1] = "0"
    stack.start_comfy()
    job = final(stack, job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    assert len(outputs_on_disk(stack)) == 2  # each run saved its file
    assert_output_kept(stack, job)
    assert job["outputs"][0]["id"] != first["id"]
    status, _, _ = stack.request("GET", f"/api/v2/assets/{first['id']}")
    assert status == 200  # the lost run's asset is still there for whoever holds its id


# --- pipelining: the worker holds two jobs, the second queued in ComfyUI behind the first ---
def two_held(stack: JobsStack) -> tuple[str, str, str]:
    """Submit two jobs and wait until ComfyUI runs the first with the second queued behind
    it; returns both job ids and the second's prompt id."""
    first, second = submit(stack), submit(stack)
    queued = wait_until(
        lambda: (
            (q := stack.comfy_queue())["queue_running"] and q["queue_pending"] and q["queue_pending"][0][1]
        ),
        timeout=15,
        what="the second job queued in ComfyUI behind the first",
    )
    assert [a["prompt_id"] for a in stack.ledger_attempts(second)] == [queued]
    return first, second, queued


def test_cancel_of_the_job_queued_behind_deletes_it_from_comfyuis_queue(make_stack):
    stack = make_stack(delay=2.0)
    first, second, queued = two_held(stack)
    status, _, _ = stack.request("POST", f"/api/v2/jobs/{second}/cancel")
    assert status == 200
    assert final(stack, second)["status"] == "canceled"
    assert queued not in [p for _, p, *_ in stack.comfy_queue()["queue_pending"]]
    assert final(stack, first)["status"] == "succeeded"
    assert queued not in stack.comfy_started()  # deleted before its turn: it never ran
    assert len(outputs_on_disk(stack)) == 1


def test_comfyui_kill9_with_two_jobs_held_resubmits_both_and_charges_only_the_run_it_cut(make_stack):
    stack = make_stack(delay=2.0)
    first, second, _queued = two_held(stack)
    stack.comfy.kill9()
    # down for a few seconds, as a real ComfyUI is while it restarts: the worker's attempts
    # to reconnect meanwhile must not blur what it knew when the run was cut
    time.sleep(3)
    stack.start_comfy()
    cut, behind = final(stack, first), final(stack, second)
    assert cut["status"] == "succeeded" and cut["attempts"] == 2, cut
    assert [a["outcome"] for a in stack.ledger_attempts(first)] == ["lost", "succeeded"]
    # queued behind the run ComfyUI was executing, it never started: no attempt used up
    assert behind["status"] == "succeeded" and behind["attempts"] == 1, behind
    assert [a["outcome"] for a in stack.ledger_attempts(second)] == ["succeeded"]
    for job in (cut, behind):
        assert_output_kept(stack, job)
    assert len(outputs_on_disk(stack)) == 2  # the restarted ComfyUI ran each once


def test_crashes_fail_only_the_job_whose_runs_they_cut_not_the_one_waiting_behind(make_stack):
    """ComfyUI killed twice (an OOM kill, say) with one job running and another queued
    behind, COMFY_JOB_MAX_ATTEMPTS=2: each kill is charged to the run it cut short, so a
    job fails only if both kills cut its own runs, and the one waiting behind is not failed
    for the other's crashes."""
    stack = make_stack(delay=4.0, COMFY_JOB_MAX_ATTEMPTS="2")
    jobs = [submit(stack), submit(stack)]
    cut = []
    for _ in range(2):
        cut.append(
            wait_until(
                lambda: (
                    (q := stack.comfy_queue())["queue_running"]
                    and q["queue_pending"]
                    and q["queue_running"][0][1] not in cut
                    and q["queue_running"][0][1]
                ),
                timeout=30,
                what="a run executing with another queued behind it",
            )
        )
        stack.comfy.kill9()
        stack.start_comfy()
    charged = []
    for job_id in jobs:
        job = final(stack, job_id, timeout=60)
        lost = [a["prompt_id"] for a in stack.ledger_attempts(job_id) if a["outcome"] == "lost"]
        charged += lost
        if len(lost) == 2:
            assert job["status"] == "failed" and job["error"]["code"] == "comfyui_lost_run", job
        else:
            assert job["status"] == "succeeded" and job["attempts"] == len(lost) + 1, job
    assert sorted(charged) == sorted(cut), (
        "each kill is charged to the run it cut, and only to it",
        cut,
        {j: stack.ledger_attempts(j) for j in jobs},
    )


def test_a_lease_lost_on_the_job_queued_behind_takes_it_out_of_comfyuis_queue(make_stack):
    """Another worker holds the second job now (its lease was taken over): this worker
    deletes the run it queued, so that the job runs once, under whoever holds it."""
    stack = make_stack(delay=2.0)
    first, second, queued = two_held(stack)
    taken = stack.ledger_write(
        "UPDATE jobs SET lease_owner = 'box-2', lease_until = strftime('%s', 'now') + 4 WHERE id = ?", second
    )
    assert taken == 1
    wait_until(
        lambda: queued not in [p for _, p, *_ in stack.comfy_queue()["queue_pending"]],
        timeout=15,
        what="the run queued behind to leave ComfyUI's queue",
    )
    # box-2 never comes: its lease runs out, and this worker takes the job back and runs it
    assert final(stack, first)["status"] == "succeeded"
    job = final(stack, second)
    assert job["status"] == "succeeded"
    assert queued not in stack.comfy_started()
    assert_ran_once_after_success(stack, second)
    assert len(outputs_on_disk(stack)) == 2
