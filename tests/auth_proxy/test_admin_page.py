"""The account pages: the admin adds a person in a browser and hands over the first
password, the person sets their own and makes a token on their page, the admin sees it and
disables them; members are refused the admin page, metrics and the model sync; another
site's page cannot drive the admin page."""

from __future__ import annotations

import aiohttp

from tests.auth_proxy.test_cross_site import RESOLVE, log_in, serve_page
from tests.support.browser import in_chromium, sign_in
from tests.support.proxy import PASSWORD, add_account, login


async def test_members_are_refused_the_admins_routes(stack):
    member = add_account(stack.settings, "mia")
    async with aiohttp.ClientSession() as s:
        for method, path in (
            ("GET", "/_auth/admin"),
            ("POST", "/_auth/admin"),
            ("GET", "/metrics"),
            ("GET", "/_models/sync"),
            ("POST", "/_models/sync"),
        ):
            for headers in (member.bearer, member.basic):
                async with s.request(
                    method, stack.url(path), headers=headers, json={"action": "add", "name": "x"}
                ) as r:
                    assert r.status == 403, (method, path)
                    assert "admin" in (await r.json())["error"]
        async with s.get(
            stack.url("/_auth/admin"),
            headers={"Authorization": f"Bearer {stack.token}", "Accept": "application/json"},
        ) as r:
            names = [a["name"] for a in (await r.json())["accounts"]]
            assert r.status == 200 and names == ["admin", "mia"], "nothing was added by the member"


async def test_the_admin_manages_people_with_json(stack):
    admin = {"Authorization": f"Bearer {stack.token}"}
    async with aiohttp.ClientSession() as s:
        async with s.post(
            stack.url("/_auth/admin"), headers=admin, json={"action": "add", "name": "nico", "role": "member"}
        ) as r:
            assert r.status == 200
            first = (await r.json())["password"]
        async with s.post(
            stack.url("/_auth/admin"), headers=admin, json={"action": "limit", "name": "nico", "limit": "3"}
        ) as r:
            assert r.status == 200
        async with s.post(
            stack.url("/_auth/admin"), headers=admin, json={"action": "delete", "name": "admin"}
        ) as r:
            assert r.status == 400 and "your own account" in (await r.json())["error"]
        async with s.post(
            stack.url("/_auth/admin"), headers=admin, json={"action": "frobnicate", "name": "nico"}
        ) as r:
            assert r.status == 400 and "use add, disable" in (await r.json())["error"]
        async with s.get(stack.url("/_auth/admin"), headers={**admin, "Accept": "application/json"}) as r:
            nico = [a for a in (await r.json())["accounts"] if a["name"] == "nico"][0]
            assert nico == {
                **nico,
                "role": "member",
                "max_waiting": 3,
                "must_change": True,
                "disabled": False,
            }
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await login(http, stack, first, user="nico")


async def test_admin_and_member_in_chromium(stack):
    base = stack.origin

    def drive(browser):
        admin = browser.new_context().new_page()
        sign_in(admin, base, PASSWORD, "/_auth/admin")
        admin.fill("#add input[name=name]", "alice")
        admin.select_option("#add select[name=role]", "member")
        admin.click("#add button[type=submit]")
        first = admin.inner_text("#secret")

        alice = browser.new_context(
            locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN"}
        ).new_page()
        alice.goto(base + "/_auth/account")
        alice.fill("#username", "alice")
        alice.fill("#password", first)
        alice.click("button[type=submit]")
        alice.wait_for_url("**/_auth/password**")
        alice.fill("#new_password", "alice-own-secret")
        alice.fill("#repeat_password", "alice-own-secret")
        alice.click("button[type=submit]")
        alice.wait_for_url(base + "/_auth/account")
        heading = alice.inner_text("body")
        alice.fill("#create input[name=name]", "laptop")
        alice.click("#create button[type=submit]")
        token = alice.inner_text("#secret")
        refused = alice.goto(base + "/_auth/admin").status

        admin.goto(base + "/_auth/admin")
        tokens = admin.inner_text("#tokens")
        admin.click("tr[data-name=alice] form:has(input[value=disable]) button")
        state = admin.inner_text("tr[data-name=alice]")
        alice.goto(base + "/_auth/account")
        return heading, token, refused, tokens, state, alice.url

    heading, token, refused, tokens, state, alice_url = await in_chromium(drive)
    assert "当前登录：alice（成员）" in heading and "API 令牌" in heading
    assert token.startswith("cst_") and refused == 403
    assert "alice" in tokens and "laptop" in tokens
    assert "disabled" in state and "/login" in alice_url
    async with aiohttp.ClientSession() as s:
        async with s.get(stack.url("/_auth/session"), headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 401, "a disabled person's token is gone"


async def test_another_sites_page_cannot_drive_the_admin_page(stack):
    """The admin is logged in; a page of another site submits the add form to the gate and
    posts it with fetch: refused, and nobody is added."""
    target = stack.origin
    evil = await serve_page(
        f'''<form id="f" method="post" action="{target}/_auth/admin">
        <input name="action" value="add"><input name="name" value="mallory"><input name="role" value="admin"></form>
        <script>
        window.done = fetch('{target}/_auth/admin', {{method: 'POST', mode: 'no-cors', credentials: 'include',
          headers: {{'Content-Type': 'application/x-www-form-urlencoded'}}, body: 'action=add&name=eve&role=admin'}})
          .catch(() => null).then(() => true);
        </script>'''
    )
    try:

        def drive(browser):
            context = log_in(browser, stack)
            page = context.new_page()
            page.goto(f"http://evil.test:{evil.port}/")
            page.evaluate("window.done")
            with page.expect_navigation():
                page.evaluate("document.getElementById('f').submit()")
            return page.content()

        body = await in_chromium(drive, RESOLVE)
    finally:
        await evil.close()
    assert "mallory" not in body, "the form's answer is a refusal, not the admin page"
    async with aiohttp.ClientSession() as s:
        async with s.get(
            stack.url("/_auth/admin"),
            headers={"Authorization": f"Bearer {stack.token}", "Accept": "application/json"},
        ) as r:
            names = [a["name"] for a in (await r.json())["accounts"]]
    assert names == ["admin"], "another site's page added nobody"
