"""Prometheus text exposition of the proxy's counters.

Written by hand: five series do not justify a client library, and the format is plain
(https://prometheus.io/docs/instrumenting/exposition_formats/).
"""

from __future__ import annotations

from collections import Counter

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def route_group(norm_path: str) -> str:
    """A small fixed set of labels, so that metrics never grow with user-chosen paths."""
    p = norm_path[4:] if norm_path.startswith("/api/") else norm_path
    for prefix, group in (
        ("/ws", "ws"),
        ("/prompt", "prompt"),
        ("/queue", "queue"),
        ("/history", "history"),
        ("/view", "view"),
        ("/upload", "upload"),
        ("/internal", "internal"),
        ("/userdata", "userdata"),
        ("/v2/userdata", "userdata"),
        ("/settings", "settings"),
        ("/object_info", "object_info"),
        ("/system_stats", "system_stats"),
        ("/login", "login"),
        ("/logout", "login"),
        ("/_auth", "login"),
        ("/healthz", "health"),
        ("/readyz", "health"),
        ("/metrics", "metrics"),
    ):
        if p == prefix or p.startswith(prefix + "/") or p.startswith(prefix + "?"):
            return group
    return "other"


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.login_failures = 0
        self.open_websockets = 0
        self.latency_buckets = [0] * len(BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.queue_depth: int | None = None

    def observe_upstream(self, seconds: float) -> None:
        self.latency_sum += seconds
        self.latency_count += 1
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.latency_buckets[i] += 1

    def render(self) -> str:
        out = [
            "# HELP comfy_proxy_requests_total Requests by route group and status.",
            "# TYPE comfy_proxy_requests_total counter",
        ]
        for (group, status), n in sorted(self.requests.items()):
            out.append(f'comfy_proxy_requests_total{{group="{group}",status="{status}"}} {n}')
        out += [
            "# HELP comfy_proxy_login_failures_total Failed logins (any way in).",
            "# TYPE comfy_proxy_login_failures_total counter",
            f"comfy_proxy_login_failures_total {self.login_failures}",
            "# HELP comfy_proxy_open_websockets WebSockets relayed right now.",
            "# TYPE comfy_proxy_open_websockets gauge",
            f"comfy_proxy_open_websockets {self.open_websockets}",
            "# HELP comfy_proxy_upstream_seconds Time to ComfyUI's response headers.",
            "# TYPE comfy_proxy_upstream_seconds histogram",
        ]
        for bound, n in zip(BUCKETS, self.latency_buckets, strict=True):
            out.append(f'comfy_proxy_upstream_seconds_bucket{{le="{bound}"}} {n}')
        out += [
            f'comfy_proxy_upstream_seconds_bucket{{le="+Inf"}} {self.latency_count}',
            f"comfy_proxy_upstream_seconds_sum {self.latency_sum:.6f}",
            f"comfy_proxy_upstream_seconds_count {self.latency_count}",
        ]
        if self.queue_depth is not None:
            out += [
                "# HELP comfy_queue_depth Prompts running or pending in ComfyUI.",
                "# TYPE comfy_queue_depth gauge",
                f"comfy_queue_depth {self.queue_depth}",
            ]
        return "\n".join(out) + "\n"
