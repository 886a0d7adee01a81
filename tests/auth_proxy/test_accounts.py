"""Accounts: the admin adds, disables, deletes people and resets their passwords from the
command line; a member's first password is changed at the first login; a disabled or
deleted account loses every session, token and open WebSocket at once; the account named
by COMFY_ADMIN_USER stays an admin."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from auth_proxy.accounts import accounts_url, open_accounts
from tests.auth_proxy.test_session_end import closed_within
from tests.support.proxy import add_account, basic, login


def cli(stack, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`python -m auth_proxy ...` in another process, as the admin runs it in the container."""
    env = {
        **os.environ,
        "AUTH_PROXY_STATE_DIR": str(stack.settings.state_dir),
        "COMFY_ADMIN_USER": stack.settings.admin_user,
        "COMFY_ADMIN_PASSWORD": stack.settings.admin_password or "",
        # the database the stack keeps its accounts in (without job settings, the state directory's)
        "COMFY_JOBS_DATABASE_URL": accounts_url(stack.settings),
    }
    return subprocess.run(
        [sys.executable, "-m", "auth_proxy", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def session_of(stack, headers: dict) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.get(stack.url("/_auth/session"), headers=headers) as r:
            return r.status, (await r.json() if r.content_type == "application/json" else {})


async def status_within(stack, headers: dict, status: int, seconds: float = 3.0) -> int:
    """The status /_auth/session answers `headers` with, waiting up to `seconds` for it to
    become `status`: a change made by the command line reaches a running gate within
    auth_proxy.accounts.REFRESH_S."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        got = (await session_of(stack, headers))[0]
        if got == status or asyncio.get_running_loop().time() > deadline:
            return got
        await asyncio.sleep(0.1)


async def test_the_admin_adds_a_member_who_sets_a_password_at_first_login(stack):
    added = cli(stack, "user", "add", "alice", "--role", "member")
    assert added.returncode == 0, added.stderr
    first = added.stdout.strip().splitlines()[-1]
    listed = cli(stack, "user", "list").stdout
    assert "alice\tmember\tmust change password" in listed and "admin\tadmin\tactive" in listed
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(stack.url("/login"), json={"username": "alice", "password": first}) as r:
            assert r.status == 200 and (await r.json())["must_change_password"] is True
        async with http.get(stack.url("/queue"), headers={"Accept": "application/json"}) as r:
            assert r.status == 403, "nothing but the password change until it is done"
        change = {"new_password": "alice-own-secret", "repeat_password": "alice-own-secret"}
        async with http.post(
            stack.url("/_auth/password"), json=change, headers={"Origin": stack.origin}
        ) as r:
            assert r.status == 200, await r.text()
        async with http.get(stack.url("/_auth/session")) as r:
            assert await r.json() == {"user": "alice", "via": "cookie", "role": "member"}
    assert await session_of(stack, {"Authorization": basic("alice", first)}) == (
        401,
        {"error": "wrong user name or password"},
    )
    status, who = await session_of(stack, {"Authorization": basic("alice", "alice-own-secret")})
    assert status == 200 and who["role"] == "member"


async def test_a_password_from_stdin_and_clear_errors(stack):
    assert cli(stack, "user", "add", "bob", "--password-stdin", stdin="bobs-first-pw\n").returncode == 0
    status, _ = await session_of(stack, {"Authorization": basic("bob", "bobs-first-pw")})
    assert status == 200  # it authenticates; the forced change is for routes past the gate
    for args, code, words in (
        (("user", "add", "bob"), 5, "exists"),
        (("user", "add", "Bob Smith"), 5, "lowercase"),
        (("user", "add", "clipspace"), 5, "a folder ComfyUI uses"),
        (("user", "disable", "nobody"), 5, "no account named 'nobody'"),
        (("user", "delete", "admin"), 5, "COMFY_ADMIN_USER"),
        (("user", "disable", "admin"), 5, "COMFY_ADMIN_USER"),
        (("user", "role", "admin", "member"), 5, "stays an admin"),
        (("user", "limit", "bob", "many"), 5, "a number of jobs"),
        (("token", "revoke", "nope", "--user", "bob"), 4, "no token named 'nope'"),
        (("token", "create", "x", "--user", "nobody"), 4, "no active account"),
    ):
        done = cli(stack, *args)
        assert done.returncode == code and words in done.stderr, (args, done.returncode, done.stderr)


async def test_disabling_ends_sessions_tokens_and_websockets_at_once(stack):
    bob = add_account(stack.settings, "bob")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await login(http, stack, bob.password, user="bob")
        by_cookie = await http.ws_connect(stack.url("/ws?clientId=c"), headers={"Origin": stack.origin})
        async with aiohttp.ClientSession() as s:
            by_token = await s.ws_connect(stack.url(f"/ws?clientId=t&token={bob.token}"))
            admins = await s.ws_connect(
                stack.url("/ws?clientId=a"), headers={"Authorization": f"Bearer {stack.token}"}
            )
            assert cli(stack, "user", "disable", "bob").returncode == 0
            assert await closed_within(by_cookie, 5) == 4401
            assert await closed_within(by_token, 5) == 4401
            assert await closed_within(admins, 1.5) is None, "another account's socket stays open"
            await admins.close()
        assert await status_within(stack, bob.bearer, 401) == 401
        assert (await session_of(stack, bob.basic))[0] == 401
        async with http.get(stack.url("/_auth/session")) as r:
            assert r.status == 401
    assert cli(stack, "user", "enable", "bob").returncode == 0
    assert await status_within(stack, bob.basic, 200) == 200
    assert (await session_of(stack, bob.bearer))[0] == 401, "a disabled account's tokens are gone for good"


async def test_deleting_and_resetting(stack):
    carol = add_account(stack.settings, "carol")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await login(http, stack, carol.password, user="carol")
        reset = cli(stack, "user", "reset", "carol")
        assert reset.returncode == 0
        async with http.get(stack.url("/_auth/session")) as r:
            assert r.status == 401, "a reset ends the account's sessions"
        new = reset.stdout.strip().splitlines()[-1]
        async with http.post(stack.url("/login"), json={"username": "carol", "password": new}) as r:
            assert (await r.json())["must_change_password"] is True
    assert (await session_of(stack, carol.bearer))[0] == 200, "a reset keeps the tokens"
    assert cli(stack, "user", "delete", "carol").returncode == 0
    assert await status_within(stack, carol.bearer, 401) == 401
    assert "carol" not in cli(stack, "user", "list").stdout


async def test_tokens_are_each_persons_own(stack):
    dave = add_account(stack.settings, "dave")
    created = cli(stack, "token", "create", "laptop", "--user", "dave")
    assert created.returncode == 0
    assert cli(stack, "token", "create", "laptop").returncode == 0, "names are per person"
    listed = cli(stack, "token", "list").stdout.splitlines()
    assert {tuple(line.split("\t")[:2]) for line in listed} >= {
        ("dave", "laptop"),
        ("admin", "laptop"),
        ("dave", "tests"),
    }
    status, who = await session_of(
        stack, {"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"}
    )
    assert status == 200 and who == {"user": "dave", "via": "bearer", "role": "member", "token": "laptop"}
    assert [
        line.split("\t")[1] for line in cli(stack, "token", "list", "--user", "dave").stdout.splitlines()
    ] == [
        "laptop",
        "tests",
    ]
    assert dave.token


async def test_the_audit_log_records_logins_and_account_changes(stack):
    add_account(stack.settings, "erin")
    async with aiohttp.ClientSession() as s:
        async with s.get(
            stack.url("/_auth/session"), headers={"Authorization": basic("erin", "wrong-password")}
        ) as r:
            assert r.status == 401
        async with s.get(
            stack.url("/_auth/session"), headers={"Authorization": basic("erin", "erin-secret-1")}
        ) as r:
            assert r.status == 200
    assert cli(stack, "user", "disable", "erin").returncode == 0
    entries = [json.loads(line) for line in cli(stack, "audit", "-n", "20").stdout.splitlines()]
    kinds = [(e["event"], e.get("user")) for e in entries]
    assert (
        ("login-failed", "erin") in kinds and ("login", "erin") in kinds and ("user-disable", "erin") in kinds
    )
    assert all("password" not in json.dumps(e) or e["event"] == "password-changed" for e in entries)
    assert oct((stack.settings.state_dir / "audit.log").stat().st_mode)[-3:] == "600"


@pytest.mark.parametrize("role", ["member", "admin"])
async def test_two_people_log_in_at_the_same_moment(stack, role):
    people = [add_account(stack.settings, f"p{i}-{role}", role) for i in range(4)]

    async def one(p):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await login(http, stack, p.password, user=p.name)
            async with http.get(stack.url("/_auth/session")) as r:
                return (await r.json())["user"]

    assert await asyncio.gather(*(one(p) for p in people)) == [p.name for p in people]


def test_accounts_live_beside_the_jobs(stack, tmp_path):
    """With job settings, the accounts are in the ledger's database, one file on one box."""
    from dataclasses import replace

    from comfy_jobs.settings import JobSettings

    settings = replace(stack.settings, jobs=JobSettings(jobs_dir=tmp_path / "jobs"))
    accounts = open_accounts(settings)
    accounts.add("frank")
    accounts.close()
    assert (tmp_path / "jobs" / "ledger.db").exists()
    assert oct((tmp_path / "jobs" / "ledger.db").stat().st_mode)[-3:] == "600"


def test_a_command_with_other_settings_than_the_servers_says_so(stack, tmp_path):
    """Run on the defaults where the server was given other settings (its ledger is not at the
    default place), `user add` would make an empty database nobody reads: it stops and says
    which settings to give instead."""
    env = {k: val for k, val in os.environ.items() if not k.startswith("COMFY_JOBS")}
    env |= {"AUTH_PROXY_STATE_DIR": str(stack.settings.state_dir), "COMFY_DATA_DIR": str(tmp_path / "data")}
    if Path("/data/jobs/ledger.db").exists():
        pytest.skip("this host has a ledger at the default place")
    done = subprocess.run(
        [sys.executable, "-m", "auth_proxy", "user", "add", "zed"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3 and "no accounts database" in done.stderr and "COMFY_JOBS_DIR" in done.stderr
    assert not Path("/data/jobs/ledger.db").exists()
