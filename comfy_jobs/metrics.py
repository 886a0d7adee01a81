"""The job series for /metrics (Prometheus text format, as auth_proxy/metrics.py writes it)."""

from __future__ import annotations

from collections import Counter

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)


class Histogram:
    def __init__(self, buckets=DURATION_BUCKETS):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.n = 0

    def observe(self, v: float) -> None:
        self.sum += v
        self.n += 1
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1

    def render(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{b}"}} {n}' for b, n in zip(self.buckets, self.counts, strict=True)]
        return out + [
            f'{name}_bucket{{le="+Inf"}} {self.n}',
            f"{name}_sum {self.sum:.3f}",
            f"{name}_count {self.n}",
        ]


class JobMetrics:
    def __init__(self) -> None:
        self.attempts = 0
        self.lost = 0
        self.finished: Counter[str] = Counter()
        self.execution = Histogram()
        self.queued = Histogram()
        self.webhook_failures = 0

    def render(self, counts: dict[str, int] | None, mirror_failures: int = 0) -> str:
        out = []
        if counts is not None:
            out += [
                "# HELP comfy_jobs_queue_depth v2 jobs waiting for a worker.",
                "# TYPE comfy_jobs_queue_depth gauge",
                f"comfy_jobs_queue_depth {counts.get('queued', 0)}",
                "# HELP comfy_jobs_running v2 jobs running (or being canceled).",
                "# TYPE comfy_jobs_running gauge",
                f"comfy_jobs_running {counts.get('running', 0) + counts.get('canceling', 0)}",
            ]
        out += [
            "# HELP comfy_job_attempts_total Submissions of v2 jobs to ComfyUI by this process.",
            "# TYPE comfy_job_attempts_total counter",
            f"comfy_job_attempts_total {self.attempts}",
            "# HELP comfy_job_lost_runs_total Runs ComfyUI lost (crash, kill, restart).",
            "# TYPE comfy_job_lost_runs_total counter",
            f"comfy_job_lost_runs_total {self.lost}",
            "# HELP comfy_jobs_finished_total v2 jobs that reached a terminal state here.",
            "# TYPE comfy_jobs_finished_total counter",
        ]
        for status, n in sorted(self.finished.items()):
            out.append(f'comfy_jobs_finished_total{{status="{status}"}} {n}')
        out += [
            "# HELP comfy_job_execution_seconds From the first submission to ComfyUI to the end.",
            "# TYPE comfy_job_execution_seconds histogram",
            *self.execution.render("comfy_job_execution_seconds"),
            "# HELP comfy_job_queue_seconds From creation until a worker took the job.",
            "# TYPE comfy_job_queue_seconds histogram",
            *self.queued.render("comfy_job_queue_seconds"),
            "# HELP comfy_job_webhook_failures_total Webhook deliveries that failed (each is retried).",
            "# TYPE comfy_job_webhook_failures_total counter",
            f"comfy_job_webhook_failures_total {self.webhook_failures}",
            "# HELP comfy_job_output_upload_failures_total Outputs not uploaded to COMFY_OUTPUTS_TO.",
            "# TYPE comfy_job_output_upload_failures_total counter",
            f"comfy_job_output_upload_failures_total {mirror_failures}",
        ]
        return "\n".join(out) + "\n"
