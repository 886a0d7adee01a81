"""`comfyctl run`'s progress display: a bar per node, fed by progress snapshots (the v2
API's, or in native mode the same snapshot built from ComfyUI's WebSocket messages by
comfy_jobs.progress.Tracker: one builder for both).

A node gets its bar when ComfyUI starts executing it, and the bar fills as the node
reports steps (sampler steps, decoded frames). A node that reports none is
shown complete once the next one starts. On a terminal the bars update live (rich); in a
log the final state is printed once, at the end.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from comfyctl.remote import shown


class NodeProgress:
    def __init__(self, nodes: dict, enabled: bool = True, console: Console | None = None):
        self.nodes = nodes
        self.progress = (
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console or Console(stderr=True),
            )
            if enabled
            else None
        )
        self.tasks: dict[str, TaskID] = {}
        self.current: str | None = None

    def __enter__(self) -> NodeProgress:
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress:
            if exc[0] is None:
                self._finish(self.current)
            self.progress.stop()

    def _task(self, node: str) -> TaskID:
        assert self.progress is not None
        if node not in self.tasks:
            cls = self.nodes.get(node, {}).get("class_type", "")
            self.tasks[node] = self.progress.add_task(f"node {node} {cls}".rstrip(), total=None)
        return self.tasks[node]

    def _finish(self, node: str | None) -> None:
        if node is None or node not in self.tasks or self.progress is None:
            return
        task = self.progress.tasks[self.tasks[node]]
        self.progress.update(self.tasks[node], total=task.total or 1, completed=task.total or 1)

    def show(self, snapshot: dict) -> None:
        """One progress snapshot: the node running now and its steps."""
        node = snapshot.get("current_node")
        if not node:
            return
        node = shown(node, 40)  # the server's word, on a terminal
        self.executing(node)
        if snapshot.get("steps"):
            self.step(node, snapshot.get("step") or 0, snapshot["steps"])

    def executing(self, node) -> None:
        if not self.progress or node is None:
            return
        node = str(node)
        if self.current != node:
            self._finish(self.current)
        self.current = node
        self._task(node)

    def step(self, node, value, maximum) -> None:
        if not self.progress or node is None:
            return
        self.progress.update(self._task(str(node)), total=maximum, completed=value)
