"""ComfyUI-Manager's config.ini (<user>/default/ComfyUI-Manager/config.ini), written at start.

Created with `security_level = normal` when absent: that lets the admin install nodes from
the registry, and ComfyUI listens on loopback only, so every such request has passed the
login proxy first. Other keys a user or the Manager's own UI set are kept.

`network_mode` follows MANAGER_NETWORK_MODE. `public` makes the Manager fetch its node
lists from GitHub and the Comfy registry at every start; on a box without internet each
fetch fails with a traceback (about ten per start), so `auto` (the default) checks at each
start whether the Manager's channel answers and picks `offline` when it does not.

The check costs the start nothing (`start`): the Manager reads network_mode when ComfyUI
loads it, after torch and ComfyUI's own imports, seconds after ComfyUI is started; so the
start writes config.ini at once with the mode it knows (the last start's answer, `offline`
at the first), and a process of its own (`python -m comfyctl.manager_config`) checks the
channel beside ComfyUI's start and writes its answer, given at most PROBE_DEADLINE seconds
(urllib's timeout does not cover the name lookup, which on a box whose resolver cannot reach
out took 10 s). Only where ComfyUI reaches the Manager before that answer does the Manager
run one start in the last start's mode.
"""

from __future__ import annotations

import configparser
import io
import logging
import sys
import threading
import urllib.request
from pathlib import Path

from comfy_stack.files import SHARED, write_atomic
from comfyctl import background

log = logging.getLogger("comfyctl.manager_config")  # the same name when run as __main__
# ComfyUI-Manager's DEFAULT_CHANNEL (glob/manager_core.py); its start-up fetches go there.
DEFAULT_CHANNEL = "https://raw.githubusercontent.com/ltdrdata/ComfyUI-Manager/main"
PROBE_TIMEOUT = 5.0
# What the check waits for the answer at most, the name lookup included: a channel that
# answers does so in well under a second, even across the sea.
PROBE_DEADLINE = 2.0


def reachable(channel: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the channel serves its node list (what the Manager fetches first)."""
    try:
        with urllib.request.urlopen(f"{channel.rstrip('/')}/custom-node-list.json", timeout=timeout) as r:
            return r.status == 200
    except (OSError, ValueError):
        return False


def config_path(user_dir: Path) -> Path:
    return user_dir / "default" / "ComfyUI-Manager" / "config.ini"


def read(path: Path) -> configparser.ConfigParser:
    cfg = configparser.ConfigParser(strict=False, interpolation=None)
    if path.is_file():
        cfg.read(path)
    if not cfg.has_section("default"):
        cfg.add_section("default")
    return cfg


class Probe:
    """The channel check, in a thread of its own; `__call__` waits for its answer at most
    until the deadline (no answer: offline)."""

    def __init__(self, user_dir: Path, deadline: float = PROBE_DEADLINE, check=reachable) -> None:
        self.channel = read(config_path(user_dir))["default"].get("channel_url", DEFAULT_CHANNEL)
        self.deadline = deadline
        self._answer = False
        self._done = threading.Event()
        # a daemon thread: a lookup that hangs past the deadline does not hold the start up
        threading.Thread(target=self._run, args=(check,), name="manager-probe", daemon=True).start()

    def _run(self, check) -> None:
        self._answer = check(self.channel)
        self._done.set()

    def __call__(self, channel: str) -> bool:
        if channel != self.channel:  # not what was asked in advance
            return reachable(channel, timeout=self.deadline)
        return self._done.wait(self.deadline) and self._answer


def write(user_dir: Path, mode: str, probe=reachable) -> str:
    """Create or update config.ini; returns the network mode written."""
    path = config_path(user_dir)
    cfg = read(path)
    section = cfg["default"]
    section.setdefault("security_level", "normal")
    if mode == "auto":
        channel = section.get("channel_url", DEFAULT_CHANNEL)
        mode = "public" if probe(channel) else "offline"
        if mode == "offline":
            log.info(
                "ComfyUI-Manager's channel %s cannot be reached: its network mode is offline "
                "(set MANAGER_NETWORK_MODE to choose)",
                channel,
            )
    if section.get("network_mode") != mode or not path.is_file():
        section["network_mode"] = mode
        out = io.StringIO()
        cfg.write(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, out.getvalue(), mode=SHARED, fsync=False)
    return mode


def start(user_dir: Path, mode: str) -> str:
    """config.ini for a start, without waiting for the network; returns the mode written now.
    For `auto`: the last start's answer (`offline` at the first), and the channel checked by
    a process of its own, which writes its answer while ComfyUI starts."""
    if mode != "auto":
        return write(user_dir, mode)
    known = read(config_path(user_dir))["default"].get("network_mode")
    written = write(user_dir, known if known in ("public", "offline") else "offline")
    background.orphan([sys.executable, "-m", __name__, str(user_dir)])
    return written


def main(argv: list[str]) -> int:
    """`python -m comfyctl.manager_config USER_DIR`: check the channel, write the answer."""
    if len(argv) != 1:
        print("usage: python -m comfyctl.manager_config USER_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    user_dir = Path(argv[0])
    write(user_dir, "auto", probe=Probe(user_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
