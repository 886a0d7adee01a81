"""The /api/v2 job routes under attack, against a real `python -m auth_proxy`: bodies
nested past Python's stack, bodies over the limit, abused Idempotency-Keys, a webhook
aimed at the metadata service, and the gate in front of all of them."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import aiohttp
import pytest

from tests.support.proxy import send_raw

SMOKE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "smoke/smoke"}},
}


def api(proxy) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {proxy.token}"}, timeout=aiohttp.ClientTimeout(total=60)
    )


async def alive(proxy) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.base + "/healthz") as r:
            assert r.status == 200


DEEP = {
    "arrays": b"[" * 200_000 + b"]" * 200_000,
    "objects in the workflow": b'{"workflow": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"}",
    "inputs": b'{"workflow": {"1": {"class_type": "EmptyImage", "inputs": {"x": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}}}}",
}


@pytest.mark.parametrize("name", list(DEEP))
@pytest.mark.parametrize("path", ["/api/v2/jobs", "/api/v2/assets/from-hash"])
async def test_nesting_past_the_stack_is_a_clear_refusal(module_proxy, name, path):
    """Before: json.loads raised RecursionError, which the gate turned into a 500."""
    async with api(module_proxy) as s:
        async with s.post(
            module_proxy.base + path, data=DEEP[name], headers={"Content-Type": "application/json"}
        ) as r:
            body = await r.json()
            assert r.status in (404, 422), (r.status, body)
            assert body["error"]["code"] in ("invalid_request", "blob_not_found")
    await alive(module_proxy)


async def test_a_body_over_the_limit_is_refused_without_holding_it(module_proxy):
    """33 MiB against the 32 MiB limit, a few at once: each refused, the proxy answers."""
    junk = b'{"workflow": {"1": {"class_type": "EmptyImage", "inputs": {"x": "' + b"A" * (33 << 20) + b'"}}}}'

    async def one() -> int:
        async with api(module_proxy) as s:
            try:
                async with s.post(
                    module_proxy.base + "/api/v2/jobs",
                    data=junk,
                    headers={"Content-Type": "application/json"},
                ) as r:
                    return r.status
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                return 0  # the proxy closed the connection on the rest of the body: fine too

    statuses = await asyncio.gather(*[one() for _ in range(3)])
    assert set(statuses) <= {413, 422, 0} and 200 not in statuses and 201 not in statuses, statuses
    await alive(module_proxy)


@pytest.mark.parametrize("key", ["", " ", "k" * 256, "key\x00nul", "ключ", "tab\there", "\x7f", "a\x1bb"])
async def test_malformed_idempotency_keys_are_refused(module_proxy, key):
    """Sent as raw bytes (clients refuse some of these header values themselves)."""
    host = module_proxy.base.removeprefix("http://")
    body = json.dumps({"workflow": SMOKE}).encode()
    request = (
        f"POST /api/v2/jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {module_proxy.token}\r\n"
        f"Content-Type: application/json\r\nIdempotency-Key: {key}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    answer = await send_raw(int(host.rsplit(":", 1)[1]), request, limit=4096)
    assert answer.split(b" ", 2)[1] in (b"400", b"422"), answer[:300]


async def test_an_idempotency_key_replays_only_its_own_body(module_proxy):
    """The same key and the same body (in any key order) from many clients at once is one
    job; another body under it, or the same body with other metadata, is refused."""
    key = {"Idempotency-Key": "redteam-0001"}
    reordered = {k: SMOKE[k] for k in reversed(SMOKE)}
    async with api(module_proxy) as s:
        results = await asyncio.gather(
            *[
                s.post(
                    module_proxy.base + "/api/v2/jobs",
                    json={"workflow": SMOKE if n % 2 else reordered},
                    headers=key,
                )
                for n in range(8)
            ]
        )
        ids = {(await r.json())["id"] for r in results}
        assert {r.status for r in results} == {201} and len(ids) == 1
        for other in ({"workflow": SMOKE, "metadata": {"who": "else"}}, {"workflow": {"1": SMOKE["1"]}}):
            async with s.post(module_proxy.base + "/api/v2/jobs", json=other, headers=key) as r:
                assert r.status == 422 and (await r.json())["error"]["code"] == "idempotency_key_reuse"
        async with s.post(
            module_proxy.base + "/api/v2/jobs",
            json={"workflow": SMOKE},
            headers={"Idempotency-Key": "redteam-0002"},
        ) as r:
            assert r.status == 201 and (await r.json())["id"] not in ids


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:1/",
        "http://[::1]/",
        "file:///etc/passwd",
    ],
)
async def test_a_job_cannot_name_its_own_webhook(module_proxy, url):
    """Webhooks are the operator's (COMFY_WEBHOOK_URL), never a job's: a per-job URL would
    let any token holder make the server call the cloud metadata service or loopback."""
    async with api(module_proxy) as s:
        for body in (
            {"workflow": SMOKE, "webhook_url": url},
            {"workflow": SMOKE, "webhook": url},
            {"workflow": SMOKE, "extra_data": {"webhook_url": url}},
        ):
            async with s.post(module_proxy.base + "/api/v2/jobs", json=body) as r:
                assert r.status == 422, body


async def test_v2_needs_the_login_and_keeps_the_cross_site_rules(module_proxy):
    base = module_proxy.base
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(base + "/api/v2/jobs", json={"workflow": SMOKE}) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
        async with s.post(
            base + "/login", json={"username": "admin", "password": module_proxy.env["COMFY_ADMIN_PASSWORD"]}
        ) as r:
            assert r.status == 200
        for headers in (
            {"Origin": "http://evil.example"},
            {},
            {"Origin": "null"},
            {"Origin": base, "Sec-Fetch-Site": "cross-site"},
        ):
            async with s.post(base + "/api/v2/jobs", json={"workflow": SMOKE}, headers=headers) as r:
                assert r.status == 403, headers
        async with s.get(base + "/api/v2/jobs", headers={"Sec-Fetch-Site": "cross-site"}) as r:
            assert r.status == 403, "another site's page may not read the job list with the cookie"


async def test_content_urls_name_this_server_whatever_the_client_claims(module_proxy, spawn_proxy):
    """The absolute output URLs (which SDKs follow with their token) are built from the
    host the client asked for; X-Forwarded-Host and -Proto are believed only from a
    trusted proxy, and from the nearest hop (the first value is the client's own)."""
    claims = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    async with api(module_proxy) as s:
        async with s.post(module_proxy.base + "/api/v2/jobs", json={"workflow": SMOKE}) as r:
            job_id = (await r.json())["id"]
        for _ in range(300):
            async with s.get(module_proxy.base + f"/api/v2/jobs/{job_id}", headers=claims) as r:
                job = await r.json()
            if job["status"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.1)
        [out] = job["outputs"]
        assert out["url"].startswith(module_proxy.base + "/api/v2/assets/"), out["url"]
    behind = spawn_proxy(
        AUTH_PROXY_TRUSTED_PROXIES="127.0.0.0/8", AUTH_PROXY_ALLOWED_HOSTS="comfy.example.org"
    )
    forwarded = {
        "X-Forwarded-Host": "evil.example, comfy.example.org",
        "X-Forwarded-Proto": "http, https",
        "X-Forwarded-For": "198.51.100.9",
    }
    async with api(behind) as s:
        async with s.post(behind.base + "/api/v2/jobs", json={"workflow": SMOKE}, headers=forwarded) as r:
            assert r.status == 201, await r.text()
            job_id = (await r.json())["id"]
        for _ in range(300):
            async with s.get(behind.base + f"/api/v2/jobs/{job_id}", headers=forwarded) as r:
                job = await r.json()
            if job["status"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.1)
        [out] = job["outputs"]
        assert out["url"].startswith("https://comfy.example.org/api/v2/assets/"), out["url"]


def nested(depth: int) -> dict:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return {"workflow": {"1": {"class_type": "EmptyImage", "inputs": {"x": value}}}}


async def test_a_workflow_too_deep_to_run_is_refused_at_submit(module_proxy):
    """Before: accepted (201), then the worker failed on it before ComfyUI saw it and took
    it back once a second forever, with attempts 0, holding up the queue."""
    async with api(module_proxy) as s:
        async with s.post(module_proxy.base + "/api/v2/jobs", json=nested(300)) as r:
            body = await r.json()
            assert r.status == 400 and "levels deep" in body["error"]["message"], body
        async with s.post(module_proxy.base + "/api/v2/jobs", json={"workflow": SMOKE}) as r:
            assert r.status == 201  # the queue is not held up


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"])
async def test_numbers_json_cannot_carry_are_refused(module_proxy, number):
    """Before: stored, then every read of the job answered with invalid JSON."""
    body = b'{"workflow": {"1": {"class_type": "EmptyImage", "inputs": {"width": ' + number + b"}}}}"
    async with api(module_proxy) as s:
        async with s.post(
            module_proxy.base + "/api/v2/jobs", data=body, headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_request"
        async with s.get(module_proxy.base + "/api/v2/jobs?limit=100") as r:
            json.loads(await r.text())  # the list stays valid JSON


@pytest.mark.parametrize(
    "query", ["cursor=18446744073709551616", "cursor=-5", "cursor=1e3", "limit=99999999999999999999"]
)
async def test_junk_list_parameters_are_400_not_500(module_proxy, query):
    async with api(module_proxy) as s:
        async with s.get(module_proxy.base + "/api/v2/jobs?" + query) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_request"
    assert "error while handling" not in module_proxy.log.read_text()


def form(*parts: tuple[str, bytes, str | None]) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, value, filename in parts:
        data.add_field(name, value if filename else value.decode(), filename=filename)
    return data


@pytest.mark.parametrize("ctype", ["text/html", "image/svg+xml", "application/xhtml+xml"])
async def test_an_uploaded_page_runs_no_script_in_this_origin(module_proxy, ctype):
    """Before: served inline with its own type and no sandbox, so opening the asset's URL
    ran the uploader's script with the admin's session."""
    page = b"<html><script>fetch('/api/v2/jobs').then(r => r.text()).then(alert)</script></html>"
    async with api(module_proxy) as s:
        async with s.post(
            module_proxy.base + "/api/v2/assets",
            data=form(
                ("file", page, "x.html"),
                ("content_type", ctype.encode(), None),
                ("file_path", b"x.html", None),
            ),
        ) as r:
            assert r.status in (200, 201), await r.text()
            url = (await r.json())["url"]
        async with s.get(url) as r:
            assert r.status == 200 and await r.read() == page
            assert r.headers["Content-Security-Policy"] == "sandbox"
            assert r.headers["X-Content-Type-Options"] == "nosniff"


def blobs(proxy) -> set[str]:
    root = Path(proxy.env["COMFY_JOBS_DIR"]) / "blobs"
    return {p.name for p in root.rglob("*") if p.is_file()}


async def test_a_hash_mismatch_stores_nothing(module_proxy):
    """Before: the bytes were named and kept, with no asset over them."""
    data = b"bytes that hash to something else " + os.urandom(16)
    expected = "blake3:" + "0" * 64
    before = blobs(module_proxy)
    async with api(module_proxy) as s:
        for order in ("hash first", "file first"):
            fields = [("expected_hash", expected.encode(), None), ("content_type", b"text/plain", None)]
            fields += [("file_path", b"a.txt", None)]
            file = ("file", data, "a.txt")
            parts = [*fields, file] if order == "hash first" else [file, *fields]
            async with s.post(module_proxy.base + "/api/v2/assets", data=form(*parts)) as r:
                assert r.status == 409 and (await r.json())["error"]["code"] == "hash_mismatch", order
    assert blobs(module_proxy) == before


@pytest.mark.parametrize(
    "parts",
    [
        [("tags", b"t", None)] * 65,
        [("note", b"n", None)] * 65,
        [("file_path", b"p" * 5000, None)],
        [("file", b"one", "a.txt"), ("file", b"two", "b.txt")],
    ],
    ids=["many tags", "a field repeated", "a long field", "two files"],
)
async def test_upload_forms_are_bounded(module_proxy, parts):
    fields = [("content_type", b"text/plain", None), ("file_path", b"a.txt", None)]
    if not any(name == "file" for name, _, _ in parts):
        fields.append(("file", b"x", "a.txt"))
    before = blobs(module_proxy)
    async with api(module_proxy) as s:
        async with s.post(module_proxy.base + "/api/v2/assets", data=form(*parts, *fields)) as r:
            assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_request"
    assert blobs(module_proxy) == before
