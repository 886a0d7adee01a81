"""GET /api/v2/jobs over more jobs than any one read would hold: a metadata filter is the
database's, so the oldest matching jobs are listed too, page by page through next_cursor."""

from __future__ import annotations

from dataclasses import replace

import pytest

from comfy_jobs.model import JobQuery

JOBS = 1_100  # past the 1,000 newest jobs the list once filtered in memory


async def fill(ledger, n: int = JOBS) -> list[str]:
    """`n` queued jobs, every 50th labelled batch=a (the oldest ones too); their ids, oldest first."""
    ids = []
    for i in range(n):
        job, _ = await ledger.create_job(
            f"job_{i:05d}",
            {"1": {}},
            None,
            {"batch": "a" if i % 50 == 0 else "b", "n": str(i)},
            None,
            0,
            3600,
        )
        ids.append(job.id)
    return ids


async def test_a_filtered_list_pages_through_every_match(v2, api):
    ids = await fill(v2.svc.ledger)
    wanted = [job_id for i, job_id in enumerate(ids) if i % 50 == 0][::-1]  # newest first
    listed, cursor, pages = [], None, 0
    while pages < 20:  # bounded: 22 matches in pages of 5
        params = {"metadata[batch]": "a", "limit": "5", **({"cursor": cursor} if cursor else {})}
        async with api.get(v2.url("/api/v2/jobs"), params=params) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        pages += 1
        assert all(j["metadata"]["batch"] == "a" for j in body["jobs"])
        listed += [j["id"] for j in body["jobs"]]
        cursor = body.get("next_cursor")
        if cursor is None:
            break
    assert listed == wanted and pages == 5  # 5 + 5 + 5 + 5 + 2, and no empty last page
    # two labels at once, and a label no job has
    async with api.get(v2.url("/api/v2/jobs"), params={"metadata[batch]": "a", "metadata[n]": "0"}) as r:
        assert [j["id"] for j in (await r.json())["jobs"]] == [ids[0]]
    async with api.get(v2.url("/api/v2/jobs"), params={"metadata[batch]": "c"}) as r:
        assert (await r.json()) == {"jobs": []}


@pytest.mark.parametrize(
    "params", [{"cursor": str(1 << 64)}, {"cursor": "-1"}, {"limit": "0"}, {"limit": "x"}]
)
async def test_list_parameters_out_of_range_are_refused(v2, api, params):
    async with api.get(v2.url("/api/v2/jobs"), params=params) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_request"


async def test_the_ledger_filters_in_sql_on_both_backends(ledger):
    ids = await fill(ledger, 120)
    query = JobQuery(limit=2, metadata={"batch": "a"})
    first = await ledger.list_jobs(query)
    assert [j.id for j in first.jobs] == [ids[100], ids[50]] and first.next_cursor is not None
    last = await ledger.list_jobs(replace(query, before_seq=first.next_cursor))
    assert [j.id for j in last.jobs] == [ids[0]] and last.next_cursor is None
    assert (await ledger.list_jobs(JobQuery(limit=5, status="running"))).jobs == []
