"""A hostile or odd bucket (and odd things in the models folder) cannot make model_sync write
outside the models folder, hang, or stop the sync of the other files. The real CLI against
moto (S3) and the OSS adapter in front of it, as docs/security.md lists the threats."""

from __future__ import annotations

import os
import stat
from urllib.parse import unquote, urlsplit

import pytest

from tests.support.sync_cli import PART, cli_env, digests, leftovers, oss_env, run_cli, tree


def store_env(kind, s3, oss, **extra):
    return oss_env(oss.url, **extra) if kind == "oss" else cli_env(**s3.env(), **extra)


def sync_args(kind, base, bucket, files, models):
    """`mirror` of the bucket's models prefix; for https, `sync` of a manifest naming each
    file by its public URL on the server at `base`."""
    if kind != "https":
        return ["mirror", f"{kind}://{bucket}/models", str(models)]
    entries = "".join(
        f"  - folder: {rel.split('/')[0]}\n    path: {rel.split('/', 1)[1]}\n"
        f"    source: {base}/{bucket}/models/{rel}\n"
        for rel in files
    )
    manifest = models.parent / "manifest.yaml"
    manifest.write_text(f"version: 1\nfiles:\n{entries}")
    return ["sync", "--manifest", str(manifest), "--models-dir", str(models)]


def upload_public(s3, bucket, files):
    client = s3.client()
    for rel, data in files.items():
        client.put_object(Bucket=bucket, Key=f"models/{rel}", Body=data, ACL="public-read")


@pytest.mark.parametrize("kind", ["s3", "oss", "https"])
def test_symlinks_at_a_partials_names_are_never_written_through(kind, s3, oss, bucket, tmp_path):
    files = {"loras/small.pt": os.urandom(3000), "vae/big.pt": os.urandom(5 * PART + 17)}
    upload_public(s3, bucket, files)
    outside = tmp_path / "outside"
    outside.mkdir()
    victims = {}
    models = tmp_path / "models"
    # Links at every name model_sync gives a file before it is placed: the partial, its
    # sidecar, and the lock.
    for rel in files:
        folder, name = rel.split("/")
        for planted in (
            models / folder / f".{name}.msync-part",
            models / folder / f".{name}.msync-part.json",
            models / ".model_sync/locks" / folder / f"{name}.lock",
        ):
            victim = outside / f"{planted.name}.victim"
            victim.write_bytes(b"not yours to overwrite\n")
            victim.chmod(0o600)
            planted.parent.mkdir(parents=True, exist_ok=True)
            planted.symlink_to(victim)
            victims[victim] = victim.read_bytes()
    res = run_cli(sync_args(kind, s3.url, bucket, files, models), store_env(kind, s3, oss))
    assert res.rc == 0, res.stderr[-4000:]
    for victim, data in victims.items():
        assert victim.read_bytes() == data, victim
        assert stat.S_IMODE(victim.stat().st_mode) == 0o600, victim
    assert tree(models) == digests(files)
    for rel in files:
        assert not (models / rel).is_symlink() and (models / rel).is_file()
    assert leftovers(models) == []


@pytest.mark.parametrize("kind", ["s3", "oss", "https"])
def test_an_object_replaced_after_the_listing_is_fetched_again_from_scratch(
    kind, s3, oss, bucket, relay_for, tmp_path
):
    old = {"loras/small.pt": os.urandom(3000), "vae/big.pt": os.urandom(5 * PART + 17)}
    new = {"loras/small.pt": os.urandom(2500), "vae/big.pt": os.urandom(4 * PART + 99)}
    upload_public(s3, bucket, old)
    client = s3.client()
    replaced = []

    def replace_it(path: str) -> None:
        # The first GET of each object, after the listing (and any HEAD) saw the old one.
        key = unquote(urlsplit(path).path).lstrip("/").partition("/")[2]
        rel = key.removeprefix("models/")
        if rel in new and rel not in replaced:
            replaced.append(rel)
            client.put_object(Bucket=bucket, Key=key, Body=new[rel], ACL="public-read")

    relay = relay_for(oss.url if kind == "oss" else s3.url)
    relay.inject(*[replace_it] * 8)
    env = oss_env(relay.url) if kind == "oss" else cli_env(**s3.env(relay.url))
    models = tmp_path / "models"
    args = sync_args(kind, relay.url, bucket, new, models)
    res = run_cli(args, env | {"MODEL_SYNC_RETRIES": "2"})
    assert res.rc == 0, res.stderr[-4000:]
    assert sorted(replaced) == sorted(new)
    assert tree(models) == digests(new)
    assert res.stderr.count("changed at the source") >= 2, res.stderr[-4000:]
    assert leftovers(models) == []
    # The records name the new objects: a second run fetches nothing.
    again = run_cli(args, env)
    assert again.rc == 0 and again.summary["skipped"] == 2 and again.summary["bytes_transferred"] == 0


ODD = {
    "loras/" + "n" * 240 + ".pt": b"a name too long once the partial's suffixes are added",
    "loras/a.pt": os.urandom(100),  # a file ...
    "loras/a.pt/b.pt": os.urandom(100),  # ... and a folder at one name
    "loras/c.pt.lock/d.pt": os.urandom(100),  # would collide with the lock of loras/c.pt.lock
    "loras/\x1b[31mred\x1b[0m.pt": os.urandom(100),  # an escape sequence in the name
}


@pytest.mark.parametrize("kind", ["s3", "oss"])
def test_objects_that_cannot_be_placed_are_skipped_and_the_rest_placed(kind, s3, oss, bucket, tmp_path):
    good = {"vae/ok.pt": os.urandom(5000), "loras/fine.pt": os.urandom(3 * PART)}
    upload_public(s3, bucket, ODD | good)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints/here.pt").mkdir()  # a folder stands where a file must go
    upload_public(s3, bucket, {"checkpoints/here.pt": b"x"})
    res = run_cli(["mirror", f"{kind}://{bucket}/models", str(tmp_path)], store_env(kind, s3, oss))
    assert res.rc == 12, res.stderr[-4000:]
    placed = good | {"loras/a.pt": ODD["loras/a.pt"]}
    placed |= {"loras/\x1b[31mred\x1b[0m.pt": ODD["loras/\x1b[31mred\x1b[0m.pt"]}
    assert tree(tmp_path) == digests(placed)
    refused = [line for line in res.stderr.splitlines() if ": not placed: " in line]
    assert len(refused) == 4 == res.summary["unplaceable"], res.stderr[-4000:]
    for what, why in [
        ("n" * 240, "rename the object"),
        ("loras/a.pt/b.pt", "cannot also be a folder"),
        ("loras/c.pt.lock/d.pt", "rename the folder"),
        ("checkpoints/here.pt", "a folder of that name is here"),
    ]:
        assert any(what in line and why in line for line in refused), (what, refused)
    assert "partial sync: 4 object(s) not placed" in res.stderr
    # Names are logged escaped: no escape character reaches the log or the progress lines.
    assert "\x1b" not in res.stderr and "\x1b" not in res.stdout
    assert "loras/\\x1b[31mred\\x1b[0m.pt" in res.stderr
    dry = run_cli(
        ["mirror", f"{kind}://{bucket}/models", str(tmp_path), "--dry-run"], store_env(kind, s3, oss)
    )
    assert dry.rc == 0 and "\x1b" not in dry.stdout and "4 refused (cannot be placed)" in dry.stdout
    assert leftovers(tmp_path) == []


def test_a_partial_sync_does_not_stop_the_start_in_block_mode(s3, bucket, tmp_path, caplog):
    from comfyctl import sync_job

    upload_public(s3, bucket, {"vae/ok.pt": b"ok" * 100, "vae/" + "n" * 240 + ".pt": b"long"})
    models = tmp_path / "models"
    cmds = sync_job.commands(tmp_path / "none.yaml", models, (), f"s3://{bucket}/models", tmp_path / "p.json")
    with caplog.at_level("INFO", logger="comfyctl.sync_job"):
        code = sync_job.run(cmds, cli_env(**s3.env()))
    assert code == 0
    assert tree(models) == digests({"vae/ok.pt": b"ok" * 100})
    assert "PARTIAL (exit 12)" in caplog.text
