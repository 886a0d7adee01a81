"""The CLI against a real S3 server (moto) over loopback: cold, warm, verify, dry run,
progress, deletion, free space and the error exits."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from tests.support import free_port
from tests.support.sync_cli import PART, cli_env, digests, leftovers, run_cli, sample_files, tree, upload


def write_manifest(path, bucket, files):
    entries = []
    for rel, data in files.items():
        folder, _, p = rel.partition("/")
        entries.append(
            {
                "folder": folder,
                "path": p,
                "size": len(data),
                "source": f"s3://{bucket}/elsewhere/{p}",
                "key": rel,
                "profiles": ["small"] if "small" in rel else ["big"],
            }
        )
    path.write_text(yaml.safe_dump({"version": 1, "profiles": {"big": "b", "small": "s"}, "files": entries}))
    return path


def test_cold_then_warm_mirror(s3, bucket, tmp_path):
    files = sample_files()
    upload(s3, bucket, files)
    env = cli_env(**s3.env())
    cold = run_cli(["mirror", f"s3://{bucket}/models", str(tmp_path)], env)
    assert cold.rc == 0, cold.stderr
    assert tree(tmp_path) == digests(files)
    assert cold.summary["bytes_transferred"] == sum(map(len, files.values()))
    assert leftovers(tmp_path) == []
    progress = json.loads((tmp_path / ".model_sync/progress.json").read_text())
    assert progress["state"] == "done"
    assert progress["files_done"] == progress["files_total"] == len(files)
    assert progress["bytes_done"] == progress["bytes_total"] == sum(map(len, files.values()))
    assert set(progress) == {
        "state",
        "bytes_done",
        "bytes_total",
        "files_done",
        "files_total",
        "current",
        "errors",
        "updated_at",
    }
    warm = run_cli(["mirror", f"s3://{bucket}/models", str(tmp_path)], env)
    assert warm.rc == 0
    assert warm.summary["bytes_transferred"] == 0
    assert warm.summary["skipped"] == len(files) and warm.summary["fetched"] == 0
    # JSON progress lines, since stderr is not a terminal
    assert '{"progress": {"state": "done"' in warm.stderr


def test_sync_profiles_from_prefix_and_dry_run(s3, bucket, tmp_path):
    files = sample_files()
    upload(s3, bucket, files)
    manifest = write_manifest(tmp_path / "models.yaml", bucket, files)
    models = tmp_path / "models"
    env = cli_env(**s3.env(), MODEL_SYNC_FROM=f"s3://{bucket}/models")
    dry = run_cli(
        ["sync", "--manifest", str(manifest), "--models-dir", str(models), "--profile", "small", "--dry-run"],
        env,
    )
    assert dry.rc == 0, dry.stderr
    assert (
        f"fetch  loras/style/small.safetensors  <- s3://{bucket}/models/loras/style/small.safetensors"
        in dry.stdout
    )
    assert "plan: 1 to fetch" in dry.stdout
    assert tree(models) == {}
    real = run_cli(
        [
            "sync",
            "--manifest",
            str(manifest),
            "--models-dir",
            str(models),
            "--progress-file",
            str(tmp_path / "p.json"),
        ],
        env | {"MODEL_PROFILES": "small"},
    )
    assert real.rc == 0, real.stderr
    assert tree(models) == digests({"loras/style/small.safetensors": files["loras/style/small.safetensors"]})
    assert json.loads((tmp_path / "p.json").read_text())["state"] == "done"


@pytest.mark.parametrize("checksum", ["CRC32", "MD5"])
def test_verify_rehashes_and_refetches_a_corrupted_file(checksum, s3, bucket, tmp_path):
    files = {"vae/v.pt": os.urandom(100_000)}
    if checksum == "CRC32":  # boto3 stores a full-object CRC32 with each upload
        upload(s3, bucket, files)
    else:  # an object without a stored checksum: the ETag's MD5 is used
        client = s3.client(checksums=False)
        client.put_object(Bucket=bucket, Key="models/vae/v.pt", Body=files["vae/v.pt"])
        assert "ChecksumCRC32" not in client.head_object(
            Bucket=bucket, Key="models/vae/v.pt", ChecksumMode="ENABLED"
        )
    env = cli_env(**s3.env())
    args = ["mirror", f"s3://{bucket}/models", str(tmp_path)]
    assert run_cli(args, env).rc == 0
    target = tmp_path / "vae/v.pt"
    st = os.stat(target)
    with open(target, "r+b") as f:  # bit rot: same size, same inode, same mtime
        f.seek(500)
        f.write(b"\0" * 16)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    trusting = run_cli(args, env)
    assert trusting.summary["skipped"] == 1  # records are trusted unless --verify
    checked = run_cli(args + ["--verify"], env)
    assert checked.rc == 0, checked.stderr
    assert f"{checksum} " in checked.stderr and checked.summary["fetched"] == 1
    assert tree(tmp_path) == digests(files)
    again = run_cli(args + ["--verify"], env)
    assert again.summary["verified"] == 1 and again.summary["bytes_transferred"] == 0


def test_a_small_listed_file_costs_one_get_and_is_still_verified(s3, bucket, relay_for, tmp_path):
    small = {f"loras/s{i}.pt": os.urandom(1000 + i) for i in range(5)}
    files = small | {"vae/big.pt": os.urandom(4 * PART)}
    client = s3.client(checksums=False)  # no stored CRC32: the ETag's MD5 is the only digest
    for rel, data in files.items():
        client.put_object(Bucket=bucket, Key=f"models/{rel}", Body=data)
    relay = relay_for(s3.url)
    relay.inject("corrupt")  # the first object GET: loras/s0.pt, caught by its MD5
    res = run_cli(
        ["mirror", f"s3://{bucket}/models", str(tmp_path)],
        cli_env(**s3.env(relay.url), MODEL_SYNC_FILE_WORKERS="1"),
    )
    assert res.rc == 0, res.stderr[-3000:]
    assert relay.faults_done == ["corrupt"] and "MD5 " in res.stderr
    assert tree(tmp_path) == digests(files)
    # Each small file: one GET pinned to the listed ETag, no HEAD; the big one: a HEAD (for a
    # stored checksum) and one ranged GET per part. Plus the corrupted GET, fetched again.
    assert relay.heads == 1
    assert relay.object_gets == len(small) + 4 + 1
    assert leftovers(tmp_path) == []


def test_file_present_without_record_is_adopted_after_verification(s3, bucket, tmp_path):
    files = {"loras/l.safetensors": sample_files()["loras/style/small.safetensors"]}
    upload(s3, bucket, files)
    (tmp_path / "loras").mkdir()
    (tmp_path / "loras/l.safetensors").write_bytes(files["loras/l.safetensors"])
    res = run_cli(["mirror", f"s3://{bucket}/models", str(tmp_path)], cli_env(**s3.env()))
    assert res.summary["verified"] == 1 and res.summary["bytes_transferred"] == 0


def test_delete_only_with_flag_only_own_files_and_capped(s3, bucket, tmp_path):
    files = {"vae/a.pt": b"a" * 1000, "vae/b.pt": b"b" * 1000, "vae/c.pt": b"c" * 1000}
    upload(s3, bucket, files)
    env = cli_env(**s3.env())
    args = ["mirror", f"s3://{bucket}/models", str(tmp_path)]
    assert run_cli(args, env).rc == 0
    (tmp_path / "vae/mine.pt").write_bytes(b"placed by hand")
    client = s3.client()
    for k in ("vae/a.pt", "vae/b.pt"):
        client.delete_object(Bucket=bucket, Key=f"models/{k}")
    assert run_cli(args, env).rc == 0
    assert (tmp_path / "vae/a.pt").exists()  # no --delete: nothing removed
    capped = run_cli(args + ["--delete"], env | {"MODEL_SYNC_DELETE_MAX": "1"})
    assert capped.rc == 11 and "would remove 2 files" in capped.stderr
    assert (tmp_path / "vae/a.pt").exists()
    # an error in the same run: nothing is deleted
    client.put_object(Bucket=bucket, Key="models/vae/d.pt", Body=b"d" * 10)
    failing = run_cli(args + ["--delete"], env | {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert failing.rc != 0 and (tmp_path / "vae/a.pt").exists()
    ok = run_cli(args + ["--delete"], env)
    assert ok.rc == 0 and ok.summary["deleted"] == 2
    assert sorted(tree(tmp_path)) == ["vae/c.pt", "vae/d.pt", "vae/mine.pt"]


def test_free_space_check_reports_the_numbers(s3, bucket, tmp_path):
    upload(s3, bucket, {"vae/a.pt": b"x" * 5000})
    res = run_cli(
        ["mirror", f"s3://{bucket}/models", str(tmp_path)],
        cli_env(**s3.env(), MODEL_SYNC_MIN_FREE_MARGIN=str(2**62)),
    )
    assert res.rc == 7
    assert "the transfers need 5000 bytes" in res.stderr and "are free" in res.stderr
    assert tree(tmp_path) == {}


def test_errors_name_the_problem_and_the_setting(s3, bucket, tmp_path):
    upload(s3, bucket, {"vae/a.pt": b"x"})
    env = cli_env(**s3.env())
    missing_bucket = run_cli(["mirror", "s3://no-such-bucket-here/models", str(tmp_path)], env)
    assert missing_bucket.rc == 5 and "NoSuchBucket" in missing_bucket.stderr
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "profiles": {},
                "files": [
                    {"folder": "vae", "path": "gone.pt", "source": f"s3://{bucket}/models/vae/gone.pt"}
                ],
            }
        )
    )
    missing_key = run_cli(["sync", "--manifest", str(manifest), "--models-dir", str(tmp_path)], env)
    assert missing_key.rc == 5 and "s3://" in missing_key.stderr and "not found" in missing_key.stderr
    dead = cli_env(**s3.env(f"http://127.0.0.1:{free_port()}"), MODEL_SYNC_RETRIES="1")
    unreachable = run_cli(["mirror", f"s3://{bucket}/models", str(tmp_path)], dead)
    assert unreachable.rc == 6 and "AWS_ENDPOINT_URL" in unreachable.stderr
    manifest.write_text(
        yaml.safe_dump({"version": 1, "files": [{"folder": "vea", "path": "x.pt", "source": "s3://b/x.pt"}]})
    )
    bad = run_cli(["sync", "--manifest", str(manifest), "--models-dir", str(tmp_path)], env)
    assert bad.rc == 3 and "unknown folder key 'vea'" in bad.stderr
    progress = json.loads((tmp_path / ".model_sync/progress.json").read_text())
    assert progress["state"] == "failed" and "vea" in progress["errors"][0]
