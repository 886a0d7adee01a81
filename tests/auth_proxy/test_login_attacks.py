"""Attacks on the login: guessing in parallel, wearing the table and the password checks
down, and locking the admin out; each over real sockets, several clients at once, with
clients on distinct loopback addresses (all of 127.0.0.0/8 is this machine)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp

from auth_proxy.app import GATE
from auth_proxy.ratelimit import LoginLimiter
from tests.support import rss_mb
from tests.support.browser import in_chromium
from tests.support.proxy import PASSWORD, basic, from_address

WRONG = {"username": "admin", "password": "wrong-pass"}
RIGHT = {"username": "admin", "password": PASSWORD}


async def post_login(session: aiohttp.ClientSession, url: str, body: dict, **kw) -> int:
    async with session.post(url, json=body, **kw) as r:
        await r.read()
        return r.status


async def test_simultaneous_wrong_logins_are_limited(stack):
    """60 at once from one address: only one check runs at a time per client and each
    counts before its check ends, so the free allowance is all that gets checked."""
    async with from_address("127.0.0.1") as s:
        statuses = Counter(
            await asyncio.gather(*[post_login(s, stack.url("/login"), WRONG) for _ in range(60)])
        )
    print(f"60 simultaneous wrong logins: {dict(statuses)}")
    assert statuses[401] <= stack.settings.login_max_failures and statuses[429] >= 55
    assert set(statuses) <= {401, 429}


def guesses_in(limiter: LoginLimiter, seconds: float) -> int:
    """An attacker who tries again the moment Retry-After allows, for `seconds`."""
    now, guesses = 0.0, 0
    while now < seconds:
        wait = limiter.retry_after(["ip:a"], now)
        if wait > 0:
            now += wait + 0.001
            continue
        limiter.failed(["ip:a"], now)
        guesses += 1
    return guesses


def test_waiting_out_a_delay_does_not_reset_the_count():
    """The count lasts as long as the longest delay, so one guess at a time gets the free
    allowance, a doubling series, then one guess per cap; not a fresh allowance every
    window (91 guesses an hour with a 300 s window under a 900 s cap)."""
    hour = guesses_in(LoginLimiter(free=5, window_s=900, cap_s=900), 3600)
    print(f"guesses in an hour, one at a time: {hour}")
    assert hour <= 5 + 10 + 3


async def test_huge_names_and_bodies_cost_nothing(proxy_process):
    """900 KB user names, 300 attempts, 20 at a time: refused before they are read."""
    proxy, base, _token, _log, _env = proxy_process
    before = rss_mb(proxy.pid)
    name = "n" * 900_000
    statuses: Counter = Counter()
    sem = asyncio.Semaphore(20)

    async def attempt(i: int, s: aiohttp.ClientSession) -> None:
        async with sem:
            if i % 2:
                kw = {"json": {"username": name + str(i), "password": "x"}}
            else:  # chunked, no Content-Length

                async def gen():
                    yield f"username={name}{i}&password=x".encode()

                kw = {"data": gen(), "headers": {"Content-Type": "application/x-www-form-urlencoded"}}
            try:
                async with s.post(base + "/login", **kw) as r:
                    statuses[r.status] += 1
            except aiohttp.ClientError:  # the proxy may close a connection it will not read
                statuses["closed"] += 1

    async with aiohttp.ClientSession() as s:
        await asyncio.gather(*[attempt(i, s) for i in range(300)])
    after = rss_mb(proxy.pid)
    print(f"RSS {before:.0f} -> {after:.0f} MiB after 300 logins with 900 KB names; {dict(statuses)}")
    assert after - before < 25
    assert set(statuses) <= {413, "closed"} and statuses[413] >= 150


async def test_names_do_not_grow_the_table(stack):
    async with aiohttp.ClientSession() as s:
        for i in range(30):
            await post_login(s, stack.url("/login"), {"username": f"user-{i}-" + "x" * 200, "password": "x"})
    assert len(stack.proxy.app[GATE].limiter._records) == 1, "one key: this client"
    bounded = LoginLimiter(max_keys=100)
    for i in range(10_000):
        bounded.failed([f"ip:10.0.{i // 256}.{i % 256}"], 0.0)
    assert len(bounded._records) == 100


async def test_password_checks_waiting_are_bounded(stack):
    """150 wrong logins from 150 addresses at once, and the admin's right one: the checks
    waiting for argon2 never exceed AUTH_PROXY_MAX_PENDING_LOGINS, so the admin's login
    is answered within a few checks' time (or told to retry in a second)."""
    gate = stack.proxy.app[GATE]
    store, real = gate.accounts, gate.accounts.check_password
    pending_seen = []

    def counting(*args):
        pending_seen.append(gate.pending_logins)
        return real(*args)

    store.check_password = counting
    sessions = [from_address(f"127.0.1.{i + 1}") for i in range(150)]
    try:
        # another name than the admin's, so that the shared limit on the admin's name (its
        # own test below) does not come into it
        bogus = [
            asyncio.ensure_future(post_login(s, stack.url("/login"), {**WRONG, "username": "root"}))
            for s in sessions
        ]
        await asyncio.sleep(0.05)
        started, tries = time.monotonic(), []
        async with from_address("127.0.0.1") as admin:
            while True:
                async with admin.post(stack.url("/login"), json=RIGHT) as r:
                    tries.append((r.status, round(time.monotonic() - started, 1)))
                    if r.status == 200:
                        break
                    assert r.status == 429 and r.headers["Retry-After"] == "1", r.status
                    await asyncio.sleep(1)
        admin_s = time.monotonic() - started
        statuses = Counter(await asyncio.gather(*bogus))
    finally:
        await asyncio.gather(*[s.close() for s in sessions])
    print(
        f"admin logged in after {admin_s:.1f} s, tries (status, s): {tries}; bogus: {dict(statuses)}; "
        f"most checks pending: {max(pending_seen)}"
    )
    assert max(pending_seen) <= stack.settings.max_pending_logins
    assert statuses[429] >= 150 - 4 * stack.settings.max_pending_logins and len(tries) <= 10


async def test_another_sites_page_cannot_spend_the_admins_allowance(stack):
    """A page on another site posts wrong logins from the admin's own browser (no-cors
    fetch, as many as it likes); the admin then logs in from that same address."""
    attacker = aiohttp.web.Application()
    page = """<script>
        const target = "ORIGIN";
        window.done = (async () => {
          for (let i = 0; i < 8; i++) {
            await fetch(target + '/login', {method: 'POST', mode: 'no-cors',
                                     body: new URLSearchParams({username: 'admin', password: 'guess' + i})});
          }
          return true;
        })();
    </script>""".replace("ORIGIN", stack.origin)

    async def index(_request):
        return aiohttp.web.Response(text=page, content_type="text/html")

    attacker.router.add_get("/", index)
    from aiohttp.test_utils import TestServer

    server = TestServer(attacker, host="127.0.0.1")
    await server.start_server()
    try:

        def drive(browser):
            p = browser.new_page()
            p.goto(f"http://evil.test:{server.port}/")
            return p.evaluate("window.done")

        assert await in_chromium(drive, "--host-resolver-rules=MAP evil.test 127.0.0.1")
    finally:
        await server.close()
    assert stack.proxy.app[GATE].metrics.login_failures == 0, "no guess reached the password check"
    async with aiohttp.ClientSession() as s:
        assert await post_login(s, stack.url("/login"), RIGHT) == 200


async def test_one_attacker_does_not_lock_out_the_admin_or_a_verified_script(stack):
    async with from_address("127.0.0.3") as script:
        async with script.get(stack.url("/queue"), headers={"Authorization": basic("admin", PASSWORD)}) as r:
            assert r.status == 200  # verified once, remembered
        async with from_address("127.0.0.2") as attacker:
            statuses = Counter([await post_login(attacker, stack.url("/login"), WRONG) for _ in range(12)])
        assert statuses[429] >= 6, statuses
        async with script.get(stack.url("/queue"), headers={"Authorization": basic("admin", PASSWORD)}) as r:
            assert r.status == 200, "a remembered Basic credential skips the limits"
    async with from_address("127.0.0.1") as admin:
        assert await post_login(admin, stack.url("/login"), RIGHT) == 200


async def test_guesses_spread_over_many_addresses_meet_a_softer_shared_limit(stack):
    """60 addresses, one wrong guess each: past the shared allowance every client waits,
    but never longer than the shared cap, so the admin is delayed, not locked out."""
    gate = stack.proxy.app[GATE]
    for i in range(60):
        async with from_address(f"127.0.2.{i + 1}") as s:
            await post_login(s, stack.url("/login"), WRONG)
    async with from_address("127.0.0.1") as admin:
        async with admin.post(stack.url("/login"), json=RIGHT) as r:
            assert r.status == 429
            wait = int(r.headers["Retry-After"])
    assert 1 <= wait <= gate.limiter.limits["user"].cap_s + 1
