"""Settings from the environment: the mechanism. The variables themselves are declared, each
once with its default and its doc line, in `comfy_stack.variables`.

A program builds one `Env` at start (the only place it reads `os.environ`) and turns it into
its own frozen settings object; everything else receives that object. For every setting the
command-line flag wins, else the variable, else (for a variable with a `_FILE` form, the way
Docker and Kubernetes pass secrets) the file it names, else the declared default.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast
from urllib.parse import urlsplit

T = TypeVar("T")


def text(raw: str) -> Any:
    """The value as written (the parser of plain-text variables)."""
    return raw


class SettingError(ValueError):
    """A variable's value is unusable; the message names the variable and what it expects."""


@dataclass(frozen=True)
class Var(Generic[T]):
    name: str
    default: T
    doc: str  # one line of Markdown: what it does, what it takes
    parse: Callable[[str], T] = text  # raises ValueError(what is expected) on bad input
    shown_default: str | None = None  # for the docs, where the default depends on the program
    file_form: bool = False  # NAME_FILE may name a file that holds the value
    aliases: tuple[str, ...] = ()  # older names still read, after the name itself

    @property
    def file_name(self) -> str:
        return f"{self.name}_FILE"


class Env:
    """One program's environment, copied once; `get` applies the precedence above and raises
    `error` (the program's own configuration error) naming the variable."""

    def __init__(self, environ: Mapping[str, str] | None = None, error: type[Exception] = SettingError):
        self._env = dict(os.environ if environ is None else environ)
        self.error = error

    def raw(self, var: Var) -> str | None:
        """The variable's text as set (or an alias's), None when unset or empty."""
        for name in (var.name, *var.aliases):
            value = self._env.get(name)
            if value not in (None, ""):
                return value
        return None

    def is_set(self, var: Var) -> bool:
        """Whether the variable (an alias, or its _FILE form) is given at all."""
        return self.raw(var) is not None or bool(var.file_form and self._env.get(var.file_name))

    def get(self, var: Var[T], flag: object = None) -> T:
        """`flag`: the command line's value, None when not given; a text flag goes through the
        variable's parser, and a repeatable flag's values are each parsed and joined."""
        if isinstance(flag, list):
            if flag:
                parsed = [cast("Iterable[object]", self._parse(var, item)) for item in flag]
                return cast(T, tuple(w for values in parsed for w in values))
        elif flag not in (None, ""):
            return self._parse(var, flag) if isinstance(flag, str) else cast(T, flag)
        raw = self.raw(var)
        if var.file_form:
            raw = self._from_file(var, raw)
        return var.default if raw is None else self._parse(var, raw)

    def _parse(self, var: Var[T], raw: str) -> T:
        try:
            return var.parse(raw)
        except ValueError as exc:
            raise self.error(f"{var.name}={raw!r}: {exc}") from None

    def _from_file(self, var: Var, raw: str | None) -> str | None:
        file = self._env.get(var.file_name) or None
        if file is None:
            return raw
        if raw is not None:
            raise self.error(f"set {var.name} or {var.file_name}, not both")
        try:
            text = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise self.error(f"{var.file_name}={file}: cannot read it ({exc.strerror})") from None
        if not text:
            raise self.error(f"{var.file_name}={file} is empty")
        return text


def for_child(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with `extra` set on top: what a child program is started
    with when it must see a setting this program chose (a flag, a made path)."""
    return {**os.environ, **extra}


# --- parsers: text -> value, or ValueError saying what is expected --------------------------


def integer(minimum: int | None = None) -> Callable[[str], int]:
    return _bounded(int, "a whole number", minimum)


def number(minimum: float | None = None) -> Callable[[str], float]:
    return _bounded(float, "a number", minimum)


N = TypeVar("N", int, float)


def _bounded(kind: Callable[[str], N], what: str, minimum: N | None) -> Callable[[str], N]:
    def parse(raw: str) -> N:
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"expected {what}") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"out of range (at least {minimum})")
        return value

    return parse


def choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"use one of {', '.join(options)}")
        return value

    return parse


def words(raw: str) -> tuple[str, ...]:
    """A list separated by commas, spaces or both: `a,b`, `a b` and `a, b` are the same."""
    return tuple(w for w in raw.replace(",", " ").split() if w)


def shell_words(raw: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(raw))
    except ValueError as exc:
        raise ValueError(f"cannot be split into arguments: {exc}") from None


def networks(raw: str) -> tuple:
    """IP addresses or networks, separated by commas or spaces: `10.0.0.0/8, 127.0.0.1`."""
    try:
        return tuple(ipaddress.ip_network(w, strict=False) for w in words(raw))
    except ValueError as exc:
        raise ValueError(f"{exc}; expected addresses or networks such as 10.0.0.0/8, 127.0.0.1") from None


def path(raw: str) -> Path:
    return Path(raw).expanduser()


def port(raw: str) -> int:
    raw = raw.strip()
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError("not a port number (1-65535)")
    return int(raw)


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def address(raw: str) -> Address:
    """HOST:PORT; `[::]:8188` for IPv6, and an empty host means every interface."""
    host, sep, port_text = raw.strip().rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("expected HOST:PORT, e.g. 0.0.0.0:8188")
    return Address(host.strip("[]") or "0.0.0.0", int(port_text))


def http_url(raw: str) -> str:
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected a URL like http://127.0.0.1:8189")
    return url


# --- documentation --------------------------------------------------------------------------

Row = tuple[Var, str | None]  # a variable and the program's flag for it (None: no flag)


def shown_default(var: Var) -> str:
    if var.shown_default is not None:
        return var.shown_default
    value = var.default
    if value in (None, "", ()):
        return "empty"
    if isinstance(value, tuple):
        value = " ".join(map(str, value))
    return f"`{value}`"


def flag_help(var: Var) -> str:
    """A command-line flag's help, from the same declaration as the docs' table row."""
    return f"{var.doc} (env {var.name}; default {shown_default(var)})".replace("`", "")


def add_flags(parser: argparse.ArgumentParser, rows: Iterable[Row]) -> None:
    """The flags of a program's variables; a list-valued variable's flag is repeatable."""
    for var, flag in rows:
        if flag:
            parser.add_argument(
                flag, help=flag_help(var), action="append" if isinstance(var.default, tuple) else "store"
            )


def markdown_table(rows: Iterable[Row]) -> str:
    """The docs' table of a program's variables, generated so it cannot drift from them."""
    rows = list(rows)
    with_flags = any(flag for _var, flag in rows)
    head = ["variable", *(["flag"] if with_flags else []), "default", "meaning"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for var, flag in rows:
        names = " or ".join(f"`{n}`" for n in (var.name, *var.aliases))
        cells = [names, *([f"`{flag}`" if flag else ""] if with_flags else []), shown_default(var), var.doc]
        lines.append("| " + " | ".join(cells) + " |")
        if var.file_form:
            cells = [
                f"`{var.file_name}`",
                *([""] if with_flags else []),
                "empty",
                f"a file holding `{var.name}` (Docker and Kubernetes secrets); not both",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
