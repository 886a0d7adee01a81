"""Nothing a server sends can make `comfyctl run` write outside --out, run past --timeout,
write more than --max-output-bytes, hand its token to another host, or die with a
traceback: each ends in its documented exit code with a one-line reason. Both modes,
against a hostile stand-in on real loopback sockets (tests/support/hostile_server.py)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from comfyctl import run as runmod
from comfyctl.errors import BadAnswer, TimedOut
from tests.support import REPO, python_env
from tests.support.comfyctl import run_args
from tests.support.hostile_server import STATE, create_app

SAFETY = 60  # seconds: a regression fails the test instead of hanging the suite


def args(tmp_path: Path, server, *flags: str, v2: bool = False):
    mode = ("--v2",) if v2 else ()
    return run_args(
        tmp_path,
        f"http://127.0.0.1:{server.port}",
        flags=("--timeout", "20", "--token", "secret", *mode, *flags),
    )


async def refused(tmp_path: Path, server, *flags: str, v2: bool = False, error=BadAnswer) -> str:
    """Run, expect `error`, and check nothing was written anywhere (--out included)."""
    before = set(tmp_path.rglob("*"))
    with pytest.raises(error) as exc:
        await asyncio.wait_for(runmod.run(args(tmp_path, server, *flags, v2=v2)), SAFETY)
    written = [
        p for p in set(tmp_path.rglob("*")) - before if p.is_file() or tmp_path / "out" not in p.parents
    ]
    assert [p for p in written if p != tmp_path / "out"] == []
    message = str(exc.value)
    assert "\n" not in message and exc.value.exit_code == error.exit_code
    return message


def image(filename: str, subfolder: str = "") -> dict:
    return {"images": [{"filename": filename, "subfolder": subfolder, "type": "output"}]}


def escapes(tmp_path: Path) -> list[dict]:
    """History outputs naming places outside --out (tmp_path/out), each in its own way."""
    return [
        {"9": image("x.png", "../escape")},
        {"9": image("../escape.png")},
        {"9": image("..\\escape.png")},
        {"9": image("x.png", "..\\..\\escape")},
        {"9": image(str(tmp_path / "abs.png"))},
        {"9": image("x.png", str(tmp_path / "abs"))},
        {"9": image("x\x00.png")},
        {"9": image("")},
        {"9": {"result": ["../escape.glb", None]}},
        {"../escape": {"text": ["hello"]}},
    ]


@pytest.mark.parametrize("case", range(10))
async def test_native_outputs_outside_out_are_refused(tmp_path, aiohttp_server, case):
    server = await aiohttp_server(create_app(outputs=escapes(tmp_path)[case]))
    message = await refused(tmp_path, server)
    assert "refused" in message or "nothing was downloaded" in message
    assert "/view" not in [path for path, _ in server.app[STATE]["auth"]], "refused before any download"


@pytest.mark.parametrize(
    "node,name",
    [
        ("../somewhere", "x.png"),
        ("../../../somewhere", "x.png"),
        ("4", "../x.png"),
        ("4", "..\\x.png"),
        ("/tmp", "x.png"),
        ("4", "/x.png"),
        ("4", "x\x00.png"),
        ("C:\\Windows", "x.png"),
        ("4", ""),
    ],
)
async def test_v2_outputs_outside_out_are_refused(tmp_path, aiohttp_server, node, name):
    server = await aiohttp_server(create_app(job_outputs=[{"node_id": node, "name": name, "url": "/asset"}]))
    await refused(tmp_path, server, v2=True)
    assert "/asset" not in [path for path, _ in server.app[STATE]["auth"]]


async def test_contained_outputs_still_land_in_out(tmp_path, aiohttp_server):
    """The same server with honest names: the files arrive (the refusals are not blanket)."""
    server = await aiohttp_server(
        create_app(
            outputs={"9": image("a.png", "sub\\dir"), "10": {"text": ["hi"]}},
            job_outputs=[{"node_id": "4", "name": "b.png", "url": "/asset"}],
        )
    )
    server.app[STATE]["answers"]["ws"] = [  # a pack's own message, then ComfyUI's end of the run
        json.dumps({"type": "crystools.monitor", "data": [1, 2]}),
        json.dumps({"type": "execution_success", "data": {}}),
    ]
    native = await runmod.run(args(tmp_path, server))
    assert sorted(native["outputs"]) == sorted(
        [str(tmp_path / "out/sub/dir/a.png"), str(tmp_path / "out/10_text_0.txt")]
    )
    v2 = await runmod.run(args(tmp_path, server, v2=True))
    assert v2["outputs"] == [str(tmp_path / "out/4/b.png")]


# --- time and size ------------------------------------------------------------------------
@pytest.mark.parametrize("v2", [False, True], ids=["native", "v2"])
async def test_a_trickling_download_ends_at_the_timeout(tmp_path, aiohttp_server, v2):
    server = await aiohttp_server(
        create_app(
            outputs={"9": image("slow.png")},
            job_outputs=[{"node_id": "9", "name": "slow.png", "url": "/asset"}],
            asset="trickle",
        )
    )
    message = await refused(tmp_path, server, "--timeout", "2", v2=v2, error=TimedOut)
    assert "downloading slow.png" in message


@pytest.mark.parametrize("v2", [False, True], ids=["native", "v2"])
async def test_an_endless_download_stops_at_the_size_cap(tmp_path, aiohttp_server, v2):
    server = await aiohttp_server(
        create_app(
            outputs={"9": image("big.png")},
            job_outputs=[{"node_id": "9", "name": "big.png", "url": "/asset"}],
            asset="endless",
        )
    )
    message = await refused(tmp_path, server, "--max-output-bytes", "1M", v2=v2)
    assert "--max-output-bytes" in message


def test_the_size_flag_takes_units():
    assert [runmod.size(s) for s in ("123", "1K", "500M", "10G", "2GiB")] == [
        123,
        1024,
        500 << 20,
        10 << 30,
        2 << 30,
    ]
    with pytest.raises(Exception, match="not a size"):
        runmod.size("lots")


# --- malformed answers --------------------------------------------------------------------
NATIVE_MALFORMED = {
    "prompt is html": {"prompt": b"<html>hello</html>"},
    "prompt is a list": {"prompt": [1, 2]},
    "prompt_id is a number": {"prompt": {"prompt_id": 7, "node_errors": {}}},
    "history is html": {"history": b"<html>"},
    "history is a list": {"history": []},
    "entry is a list": {"entry": []},
    "outputs is a list": {"outputs": []},
    "node output is a string": {"outputs": {"9": "x.png"}},
    "progress is a string": {"ws": [json.dumps({"type": "progress", "data": "half"})]},
    "progress value is a string": {
        "ws": [json.dumps({"type": "progress", "data": {"value": "a", "max": 2, "node": "1"}})]
    },
    "progress is NaN": {"ws": ['{"type": "progress", "data": {"value": NaN, "max": 2, "node": "1"}}']},
    "cached nodes is a number": {"ws": [json.dumps({"type": "execution_cached", "data": {"nodes": 5}})]},
    "message is not json": {"ws": ["{nope"]},
    "message is a list": {"ws": ["[1]"]},
}


@pytest.mark.parametrize("answers", NATIVE_MALFORMED.values(), ids=NATIVE_MALFORMED.keys())
async def test_native_malformed_answers(tmp_path, aiohttp_server, answers):
    server = await aiohttp_server(create_app(**answers))
    await refused(tmp_path, server)


V2_MALFORMED = {
    "job is html": {"job": b"<html>"},
    "job is a list": {"job": [1]},
    "job has no urls": {"job": {"id": "job_1"}},
    "job url leaves the server": {
        "job": {"id": "job_1", "urls": {"self": "file:///etc/passwd", "events": "/e"}}
    },
    "event is not json": {"events": ["event: progress", "data: {nope", ""]},
    "progress is a string": {"events": ["event: progress", 'data: "half"', ""]},
    "progress steps are not finite": {
        "events": ["event: progress", 'data: {"current_node": "3", "step": 1, "steps": Infinity}', ""]
    },
    "progress steps are words": {
        "events": ["event: progress", 'data: {"current_node": "3", "step": "a", "steps": "b"}', ""]
    },
    "outputs is a dict": {"job_outputs": {"a": 1}},
    "output is a string": {"job_outputs": ["x.png"]},
    "output url is not a url": {"job_outputs": [{"node_id": "1", "name": "x.png", "url": 5}]},
}


@pytest.mark.parametrize("answers", V2_MALFORMED.values(), ids=V2_MALFORMED.keys())
async def test_v2_malformed_answers(tmp_path, aiohttp_server, answers):
    server = await aiohttp_server(create_app(**answers))
    await refused(tmp_path, server, v2=True)


async def test_v2_a_retry_after_that_is_not_a_number_is_waited_out(tmp_path, aiohttp_server):
    server = await aiohttp_server(create_app(retry_after="abc"))
    result = await asyncio.wait_for(runmod.run(args(tmp_path, server, v2=True)), SAFETY)
    assert result == {"job_id": "job_1", "outputs": []} and server.app[STATE]["submits"] == 2


# --- credentials ----------------------------------------------------------------------------
async def test_v2_sends_the_token_to_the_servers_origin_only(tmp_path, aiohttp_server):
    elsewhere = await aiohttp_server(create_app())
    server = await aiohttp_server(
        create_app(
            job_outputs=[
                {"node_id": "1", "name": "mine.png", "url": "/asset"},
                {"node_id": "2", "name": "theirs.png", "url": f"http://127.0.0.1:{elsewhere.port}/asset"},
                {"node_id": "3", "name": "by-name.png", "url": f"http://localhost:{elsewhere.port}/asset"},
            ]
        )
    )
    result = await runmod.run(args(tmp_path, server, v2=True))
    assert len(result["outputs"]) == 3
    assert elsewhere.app[STATE]["auth"] == [("/asset", None), ("/asset", None)]
    assert set(server.app[STATE]["auth"]) == {
        ("/api/v2/jobs", "Bearer secret"),
        ("/api/v2/jobs/job_1/events", "Bearer secret"),
        ("/api/v2/jobs/job_1", "Bearer secret"),
        ("/asset", "Bearer secret"),
    }


# --- the command line: exit code and one line ------------------------------------------------
async def test_the_command_line_exits_10_with_one_line(tmp_path, aiohttp_server):
    server = await aiohttp_server(create_app(outputs={"9": image("x.png", "../escape")}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "comfyctl",
        "run",
        str(REPO / "workflows/api/smoke.json"),
        "--server",
        f"http://127.0.0.1:{server.port}",
        "--out",
        str(tmp_path / "out"),
        "--json",
        cwd=REPO,
        env=python_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), SAFETY)
    assert proc.returncode == BadAnswer.exit_code == 10, err
    assert err.decode().count("\n") == 1 and "outside --out" in err.decode() and not out
    assert not (tmp_path / "escape").exists()
