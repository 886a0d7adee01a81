"""What the proxy gives away: nothing secret in its log however malformed the request,
no version banner, no upstream address, its pages not framable by others, a private
state directory, its own favicon, and no token relayed on a plain GET of /ws."""

from __future__ import annotations

import asyncio
import stat

import aiohttp

from tests.support import stop_process
from tests.support.proxy import PASSWORD, send_raw

SECRETS = [f"SECRET{i}x" for i in range(12)]
MALFORMED = [
    f"GET /ws?token={SECRETS[0]} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {SECRETS[1]}\r\n"
    f"Cookie: comfy_session={SECRETS[2]}\r\n\x01bad\r\n\r\n",
    f"GET /?token={SECRETS[3]} HTTP/1.1\r\nHost: x\r\nCookie: comfy_session={SECRETS[4]}{'A' * 9000}\r\n\r\n",
    f"G@T /queue?token={SECRETS[5]} HTTP/1.1\r\nHost: x\r\n\r\n",
    f"GET /queue?token={SECRETS[6]} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    f"GET /queue HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRETS[7]}\xff\xfe\r\n\r\n",
    f"GET /queue HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {SECRETS[8]}\xff\r\n\r\n",
    "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    f"Transfer-Encoding: chunked\r\n\r\nzz\r\nusername=admin&password={SECRETS[9]}\r\n",
    f"GET /queue?token={SECRETS[10]} HTTP/1.1\r\nHost: x\r\nCookie: comfy_session={SECRETS[11]}\r\n"
    f"X-Long: {'y' * 9000}\r\n\r\n",
]


async def test_no_secret_in_the_log_of_malformed_requests(spawn_proxy):
    proxy = spawn_proxy()
    port = int(proxy.base.rsplit(":", 1)[1])
    answers = await asyncio.gather(*[send_raw(port, m.encode("latin-1")) for m in MALFORMED])
    async with aiohttp.ClientSession() as s:  # and a wrong password, for the record
        async with s.post(proxy.base + "/login", json={"username": "admin", "password": SECRETS[9]}) as r:
            assert r.status == 401
    stop_process(proxy.proc)
    text = proxy.log.read_text(errors="replace")
    print("answers:", [a[:12] for a in answers])
    assert all(a[9:12] in (b"400", b"401") for a in answers), answers
    assert "malformed request" in text, "the errors are still logged, as one line each"
    for secret in SECRETS + [PASSWORD]:
        assert secret not in text, secret
    assert "Traceback" not in text


async def test_no_banner_and_no_framing(stack, http):
    async with http.get(stack.url("/login")) as r:
        assert r.headers["Server"] == "comfy-stack"
        assert r.headers["Content-Security-Policy"] == "frame-ancestors 'self'"
        assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
    async with http.get(stack.url("/system_stats"), headers={"Authorization": f"Bearer {stack.token}"}) as r:
        assert r.headers["Server"] == "comfy-stack", "ComfyUI's own banner is not relayed either"


async def test_readyz_names_no_address_when_comfyui_is_down(make_stack, unused_tcp_port, http):
    stack = await make_stack(upstream=f"http://127.0.0.1:{unused_tcp_port}")
    async with http.get(stack.url("/readyz")) as r:
        body = await r.text()
        assert r.status == 503 and "not answering" in body and str(unused_tcp_port) not in body


async def test_the_state_directory_is_private(make_stack, tmp_path):
    shared = tmp_path / "shared-auth"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    stack = await make_stack(state_dir=shared)
    assert stat.S_IMODE(stack.settings.state_dir.stat().st_mode) == 0o700


async def test_favicon_needs_no_login(stack):
    async with aiohttp.ClientSession() as s:
        async with s.get(stack.url("/favicon.ico"), allow_redirects=False) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "image/x-icon"
            assert (await r.read())[:4] == b"\x00\x00\x01\x00"


async def test_a_plain_get_of_ws_does_not_relay_the_token(stack, http):
    for path in ("/ws", "/api/ws"):
        async with http.get(stack.url(f"{path}?clientId=a&token={stack.token}&x=1")) as r:
            await r.read()
        assert stack.up_state["last_request"] == f"{path}?clientId=a&x=1"
