"""Each person's jobs and assets their own, a fair share of the worker, and a limit of
waiting jobs per person: the job service with two members and an admin, the ledger on both
backends, and the v2 routes with two members' Basic logins."""

from __future__ import annotations

import asyncio
import base64
import itertools

import aiohttp
import pytest
from blake3 import blake3
from sqlalchemy import text

from auth_proxy.services import GATE
from comfy_jobs.assets import Upload
from comfy_jobs.errors import NotFound, TooManyWaiting, Unacceptable
from comfy_jobs.model import Caller, JobQuery
from comfy_jobs.sqlledger import SqlLedger
from tests.comfy_jobs.conftest import SMOKE, wait_job
from tests.support.fake_comfyui import tiny_png

ALICE, BOB = Caller("alice"), Caller("bob")
ADMIN = Caller("admin", is_admin=True)


async def _one(data: bytes):
    yield data


async def store(svc, caller: Caller, data: bytes, name: str = "in.png"):
    upload = Upload({"content_type": "image/png", "file_path": name})
    async with svc.assets.staged(_one(data)) as staged:
        return await svc.assets.store(caller, staged, upload, None)


async def refused(call) -> NotFound:
    with pytest.raises(NotFound) as caught:
        await call
    return caught.value


# --- the service ---------------------------------------------------------------------------
async def test_a_member_reaches_only_their_own_jobs(make_v2):
    stack = await make_v2(run_worker=False)  # the jobs stay queued: nothing changes under the test
    svc = stack.svc
    mine = [(await svc.submit(ALICE, {"workflow": SMOKE}, None))[0] for _ in range(3)]
    theirs, _ = await svc.submit(BOB, {"workflow": SMOKE}, None)
    old, _ = await svc.ledger.create_job("job_old", SMOKE, None, None, None, 0, 3600)  # before owners

    for job_id in (theirs.id, old.id):
        missing = await refused(svc.job(ALICE, job_id))
        assert (missing.code, missing.message) == ("not_found", f"no job {job_id}")  # as for none
        await refused(svc.cancel(ALICE, job_id))
        assert (await svc.job(ADMIN, job_id)).status == "queued"  # the cancel did nothing
    assert (await svc.job(ALICE, mine[0].id)).owner == "alice"

    # the list is filtered by the database, and pages over the owner's jobs only
    pages, cursor = [], None
    while True:
        page = await svc.jobs(ALICE, JobQuery(limit=1, before_seq=cursor))
        pages += [j.id for j in page.jobs]
        if (cursor := page.next_cursor) is None:
            break
    assert pages == [j.id for j in reversed(mine)]
    assert [j.id for j in (await svc.jobs(BOB, JobQuery())).jobs] == [theirs.id]
    everyone = [j.id for j in (await svc.jobs(ADMIN, JobQuery())).jobs]
    assert everyone == [old.id, theirs.id, *(j.id for j in reversed(mine))]

    assert (await svc.cancel(ADMIN, theirs.id)).status == "canceled"  # the admin acts on all
    assert (await svc.cancel(ALICE, mine[0].id)).status == "canceled"


async def test_a_member_follows_only_their_own_jobs_events(v2):
    job, _ = await v2.svc.submit(ALICE, {"workflow": SMOKE}, None)
    await refused(v2.svc.job(BOB, job.id))  # the route reads the job this way before streaming
    seen = await v2.svc.job(ALICE, job.id)
    events = [e.kind async for e in v2.svc.events(ALICE, seen)]
    assert events[0] == "status" and events[-1] == "status" and "output" in events


async def test_a_member_reaches_only_their_own_assets(v2):
    svc, data = v2.svc, tiny_png(4, 4, 7)
    digest = "blake3:" + blake3(data).hexdigest()
    first = await store(svc, ALICE, data)
    assert first.created_new and first.asset.owner == "alice"
    assert await svc.assets.has_blob(ALICE, digest) and not await svc.assets.has_blob(BOB, digest)
    await refused(svc.assets.get(BOB, first.asset.id))
    gone = await refused(svc.assets.from_hash(BOB, digest, "x.png", []))
    assert gone.code == "blob_not_found"  # as for bytes never uploaded
    # Bob's upload of the same bytes is new to him: nothing says Alice has them
    second = await store(svc, BOB, data)
    assert second.created_new and second.asset.owner == "bob"
    assert not (await store(svc, BOB, data, "again.png")).created_new
    assert (await svc.assets.get(ADMIN, first.asset.id)).owner == "alice"

    ref = {"__type": "core/ASSET", "info": {"id": first.asset.id}}
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": ref}}}
    with pytest.raises(Unacceptable) as caught:
        await svc.submit(BOB, {"workflow": graph}, None)
    assert caught.value.code == "missing_asset"  # Alice's asset, as a missing one

    # a job's outputs are its owner's assets
    job, _ = await svc.submit(ALICE, {"workflow": SMOKE}, None)
    async with aiohttp.ClientSession(headers=v2.auth) as admin_api:
        done = await wait_job(admin_api, v2, job.id)
    [out] = done["outputs"]
    assert (await svc.assets.get(ALICE, out["id"])).owner == "alice"
    await refused(svc.assets.get(BOB, out["id"]))
    assert not await svc.assets.has_blob(BOB, out["hash"])


async def test_idempotency_keys_are_each_owners_own(make_v2):
    svc = (await make_v2(run_worker=False)).svc
    a, replayed_a = await svc.submit(ALICE, {"workflow": SMOKE}, "key-1")
    other = {"workflow": SMOKE, "metadata": {"who": "bob"}}
    b, replayed_b = await svc.submit(BOB, other, "key-1")  # another body, another person: no reuse
    assert a.id != b.id and not replayed_a and not replayed_b
    for caller, body, first in ((ALICE, {"workflow": SMOKE}, a), (BOB, other, b)):
        again, replayed = await svc.submit(caller, body, "key-1")
        assert again.id == first.id and replayed


async def test_each_member_has_a_limit_of_waiting_jobs(make_v2):
    stack = await make_v2(run_worker=False, queue_limit=0, max_waiting_per_user=2)
    svc = stack.svc

    async def submit(caller: Caller):
        try:
            return (await svc.submit(caller, {"workflow": SMOKE}, None))[0]
        except TooManyWaiting as exc:
            return exc

    # two people at the same moment: each gets their own two, whatever the other does
    results = await asyncio.gather(*[submit(c) for c in (ALICE, BOB) * 3])
    for who in ("alice", "bob"):
        mine = results[0 if who == "alice" else 1 :: 2]
        refusals = [r for r in mine if isinstance(r, TooManyWaiting)]
        assert len(refusals) == 1 and len(mine) - len(refusals) == 2
        assert refusals[0].code == "queue_full" and refusals[0].retry_after_s >= 1
        assert refusals[0].details == {"waiting": 2, "limit": 2}
    # a job that leaves the queue frees a place
    alices = (await svc.jobs(ALICE, JobQuery())).jobs
    await svc.cancel(ALICE, alices[0].id)
    assert not isinstance(await submit(ALICE), TooManyWaiting)
    # the admin's limit for one account (the accounts' store), 0: none may wait
    svc.limit_for = {"carol": 3, "dave": 0}.get
    carol = [await submit(Caller("carol")) for _ in range(4)]
    assert [isinstance(r, TooManyWaiting) for r in carol] == [False, False, False, True]
    assert isinstance(await submit(Caller("dave")), TooManyWaiting)


async def test_no_limit_of_waiting_jobs_when_it_is_zero(make_v2):
    svc = (await make_v2(run_worker=False, queue_limit=0, max_waiting_per_user=0)).svc
    for _ in range(5):
        await svc.submit(ALICE, {"workflow": SMOKE}, None)
    assert len((await svc.jobs(ALICE, JobQuery())).jobs) == 5


# --- the ledger: fair share and the upgrade, on SQLite and PostgreSQL ----------------------
async def test_one_owners_many_jobs_do_not_hold_anothers_one_behind_them(ledger):
    for i in range(50):
        await ledger.create_job(f"job_a{i:02d}", {}, None, None, None, 0, 3600, owner="a")
    await ledger.create_job("job_b", {}, None, None, None, 0, 3600, owner="b")
    await ledger.create_job("job_c", {}, None, None, None, 0, 3600, owner="c")
    order = [(await ledger.claim("w1", 60)).id for _ in range(4)]
    # a's oldest first (nobody runs anything), then b's and c's (a has one running), then a's
    assert order == ["job_a00", "job_b", "job_c", "job_a01"]


async def test_fair_share_holds_with_claimers_at_the_same_moment(ledger):
    for i in range(40):
        await ledger.create_job(f"job_a{i:02d}", {}, None, None, None, 0, 3600, owner="a")
    await ledger.create_job("job_b", {}, None, None, None, 0, 3600, owner="b")
    claimed: list[str] = []
    turn = itertools.count()

    async def claimer(name: str) -> None:
        while (job := await ledger.claim(name, 60, f"p-{name}-{next(turn)}")) is not None:
            claimed.append(job.id)

    claimers = 3
    await asyncio.gather(*[claimer(f"w{n}") for n in range(claimers)])
    assert sorted(claimed) == sorted([f"job_a{i:02d}" for i in range(40)] + ["job_b"])  # each once
    # at worst every claimer of the first round took one of a's at the same moment
    assert claimed.index("job_b") < 2 * claimers


async def test_an_older_ledger_upgrades_in_place_and_its_rows_are_the_admins(ledger):
    url = ledger.url
    job, _ = await ledger.create_job("job_before", {"1": {}}, None, None, None, 0, 3600)
    await ledger.close()
    # the ledger as schema 2 had it: no owners (an index on the column goes first)
    old = SqlLedger(url)
    with old.w.begin() as c:
        c.execute(text("DROP INDEX jobs_owner_seq"))
        c.execute(text("ALTER TABLE jobs DROP COLUMN owner"))
        c.execute(text("ALTER TABLE assets DROP COLUMN owner"))
        c.execute(text("UPDATE schema_info SET version = 2"))
    old.w.dispose()
    old.wd.dispose()
    old.r.dispose()
    upgraded = SqlLedger(url)
    try:
        assert (await upgraded.get_job("job_before")).owner is None
        assert await upgraded.get_job("job_before", visible_to="alice") is None
        await upgraded.create_job("job_after", {"1": {}}, None, None, None, 0, 3600, owner="alice")
        page = await upgraded.list_jobs(JobQuery(owner="alice"))
        assert [j.id for j in page.jobs] == ["job_after"]
    finally:
        await upgraded.close()


# --- the v2 routes: two members' Basic logins and the admin's token ------------------------
def basic(name: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


async def test_over_http_each_member_gets_404_for_the_others_job_and_asset(v2):
    accounts = v2.proxy.app[GATE].accounts
    for name in ("alice", "bob"):
        accounts.add(name, "member", f"{name}-first-pass")
        accounts.change_password(name, f"{name}-own-password")
    form = aiohttp.FormData()
    form.add_field("content_type", "image/png")
    form.add_field("file_path", "a.png")
    data = tiny_png(4, 4, 9)
    form.add_field("file", data, filename="a.png", content_type="image/png")
    async with (
        aiohttp.ClientSession(headers=basic("alice", "alice-own-password")) as alice,
        aiohttp.ClientSession(headers=basic("bob", "bob-own-password")) as bob,
        aiohttp.ClientSession(headers=v2.auth) as admin,
    ):
        async with alice.post(v2.url("/api/v2/assets"), data=form) as r:
            assert r.status == 201
            asset = await r.json()
        async with alice.post(v2.url("/api/v2/jobs"), json={"workflow": SMOKE}) as r:
            assert r.status == 201
            job = await r.json()
        async with bob.post(v2.url("/api/v2/jobs"), json={"workflow": SMOKE}) as r:
            bobs = await r.json()
        await wait_job(alice, v2, job["id"])
        for method, path in [
            ("GET", f"/api/v2/jobs/{job['id']}"),
            ("GET", f"/api/v2/jobs/{job['id']}/events"),
            ("GET", f"/api/v2/jobs/{job['id']}/workflow"),
            ("POST", f"/api/v2/jobs/{job['id']}/cancel"),
            ("GET", f"/api/v2/assets/{asset['id']}"),
            ("GET", f"/api/v2/assets/{asset['id']}/content"),
        ]:
            async with bob.request(method, v2.url(path)) as r:
                assert r.status == 404, (method, path)
                assert (await r.json())["error"]["code"] == "not_found"
        async with bob.head(v2.url(f"/api/v2/assets/by-hash/{asset['hash']}")) as r:
            assert r.status == 404
        async with bob.post(v2.url("/api/v2/assets/from-hash"), json={"hash": asset["hash"]}) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "blob_not_found"
        async with bob.get(v2.url("/api/v2/jobs")) as r:
            assert [j["id"] for j in (await r.json())["jobs"]] == [bobs["id"]]
        async with alice.get(v2.url(f"/api/v2/assets/{asset['id']}/content")) as r:
            assert r.status == 200 and await r.read() == data
        async with admin.get(v2.url("/api/v2/jobs")) as r:
            assert {j["id"] for j in (await r.json())["jobs"]} == {job["id"], bobs["id"]}
        async with admin.get(v2.url(f"/api/v2/assets/{asset['id']}")) as r:
            assert r.status == 200
        async with admin.head(v2.url(f"/api/v2/assets/by-hash/{asset['hash']}")) as r:
            assert r.status == 200
