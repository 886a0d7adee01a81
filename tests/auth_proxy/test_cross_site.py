"""Another site's page and a logged-in browser: GETs that change state (ComfyUI-Manager's),
the password change, and files served from /view that would run scripts in our origin.
In Chromium, with evil.test (another site) and 127.0.0.1 on another port (the same site)."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.browser import in_chromium, sign_in
from tests.support.fake_comfyui import MANAGER_GET_ACTIONS
from tests.support.proxy import PASSWORD, basic, login

RESOLVE = "--host-resolver-rules=MAP evil.test 127.0.0.1"


async def serve_page(html: str) -> TestServer:
    async def index(_request):
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def log_in(browser, stack):
    context = browser.new_context()
    sign_in(context.new_page(), stack.origin, PASSWORD)
    return context


async def test_manager_gets_from_another_site_are_refused(stack):
    """A logged-in admin opens a page of another site (evil.test) and one on the same host
    but another port: links, images and no-cors fetches at ComfyUI-Manager's GET actions."""
    target = stack.origin
    attack = (
        "".join(f'<img src="{target}{p}?ver=v0.1&value=x">' for p in MANAGER_GET_ACTIONS)
        + f"""
        <script>
        window.done = (async () => {{
          for (const p of {list(MANAGER_GET_ACTIONS)!r})
            await fetch('{target}' + p, {{mode: 'no-cors', credentials: 'include'}}).catch(() => null);
          return true;
        }})();
        </script>"""
    )
    evil = await serve_page(attack)
    try:

        def drive(browser):
            context = log_in(browser, stack)
            seen = {}
            for site in (f"http://evil.test:{evil.port}/", f"http://127.0.0.1:{evil.port}/"):
                page = context.new_page()
                page.goto(site)
                page.evaluate("window.done")
                page.wait_for_load_state("networkidle")
            # a link followed from another site: top-level navigations
            page = context.new_page()
            page.goto(f"http://evil.test:{evil.port}/")
            page.evaluate(f"location.href = '{target}/manager/reboot'")
            page.wait_for_url(f"{target}/manager/reboot")
            seen["reboot_page"] = page.content()
            page.evaluate(f"location.href = '{target}/'")
            page.wait_for_url(f"{target}/")
            seen["app_title"] = page.title()
            # the refusal page's own link, clicked on this site, goes through
            page.goto(f"http://evil.test:{evil.port}/")
            page.evaluate(f"location.href = '{target}/manager/queue/update_all'")
            page.wait_for_url(f"{target}/manager/queue/update_all")
            page.click("a[href='/manager/queue/update_all']")
            page.wait_for_load_state("networkidle")
            return seen

        seen = await in_chromium(drive, RESOLVE)
    finally:
        await evil.close()
    assert stack.up_state["manager_calls"] == ["/manager/queue/update_all"], "only the click on this site"
    assert "another site" in seen["reboot_page"]
    assert seen["app_title"] == "ComfyUI", "a link to the app itself still opens it"


async def test_cross_site_rules_over_raw_requests(stack, http):
    await login(http, stack)
    nav = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Accept": "text/html"}
    for site in ("cross-site", "same-site"):
        async with http.get(stack.url("/manager/reboot"), headers={**nav, "Sec-Fetch-Site": site}) as r:
            assert r.status == 403 and "another site" in await r.text()
        async with http.get(
            stack.url("/queue"), headers={"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "no-cors"}
        ) as r:
            assert r.status == 403
        async with http.get(stack.url("/"), headers={**nav, "Sec-Fetch-Site": site}) as r:
            assert r.status == 200
    for site in ("same-origin", "none"):
        async with http.get(stack.url("/queue"), headers={"Sec-Fetch-Site": site}) as r:
            assert r.status == 200
    # a browser without Sec-Fetch-* is judged by its Referer
    async with http.get(stack.url("/manager/reboot"), headers={"Referer": "http://evil.test/"}) as r:
        assert r.status == 403
    # Basic that a browser remembered counts like the cookie; a script's does not
    auth = {"Authorization": basic("admin", PASSWORD)}
    async with aiohttp.ClientSession() as s:
        async with s.get(stack.url("/manager/reboot"), headers={**auth, "Sec-Fetch-Site": "cross-site"}) as r:
            assert r.status == 403
        async with s.get(stack.url("/manager/reboot"), headers=auth) as r:
            assert r.status == 200
        async with s.get(
            stack.url("/manager/reboot"),
            headers={"Authorization": f"Bearer {stack.token}", "Sec-Fetch-Site": "cross-site"},
        ) as r:
            assert r.status == 200, "a token is never attached by a browser on its own"
    assert stack.up_state["manager_calls"] == ["/manager/reboot", "/manager/reboot"]


async def test_the_password_changes_only_in_a_session_that_knows_it(stack, http):
    new = {"new_password": "a-new-secret-1", "repeat_password": "a-new-secret-1"}
    async with aiohttp.ClientSession() as script:
        for auth in (f"Bearer {stack.token}", basic("admin", PASSWORD)):
            async with script.post(
                stack.url("/_auth/password"), json=new, headers={"Authorization": auth}
            ) as r:
                assert r.status == 403 and "browser" in (await r.json())["error"]
    await login(http, stack)
    origin = {"Origin": stack.origin}
    async with http.post(stack.url("/_auth/password"), data=new, headers=origin) as r:
        assert r.status == 400 and "current password" in await r.text()
    async with http.post(
        stack.url("/_auth/password"), data={**new, "current_password": "not-it-at-all"}, headers=origin
    ) as r:
        assert r.status == 403 and "current password is wrong" in await r.text()
    async with http.get(stack.url("/_auth/password")) as r:
        assert 'name="current_password"' in await r.text()
    async with http.post(
        stack.url("/_auth/password"),
        data={**new, "current_password": PASSWORD},
        headers=origin,
        allow_redirects=False,
    ) as r:
        assert r.status == 303
    async with aiohttp.ClientSession() as s:
        async with s.post(stack.url("/login"), json={"username": "admin", "password": "a-new-secret-1"}) as r:
            assert r.status == 200


SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>'
    b"fetch('/api/userdata/xss-ran.txt', {method: 'POST', body: 'ran'}); document.title = 'ran';"
    b"</script><rect width='10' height='10'/></svg>"
)


@pytest.mark.parametrize("prefix", ["", "/api"])
async def test_user_files_are_served_sandboxed(stack, http, prefix):
    auth = {"Authorization": f"Bearer {stack.token}"}
    form = aiohttp.FormData()
    form.add_field("image", SVG, filename="x.svg", content_type="image/svg+xml")
    async with http.post(stack.url("/upload/image"), data=form, headers=auth) as r:
        assert r.status == 200
    async with http.get(stack.url(f"{prefix}/view?filename=x.svg&type=input"), headers=auth) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "image/svg+xml"
        assert (
            r.headers["Content-Security-Policy"] == "sandbox"
            and r.headers["X-Content-Type-Options"] == "nosniff"
        )
    (stack.up_state["user"] / "workflows").mkdir(parents=True, exist_ok=True)
    (stack.up_state["user"] / "workflows" / "a.svg").write_bytes(SVG)
    async with http.get(stack.url(f"{prefix}/userdata/workflows%2Fa.svg"), headers=auth) as r:
        assert r.status == 200 and r.headers.get("Content-Security-Policy") == "sandbox"
    async with http.get(stack.url("/object_info"), headers=auth) as r:
        assert "Content-Security-Policy" not in r.headers, "the app's own responses are left alone"


async def test_an_uploaded_svg_opened_in_the_browser_runs_nothing(stack):
    form = aiohttp.FormData()
    form.add_field("image", SVG, filename="x.svg", content_type="image/svg+xml")
    async with aiohttp.ClientSession() as s:
        async with s.post(
            stack.url("/upload/image"), data=form, headers={"Authorization": f"Bearer {stack.token}"}
        ) as r:
            assert r.status == 200

    def drive(browser):
        context = log_in(browser, stack)
        page = context.new_page()
        page.goto(stack.url("/view?filename=x.svg&type=input"))
        page.wait_for_load_state("networkidle")
        return page.title()

    title = await in_chromium(drive)
    assert title != "ran"
    assert not (stack.up_state["user"] / "xss-ran.txt").exists(), "the SVG's script ran with the session"
