"""Typed errors of comfyctl, each with the one exit code it means in every subcommand.

`EXIT_CODES` is the table: `comfyctl --help` prints it and docs/runtime.md carries it
(a test compares the two).
"""

from __future__ import annotations


class ComfyctlError(Exception):
    """Base class: `str(err)` says what went wrong and what to do next."""

    exit_code = 1


class ConfigError(ComfyctlError):
    exit_code = 2


class Rejected(ComfyctlError):
    exit_code = 3


class NodeFailed(ComfyctlError):
    exit_code = 4


class TimedOut(ComfyctlError):
    exit_code = 5


class Unreachable(ComfyctlError):
    exit_code = 6


class SyncFailed(ComfyctlError):
    exit_code = 7


class MissingProgram(ComfyctlError):
    exit_code = 8


class ProblemsFound(ComfyctlError):
    exit_code = 9


class BadAnswer(ComfyctlError):
    """The server answered something `comfyctl run` refuses to use: not what ComfyUI or the
    v2 API sends, an output path outside --out, or more bytes than --max-output-bytes."""

    exit_code = 10


EXIT_CODES = {
    0: "success",
    ComfyctlError.exit_code: "unexpected error (a bug: please report it with the log)",
    ConfigError.exit_code: "bad configuration or arguments: the message names the setting, flag or "
    "workflow input and what to do",
    Rejected.exit_code: "`run`: the server rejected the prompt (ComfyUI's node errors are printed)",
    NodeFailed.exit_code: "`run`: a node failed while running (`execution_error`), or the prompt was "
    "interrupted",
    TimedOut.exit_code: "`run`: the run, downloads included, did not finish within `--timeout`",
    Unreachable.exit_code: "`run`: the server cannot be reached or refused the credentials",
    SyncFailed.exit_code: "`serve` (with `MODEL_SYNC_MODE=block`) or `sync`: the model sync failed (its "
    "own exit code and message precede)",
    MissingProgram.exit_code: "`serve`: a required program is missing (supervisord)",
    ProblemsFound.exit_code: "`doctor`: something is misconfigured (each problem is listed)",
    BadAnswer.exit_code: "`run`: the server's answer was refused: malformed, an output path outside "
    "`--out`, or outputs over `--max-output-bytes` (nothing is written outside `--out`)",
}
