"""Which host names the gate answers to (DNS rebinding), and what it believes of
X-Forwarded-* (only from AUTH_PROXY_TRUSTED_PROXIES)."""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
import pytest

from auth_proxy.app import GATE
from tests.support.browser import in_chromium
from tests.support.proxy import PASSWORD


def hosts(port: int) -> dict[str, str]:
    return {"Host": f"rebind.test:{port}", "Origin": f"http://rebind.test:{port}"}


async def test_a_rebound_name_gets_nothing(make_stack, http):
    """A page on an attacker's name re-pointed at this server: Host and Origin agree, so
    only the Host check stands between it and admin/admin on a first start."""
    stack = await make_stack(admin_password=None)
    h = hosts(stack.proxy.port)
    async with http.post(
        stack.url("/login"), json={"username": "admin", "password": "admin"}, headers=h
    ) as r:
        assert r.status == 421 and "AUTH_PROXY_ALLOWED_HOSTS" in (await r.json())["error"]
    for path in ("/", "/healthz", "/queue", "/_auth/password"):
        async with http.get(stack.url(path), headers=h, allow_redirects=False) as r:
            assert r.status == 421, path


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "10.1.2.3",
        "comfy-stack",
        "comfy-stack.comfy.svc.cluster.local",
        "comfy-stack.comfy.svc",
        "app.localhost",
        socket.gethostname(),
    ],
)
async def test_built_in_names_are_answered(stack, http, host):
    async with http.get(stack.url("/healthz"), headers={"Host": f"{host}:8188"}) as r:
        assert r.status == 200, host


async def test_allowed_hosts_adds_names(make_stack, http):
    stack = await make_stack(allowed_hosts=("comfy.example.com", "*.example.org"))
    for host, want in (
        ("comfy.example.com", 200),
        ("COMFY.example.com.", 200),
        ("a.b.example.org", 200),
        ("example.org", 421),
        ("comfy.example.com.evil.test", 421),
    ):
        async with http.get(stack.url("/healthz"), headers={"Host": host}) as r:
            assert r.status == want, host
    anything = await make_stack(allowed_hosts=("*",))
    async with http.get(anything.url("/healthz"), headers={"Host": "whatever.test"}) as r:
        assert r.status == 200


async def test_rebinding_in_chromium(make_stack):
    """Chromium resolves rebind.test to this machine, as after a rebinding: the attacker's
    script runs in that origin and tries the default password and a new one."""
    stack = await make_stack(admin_password=None)
    base = f"http://rebind.test:{stack.proxy.port}"

    def drive(browser):
        page = browser.new_page()
        first = page.goto(base + "/login")
        return first.status, page.evaluate("""async () => {
            const login = await fetch('/login', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                 body: JSON.stringify({username: 'admin', password: 'admin'})});
            const change = await fetch('/_auth/password', {method: 'POST',
                headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                body: 'new_password=attacker-owns-it&repeat_password=attacker-owns-it'});
            return [login.status, change.status];
        }""")

    status, (login_status, change_status) = await in_chromium(
        drive, "--host-resolver-rules=MAP rebind.test 127.0.0.1"
    )
    assert (status, login_status, change_status) == (421, 421, 421)
    assert stack.proxy.app[GATE].accounts.account("admin", fresh=True).must_change, "the default password is still the one to change"


SENT = {
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Host": "comfy.example.com",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Port": "443",
    "Forwarded": "for=203.0.113.7",
    "X-Real-IP": "203.0.113.7",
    "Comfy-User": "someone-else",
}


async def echo(http, stack, **headers) -> dict:
    async with http.get(
        stack.url("/_test/echo"), headers={"Authorization": f"Bearer {stack.token}", **headers}
    ) as r:
        assert r.status == 200, await r.text()
        return {k.lower(): v for k, v in (await r.json())["headers"].items()}


async def test_client_claims_are_not_passed_on(stack, http):
    seen = await echo(http, stack, **SENT)
    assert seen["x-forwarded-for"] == "127.0.0.1" and seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == f"127.0.0.1:{stack.proxy.port}"
    for name in ("forwarded", "x-real-ip", "comfy-user", "x-forwarded-port"):
        assert name not in seen, name


async def test_a_trusted_proxy_is_believed(make_stack, http):
    stack = await make_stack(
        trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),), allowed_hosts=("comfy.example.com",)
    )
    seen = await echo(http, stack, **{**SENT, "X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
    assert seen["x-forwarded-for"] == "198.51.100.1, 203.0.113.7, 127.0.0.1"
    assert seen["x-forwarded-host"] == "comfy.example.com" and seen["x-forwarded-proto"] == "https"
    assert seen["comfy-user"] == "someone-else" and seen["x-real-ip"] == "203.0.113.7"
    # the forwarded host must be one this server answers to, like Host
    async with http.get(stack.url("/healthz"), headers={"X-Forwarded-Host": "rebind.test"}) as r:
        assert r.status == 421


async def test_limits_count_the_forwarded_client(make_stack, http):
    """Behind the Ingress every connection is the Ingress: the limits key on the client it
    names, and a direct client cannot dodge them by writing the header itself."""
    stack = await make_stack(trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))
    wrong = {"username": "admin", "password": "wrong-pass"}
    statuses = []
    for _ in range(6):
        async with http.post(
            stack.url("/login"), json=wrong, headers={"X-Forwarded-For": "203.0.113.7"}
        ) as r:
            statuses.append(r.status)
    assert statuses == [401] * 5 + [429]
    async with http.post(
        stack.url("/login"),
        json={"username": "admin", "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.1"},
    ) as r:
        assert r.status == 200, "another client behind the same Ingress is not locked out"

    direct = await make_stack()
    statuses = []
    async with aiohttp.ClientSession() as s:
        for i in range(6):
            async with s.post(
                direct.url("/login"), json=wrong, headers={"X-Forwarded-For": f"203.0.113.{i}"}
            ) as r:
                statuses.append(r.status)
    assert statuses[-1] == 429
