"""Typed errors of auth_proxy, each with the exit code `python -m auth_proxy` returns.

| code | meaning |
|---:|---|
| 0 | success |
| 2 | bad command line or settings (the message names the variable) |
| 3 | the state directory cannot be read or written |
| 4 | no such token (`token revoke`) or a token name already in use (`token create`) |
| 5 | no such account, a name already in use, or a change refused (`user ...`) |
"""

from __future__ import annotations


class AuthProxyError(Exception):
    exit_code = 1


class ConfigError(AuthProxyError):
    exit_code = 2


class StateError(AuthProxyError):
    exit_code = 3


class TokenError(AuthProxyError):
    exit_code = 4


class AccountError(AuthProxyError):
    exit_code = 5


class BadBody(ValueError):
    """The body of a form or JSON request the gate reads itself is unusable (answered 400,
    never an exit code)."""
