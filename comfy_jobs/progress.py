"""The contract's progress snapshot, built here and nowhere else: computed from ComfyUI's
WebSocket messages (Tracker: node counts plus the sampler steps of the node running now),
before a run (`initial`), while it waits (`waiting`) and once it is done (`done`). The
worker stores it, the v2 API serves it, `comfyctl run` shows it (both modes)."""

from __future__ import annotations


def nodes_total(workflow: dict) -> int:
    return max(len(workflow), 1)


def initial(workflow: dict) -> dict:
    return {"value": 0.0, "nodes_done": 0, "nodes_total": nodes_total(workflow)}


def waiting(previous: dict | None, workflow: dict, message: str | None) -> dict:
    """The last snapshot (or the initial one) with a message saying what the run waits for."""
    return {**(previous or initial(workflow)), "message": message}


def done(previous: dict | None, workflow: dict) -> dict:
    n = nodes_total(workflow)
    return {**(previous or {}), "value": 1.0, "nodes_done": n, "nodes_total": n, "message": None}


class Tracker:
    def __init__(self, workflow: dict):
        self.workflow = workflow
        self.total = nodes_total(workflow)
        self.done: set[str] = set()
        self.current: str | None = None
        self.step: int | None = None
        self.steps: int | None = None

    def feed(self, kind: str, data: dict) -> bool:
        """Take one message; True when the snapshot changed."""
        if kind == "execution_cached":
            self.done.update(str(n) for n in data.get("nodes") or [])
        elif kind == "executing":
            if self.current is not None:
                self.done.add(self.current)
            node = data.get("node")
            self.current = str(node) if node is not None else None
            self.step = self.steps = None
        elif kind == "progress":
            self.step, self.steps = int(data.get("value", 0)), int(data.get("max", 0)) or None
            if data.get("node") is not None:
                self.current = str(data["node"])
        elif kind == "executed":
            self.done.add(str(data.get("node")))
        else:
            return False
        return True

    def snapshot(self, message: str | None = None) -> dict:
        frac = (self.step / self.steps) if self.steps and self.step is not None else 0.0
        done = len(self.done & set(self.workflow)) if self.workflow else len(self.done)
        value = min(1.0, (done + (frac if self.current not in self.done else 0.0)) / self.total)
        cls = (self.workflow.get(self.current) or {}).get("class_type") if self.current else None
        if message is None and cls:
            message = f"{cls} {self.step}/{self.steps}" if self.steps else cls
        return {
            "value": round(value, 4),
            "nodes_done": done,
            "nodes_total": self.total,
            "current_node": self.current,
            "current_node_class": cls,
            "step": self.step,
            "steps": self.steps,
            "message": message,
        }
