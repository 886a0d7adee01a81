"""Each person's files their own: two members and the admin through the real gate in front
of the ComfyUI stand-in. A member's outputs land in output/<name>/, their uploads in
input/<name>/; a member reaches only their own outputs, uploads and previews (another's is
as missing as a file that does not exist), sees only their own and the shared files in the
node lists; the admin reaches everything."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from auth_proxy.settings import load_settings
from tests.support import peak_rss_mb
from tests.support.fake_comfyui import tiny_png
from tests.support.proxy import add_account

SAVE = {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI"}}}
PREVIEW = {"1": {"class_type": "PreviewImage", "inputs": {}}}


@pytest.fixture
async def people(stack):
    admin = {"Authorization": f"Bearer {stack.token}"}
    return admin, add_account(stack.settings, "alice").bearer, add_account(stack.settings, "bob").bearer


async def run(stack, headers: dict, prompt: dict) -> tuple[int, dict]:
    """Queue `prompt` as `headers`' account; the status and, on success, its history outputs."""
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.post(stack.url("/prompt"), json={"prompt": prompt}) as r:
            if r.status != 200:
                return r.status, await r.json()
            pid = (await r.json())["prompt_id"]
        for _ in range(200):
            async with s.get(stack.url(f"/history/{pid}")) as r:
                entry = (await r.json()).get(pid)
            if entry:
                return 200, entry["outputs"]
            await asyncio.sleep(0.05)
    raise AssertionError("the prompt did not finish")


async def view(stack, headers: dict, **query: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.get(stack.url("/view"), params=query) as r:
            return r.status, await r.read()


async def upload(
    stack, headers: dict, name: str, data: bytes, path: str = "/upload/image", **fields
) -> tuple:
    # written by hand, as a browser writes it: the file's name as it is (aiohttp's own form
    # would percent-encode a slash in it)
    parts = [
        f'Content-Disposition: form-data; name="image"; filename="{name}"\r\nContent-Type: image/png\r\n\r\n'.encode()
        + data
    ]
    parts += [f'Content-Disposition: form-data; name="{k}"\r\n\r\n{v}'.encode() for k, v in fields.items()]
    body = b"".join(b"--B0UNDARY\r\n" + p + b"\r\n" for p in parts) + b"--B0UNDARY--\r\n"
    form_type = {"Content-Type": "multipart/form-data; boundary=B0UNDARY"}
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.post(stack.url(path), data=body, headers=form_type) as r:
            return r.status, (await r.json() if r.content_type == "application/json" else await r.text())


async def test_outputs_land_in_each_members_folder_and_only_they_reach_them(stack, people):
    admin, alice, bob = people
    _, a_out = await run(stack, alice, SAVE)
    _, b_out = await run(stack, bob, SAVE)
    _, admin_out = await run(stack, admin, SAVE)
    a_img, b_img, admin_img = (o["1"]["images"][0] for o in (a_out, b_out, admin_out))
    assert (a_img["subfolder"], b_img["subfolder"], admin_img["subfolder"]) == ("alice", "bob", "")
    out = stack.tmp / "output"
    assert (out / "alice" / a_img["filename"]).is_file() and (out / "bob" / b_img["filename"]).is_file()
    assert (out / admin_img["filename"]).is_file(), "the admin's outputs stay where they were"

    assert (await view(stack, alice, **a_img))[0] == 200
    missing = await view(stack, bob, filename="nothing.png", subfolder="bob", type="output")
    assert missing[0] == 404
    # another's file answers exactly as a file that does not exist
    assert await view(stack, bob, **a_img) == missing
    assert await view(stack, bob, **admin_img) == missing
    assert (await view(stack, bob, filename=f"{a_img['filename']} [output]", subfolder="alice")) == missing
    for img in (a_img, b_img, admin_img):
        assert (await view(stack, admin, **img))[0] == 200, "the admin reaches everything"
    # every spelling of the route
    async with aiohttp.ClientSession(headers=bob) as s:
        async with s.get(stack.url("/api/view"), params=a_img) as r:
            assert r.status == 404


async def test_a_prefix_that_would_leave_the_folder_is_refused(stack, people):
    _, alice, _ = people
    for prefix in ("../bob/x", "/tmp/x", "a/../../x", "..", "", "a\\..\\x"):
        status, body = await run(
            stack, alice, {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix}}}
        )
        assert status == 400 and body["error"]["message"], prefix
    # a prefix fed by another node could name anything at run time
    linked = {
        "1": {"class_type": "PrimitiveString", "inputs": {"value": "../bob/x"}},
        "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": ["1", 0]}},
    }
    status, body = await run(stack, alice, linked)
    assert status == 400 and "node 2" in body["error"]["message"]
    assert not (stack.tmp / "output" / "bob").exists()
    # subfolders of their own are theirs, and a prefix already in their folder stays there
    _, out = await run(
        stack, alice, {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "alice/x/pic"}}}
    )
    assert out["1"]["images"][0]["subfolder"] == "alice/x"
    _, out = await run(
        stack, alice, {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "alice"}}}
    )
    assert out["1"]["images"][0]["subfolder"] == "alice", "never a file at the top of output/"


async def test_temporary_previews_are_their_makers_own(stack, people):
    admin, alice, bob = people
    _, out = await run(stack, alice, PREVIEW)
    img = out["1"]["images"][0]
    assert img["type"] == "temp"
    assert (await view(stack, alice, **img))[0] == 200
    missing = await view(stack, bob, filename="ComfyUI_temp_zzzzz_00001_.png", type="temp")
    assert missing[0] == 404 and await view(stack, bob, **img) == missing
    assert (await view(stack, admin, **img))[0] == 200


async def test_uploads_land_in_the_members_folder_and_never_overwrite_anothers(stack, people):
    admin, alice, bob = people
    status, a = await upload(stack, alice, "cat.png", tiny_png(value=10))
    assert status == 200 and a == {"name": "cat.png", "subfolder": "alice", "type": "input"}
    status, b = await upload(stack, bob, "cat.png", tiny_png(value=20), subfolder="pets", overwrite="true")
    assert status == 200 and b == {"name": "cat.png", "subfolder": "bob/pets", "type": "input"}
    inp = stack.tmp / "input"
    assert (inp / "alice" / "cat.png").read_bytes() == tiny_png(value=10), "bob's upload left alice's alone"
    assert (inp / "bob" / "pets" / "cat.png").read_bytes() == tiny_png(value=20)
    # a subfolder naming another's folder stays inside the member's own
    status, b2 = await upload(stack, bob, "cat.png", tiny_png(value=30), subfolder="alice", overwrite="true")
    assert b2["subfolder"] == "bob/alice" and (inp / "alice" / "cat.png").read_bytes() == tiny_png(value=10)
    # overwrite within their own folder works
    status, a2 = await upload(
        stack, alice, "cat.png", tiny_png(value=40), subfolder="alice", overwrite="true"
    )
    assert a2 == a and (inp / "alice" / "cat.png").read_bytes() == tiny_png(value=40)

    assert (await view(stack, alice, filename="cat.png", type="input", subfolder="alice"))[0] == 200
    assert (await view(stack, bob, filename="cat.png", type="input", subfolder="alice"))[0] == 404
    assert (await view(stack, admin, filename="cat.png", type="input", subfolder="alice"))[0] == 200
    # the admin's uploads are left as they are: the top of input/ is shared
    status, shared = await upload(stack, admin, "logo.png", tiny_png())
    assert shared["subfolder"] == "" and (inp / "logo.png").is_file()
    assert (await view(stack, bob, filename="logo.png", type="input"))[0] == 200


@pytest.mark.parametrize(
    "fields, name",
    [
        ({"subfolder": "../bob"}, "x.png"),
        ({"subfolder": "/etc"}, "x.png"),
        ({"subfolder": "a/../../bob"}, "x.png"),
        ({}, "../bob/x.png"),
        ({}, "..%2Fbob%2Fx.png"),
    ],
)
async def test_uploads_that_would_leave_the_folder_are_refused(stack, people, fields, name):
    _, alice, bob = people
    await upload(stack, bob, "x.png", tiny_png(value=1))
    status, _ = await upload(stack, alice, name, tiny_png(value=2), overwrite="true", **fields)
    if "%2F" in name:  # no parser decodes it: a file of that odd name, in alice's folder
        assert status == 200 and (stack.tmp / "input" / "alice" / name).is_file()
    else:
        assert status == 400
    assert (stack.tmp / "input" / "bob" / "x.png").read_bytes() == tiny_png(value=1)
    assert not (stack.tmp / "input" / "x.png").exists()


async def test_a_mask_is_cut_only_from_a_file_the_member_may_read(stack, people):
    _, alice, bob = people
    await upload(stack, alice, "face.png", tiny_png(value=10))
    theirs = json.dumps({"filename": "face.png", "subfolder": "alice", "type": "input"})
    status, _ = await upload(stack, bob, "mask.png", tiny_png(), path="/upload/mask", original_ref=theirs)
    assert status == 404
    assert not (stack.tmp / "input" / "bob").exists(), "nothing was stored"
    status, done = await upload(
        stack, alice, "mask.png", tiny_png(), path="/upload/mask", original_ref=theirs
    )
    assert status == 200 and done["subfolder"] == "alice"


@pytest.mark.parametrize(
    "query, status",
    [
        ({"filename": "x.png", "subfolder": "alice/../bob"}, 400),
        ({"filename": "x.png", "subfolder": "/abs"}, 400),
        ({"filename": "../bob/x.png"}, 400),
        ({"filename": "bob/x.png"}, 400),
        ({"filename": "x.png", "subfolder": "alice\\..\\bob"}, 400),
        ({"filename": "x.png", "type": "path"}, 403),
        ({"filename": "x.png", "subfolder": "bob"}, 404),
    ],
)
async def test_guessed_and_crafted_names_are_refused(stack, people, query, status):
    _, alice, bob = people
    await upload(stack, bob, "x.png", tiny_png())
    assert (await view(stack, alice, **query))[0] == status


async def test_encoded_slashes_and_repeated_names_decide_nothing(stack, people):
    _, alice, bob = people
    await upload(stack, bob, "x.png", tiny_png())
    async with aiohttp.ClientSession(headers=alice) as s:
        for raw in (
            "/view?filename=x.png&type=input&subfolder=bob",
            "/view?filename=x.png&type=input&subfolder=alice%2F..%2Fbob",
            "/view?filename=x.png&type=input&subfolder=alice&subfolder=bob",
            "/view?filename=x.png&type=input&type=output&subfolder=bob",
            "/view?filename=bob%2Fx.png&type=input",
            "/vhs/viewvideo?filename=x.png&type=input&subfolder=bob",
            "/vhs/getpath?path=./input/bob/",
        ):
            async with s.get(stack.url(raw)) as r:
                assert r.status in (204, 400, 403, 404), raw
                assert await r.read() != tiny_png(), raw


async def test_node_lists_show_each_member_their_own_files_and_the_shared_ones(stack, people):
    admin, alice, bob = people
    await upload(stack, admin, "shared.png", tiny_png())
    await upload(stack, alice, "a.png", tiny_png(value=1))
    await upload(stack, alice, "b.png", tiny_png(value=2), subfolder="pets")
    await upload(stack, bob, "secret.png", tiny_png(value=3))

    async def images(headers, path="/object_info"):
        async with aiohttp.ClientSession(headers=headers) as s:
            async with s.get(stack.url(path)) as r:
                assert r.status == 200
                return (await r.json())["LoadImage"]["input"]["required"]["image"]

    alice_list = await images(alice)
    assert alice_list == [["alice/a.png", "alice/pets/b.png", "shared.png"], {"image_upload": True}]
    assert (await images(bob, "/api/object_info/LoadImage"))[0] == ["bob/secret.png", "shared.png"]
    assert (await images(admin))[0] == ["shared.png"], "the admin's list is ComfyUI's own"
    async with aiohttp.ClientSession(headers=bob) as s:
        async with s.get(stack.url("/internal/files/input")) as r:
            assert await r.json() == ["shared.png"]
        async with s.get(stack.url("/internal/files/output")) as r:
            assert await r.json() == []


async def test_a_huge_upload_streams_into_the_members_folder_in_bounded_memory(spawn_proxy):
    proxy = spawn_proxy()
    alice = add_account(load_settings(proxy.env), "alice")
    size = 200 << 20  # far more than the proxy may hold

    async def form():
        yield b'--B0UNDARY\r\nContent-Disposition: form-data; name="image"; filename="clip.mp4"\r\n\r\n'
        block = b"v" * (1 << 20)
        for _ in range(size >> 20):
            yield block
        yield b"\r\n--B0UNDARY--\r\n"

    headers = {**alice.bearer, "Content-Type": "multipart/form-data; boundary=B0UNDARY"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as s:
        async with s.post(proxy.base + "/upload/image", data=form(), headers=headers) as r:
            assert r.status == 200 and await r.json() == {
                "name": "clip.mp4",
                "subfolder": "alice",
                "type": "input",
            }
    landed = Path(proxy.env["AUTH_PROXY_STATE_DIR"]).parent / "input" / "alice" / "clip.mp4"
    assert landed.stat().st_size == size
    assert peak_rss_mb(proxy.proc.pid) < 150, "the proxy buffered the upload"
