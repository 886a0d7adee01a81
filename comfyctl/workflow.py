"""API-format workflows and their parameter maps, and the edits `comfyctl run` makes.

A bundled API workflow is `{"prompt": {...ComfyUI API graph...}, "params": {"seed":
"3.seed", ...}}`: ComfyUI reads every key of a graph as a node id, so the map of friendly
names lives beside the graph, not in it. A bare API graph (what ComfyUI's "Export (API)"
writes) works too, with `--set` only.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

from comfyctl.errors import ConfigError


class WorkflowError(ConfigError):
    """A bad workflow file or a --set/--param/--input that names nothing in it."""


@dataclass
class Workflow:
    prompt: dict
    params: dict[str, str]

    @classmethod
    def load(cls, path: Path) -> Workflow:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise WorkflowError(f"{path}: cannot read it as JSON ({exc})") from None
        if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
            prompt, params = data["prompt"], dict(data.get("params") or {})
        elif isinstance(data, dict) and "nodes" in data and "links" in data:
            raise WorkflowError(
                f"{path} is a UI workflow; use its API form (workflows/api/, or 'Export (API)' in ComfyUI)"
            )
        else:
            prompt, params = data, {}
        if not isinstance(prompt, dict) or not all(
            isinstance(n, dict) and "class_type" in n for n in prompt.values()
        ):
            raise WorkflowError(f"{path}: not an API-format workflow (nodes with class_type)")
        return cls(copy.deepcopy(prompt), params)

    def target(self, spec: str) -> tuple[str, str]:
        """NODE.INPUT, or a parameter name, -> (node id, input name); an error if absent."""
        if spec in self.params:
            spec = self.params[spec]
        node, sep, name = spec.partition(".")
        if not sep:
            known = ", ".join(sorted(self.params)) or "none"
            raise WorkflowError(
                f"{spec!r} is neither NODE.INPUT nor a parameter of this workflow (its parameters: {known})"
            )
        if node not in self.prompt:
            raise WorkflowError(
                f"node {node!r} is not in the workflow (nodes: {', '.join(sorted(self.prompt))})"
            )
        inputs = self.prompt[node].setdefault("inputs", {})
        if name not in inputs:
            raise WorkflowError(
                f"node {node} ({self.prompt[node]['class_type']}) has no input {name!r} "
                f"(inputs: {', '.join(sorted(inputs))})"
            )
        if isinstance(inputs[name], list):
            raise WorkflowError(f"{node}.{name} is a link from another node, not a value")
        return node, name

    def set(self, spec: str, value) -> None:
        node, name = self.target(spec)
        self.prompt[node]["inputs"][name] = value


def parse_value(raw: str):
    """JSON where it parses (numbers, true/false, lists), else the string itself, so
    `seed=7` is a number and `prompt=a cat` stays text."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def split_assignment(arg: str, flag: str) -> tuple[str, str]:
    key, sep, value = arg.partition("=")
    if not sep or not key:
        raise WorkflowError(f"{flag} {arg!r}: expected NAME=VALUE")
    return key, value
