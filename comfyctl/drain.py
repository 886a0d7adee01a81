"""`comfyctl drain`: wait until ComfyUI's queue is empty, for a Kubernetes preStop hook.

It runs inside the container and asks ComfyUI on loopback (no login there), so a job
that is running when the pod is asked to stop can finish. It never fails the hook: a
preStop that exits non-zero only produces an event, and one that never returns holds the
pod until terminationGracePeriodSeconds, so every way out is exit 0 with a log line.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8189"


@dataclass(frozen=True)
class QueueState:
    running: int
    pending: int

    @property
    def empty(self) -> bool:
        return self.running == 0 and self.pending == 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL,
                        help=f"ComfyUI's own address, not the proxy's (default {DEFAULT_URL})")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="give up waiting after this many seconds (default 600); keep it "
                             "below the pod's terminationGracePeriodSeconds")
    parser.add_argument("--interval", type=float, default=2.0,
                        help="seconds between looks at the queue (default 2)")


def read_queue(url: str, timeout: float = 5.0) -> QueueState:
    with urllib.request.urlopen(url.rstrip("/") + "/queue", timeout=timeout) as resp:
        body = json.load(resp)
    return QueueState(running=len(body.get("queue_running") or []),
                      pending=len(body.get("queue_pending") or []))


def drain(url: str, timeout: float, interval: float) -> str:
    """Wait for an empty queue; returns why it stopped: 'idle', 'unreachable' or 'timeout'."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = read_queue(url, timeout=min(5.0, max(timeout, 0.1)))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # Already stopped (or never started): there is no job to wait for.
            log.info("ComfyUI at %s does not answer (%s); nothing to drain", url, exc)
            return "unreachable"
        if state.empty:
            log.info("ComfyUI's queue is empty; stopping")
            return "idle"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.warning("still %d running and %d pending after %.0f s; stopping anyway",
                        state.running, state.pending, timeout)
            return "timeout"
        log.info("waiting for ComfyUI's queue to empty: %d running, %d pending "
                 "(%.0f s left)", state.running, state.pending, remaining)
        time.sleep(min(interval, remaining))


def main(args: argparse.Namespace) -> int:
    drain(args.url, args.timeout, args.interval)
    return 0
