"""Which worker runs which job (pure: no I/O; the ledger calls it inside its claim).

A job `needs` the model files its workflow loads: every input whose value is a file name
with a model extension (ComfyUI's loaders take names relative to their folder, e.g.
`ckpt_name: "sd15/v1-5.safetensors"`). A worker reports the files model_sync placed on its
disk (`checkpoints/sd15/v1-5.safetensors`, relative to the models directory) and the models
of the job it ran last (those are what its ComfyUI has loaded). Rules:

1. a worker takes a job only if it has every needed file (a worker that reports no models
   takes every job: one box, or a worker whose models are not managed by model_sync);
2. among the live idle workers that have them, the one that ran those models last takes it;
   another waits PREFER_S before taking the job itself, so a busy or stuck favourite never
   holds a job back for long;
3. a job no live worker can take stays queued, and its status says which files are missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MODEL_EXTENSIONS = (".safetensors", ".sft", ".ckpt", ".pt", ".pt2", ".pth", ".bin", ".pkl", ".gguf")
PREFER_S = 3.0


@dataclass(frozen=True)
class WorkerView:
    id: str
    models: frozenset[str] | None  # names as loaders give them, and folder/name; None: takes every job
    loaded: frozenset[str]
    idle: bool
    draining: bool


def needs_of(workflow: dict) -> list[str] | None:
    """The model file names a workflow loads, sorted, or None when it loads none."""
    found = {
        value.strip()
        for node in workflow.values()
        if isinstance(node, dict)
        for value in (node.get("inputs") or {}).values()
        if isinstance(value, str) and value.strip().lower().endswith(MODEL_EXTENSIONS)
    }
    return sorted(found) or None


def names_of(placed: Iterable[str]) -> frozenset[str]:
    """Every name a loader may use for files placed at `folder/rel/path`: the path as
    placed and the path within its folder."""
    out: set[str] = set()
    for dest in placed:
        out.add(dest)
        if "/" in dest:
            out.add(dest.split("/", 1)[1])
    return frozenset(out)


def can_take(w: WorkerView, needs: Sequence[str] | None) -> bool:
    return not needs or w.models is None or all(n in w.models for n in needs)


def choose(
    me: WorkerView, peers: Sequence[WorkerView], jobs: Sequence[tuple[int, list | None, float]], now: float
) -> int | None:
    """The seq of the job `me` should take among `jobs` (seq, needs, created_at), oldest
    first, or None."""
    for seq, needs, created in jobs:
        if not can_take(me, needs):
            continue
        if needs and not set(needs) <= me.loaded and now - created < PREFER_S:
            favourite = any(
                p.idle
                and not p.draining
                and p.id != me.id
                and can_take(p, needs)
                and p.models is not None
                and set(needs) <= p.loaded
                for p in peers
            )
            if favourite:
                continue
        return seq
    return None


def waiting_reason(needs: Sequence[str] | None, workers: Sequence[WorkerView]) -> str | None:
    """Why a queued job cannot start anywhere now, or None when some live worker can take it."""
    live = [w for w in workers if not w.draining]
    if any(can_take(w, needs) for w in live):
        return None
    if not live:
        return "waiting for a worker: none is running"
    missing = sorted(n for n in (needs or ()) if not any(w.models is None or n in w.models for w in live))
    return (
        f"waiting for a worker that has {', '.join(missing) or ', '.join(needs or ())} on disk: "
        f"no running worker has {'it' if len(missing) == 1 else 'them all'} "
        f"(workers: {', '.join(w.id for w in live)}); add them to the model sync's profiles"
    )
