"""hf:// against a local server speaking the hub's resolve protocol; oss:// specifics
(sync with --from, credential and not-found errors) against the OSS adapter."""

from __future__ import annotations

import os

import yaml

from tests.support.sync_cli import (
    cli_env,
    digests,
    oss_env,
    run_cli,
    safetensors_bytes,
    sample_files,
    tree,
    upload,
)
from tests.support.threaded_server import QuietHandler, ThreadedServer


def hf_manifest(path, entries):
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "profiles": {"p": "x"},
                "files": [{"folder": f, "path": p, "source": s, "profiles": ["p"]} for f, p, s in entries],
            }
        )
    )
    return path


def test_hf_source_through_hf_endpoint(hub, tmp_path):
    weights = safetensors_bytes(20_000, 9)
    hub.add("Comfy-Org/demo", {"split_files/vae/demo.safetensors": weights})
    hub.add("acme/gated", {"l.safetensors": safetensors_bytes(100, 1)}, token="hf_secret")
    manifest = hf_manifest(
        tmp_path / "m.yaml",
        [("vae", "demo.safetensors", "hf://Comfy-Org/demo/split_files/vae/demo.safetensors@main")],
    )
    env = cli_env(HF_ENDPOINT=hub.url)
    args = ["sync", "--manifest", str(manifest), "--models-dir", str(tmp_path / "m")]
    res = run_cli(args, env)
    assert res.rc == 0, res.stderr[-3000:]
    assert tree(tmp_path / "m") == digests({"vae/demo.safetensors": weights})
    assert ("GET", "/Comfy-Org/demo/resolve/main/split_files/vae/demo.safetensors", None) in hub.requests
    warm = run_cli(args, env)
    assert warm.summary["skipped"] == 1 and warm.summary["bytes_transferred"] == 0
    gated = hf_manifest(tmp_path / "g.yaml", [("loras", "l.safetensors", "hf://acme/gated/l.safetensors")])
    args = ["sync", "--manifest", str(gated), "--models-dir", str(tmp_path / "g")]
    denied = run_cli(args, env)
    assert denied.rc == 4 and "HF_TOKEN" in denied.stderr
    assert run_cli(args, env | {"HF_TOKEN": "hf_secret"}).rc == 0
    missing = hf_manifest(tmp_path / "x.yaml", [("vae", "n.pt", "hf://Comfy-Org/demo/nope.pt")])
    gone = run_cli(["sync", "--manifest", str(missing), "--models-dir", str(tmp_path / "x")], env)
    assert gone.rc == 5 and "hf://Comfy-Org/demo/nope.pt" in gone.stderr


def test_hf_sha256_mismatch_is_never_placed(hub, tmp_path):
    hub.add("o/r", {"m.pt": b"x" * 1000})
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "files": [{"folder": "vae", "path": "m.pt", "source": "hf://o/r/m.pt", "sha256": "0" * 64}],
            }
        )
    )
    res = run_cli(
        ["sync", "--manifest", str(manifest), "--models-dir", str(tmp_path / "m")],
        cli_env(HF_ENDPOINT=hub.url, MODEL_SYNC_RETRIES="1"),
    )
    assert res.rc == 8 and "sha256" in res.stderr
    assert not (tmp_path / "m/vae/m.pt").exists()


def test_oss_sync_from_prefix_then_warm(s3, oss, bucket, tmp_path):
    files = sample_files()
    upload(s3, bucket, files)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "profiles": {"all": "x"},
                "files": [
                    {
                        "folder": rel.split("/", 1)[0],
                        "path": rel.split("/", 1)[1],
                        "size": len(data),
                        "source": "hf://unused/repo/" + rel,
                        "profiles": ["all"],
                    }
                    for rel, data in files.items()
                ],
            }
        )
    )
    env = oss_env(oss.url)
    args = [
        "sync",
        "--manifest",
        str(manifest),
        "--models-dir",
        str(tmp_path / "m"),
        "--from",
        f"oss://{bucket}/models",
        "--profile",
        "all",
    ]
    res = run_cli(args, env)
    assert res.rc == 0, res.stderr[-3000:]
    assert tree(tmp_path / "m") == digests(files)
    warm = run_cli(args, env)
    assert warm.summary["skipped"] == len(files) and warm.summary["bytes_transferred"] == 0


def test_oss_object_without_crc64_is_verified_by_its_etag_md5(s3, oss, bucket, relay_for, tmp_path):
    files = {
        "vae/v.pt": os.urandom(200_000),  # 4 parts of 64 KiB
        "checkpoints/m.safetensors": safetensors_bytes(20_000, 4),
    }  # 2 parts
    upload(s3, bucket, files)
    oss.without_crc64.update((bucket, f"models/{rel}") for rel in files)
    relay = relay_for(oss.url)
    env = oss_env(relay.url)
    args = ["mirror", f"oss://{bucket}/models", str(tmp_path)]
    # No CRC64 for oss2 to compare: a byte flipped on the way is caught by the MD5 alone.
    relay.inject("corrupt")
    first = run_cli(args, env)
    assert first.rc == 0, first.stderr[-3000:]
    assert relay.faults_done == ["corrupt"] and "MD5 " in first.stderr
    assert tree(tmp_path) == digests(files)
    target = tmp_path / "vae/v.pt"
    st = os.stat(target)
    with open(target, "r+b") as f:  # bit rot: same size, same inode, same mtime
        f.seek(1234)
        f.write(bytes([f.read(1)[0] ^ 1]))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    checked = run_cli(args + ["--verify"], env)
    assert checked.rc == 0, checked.stderr[-3000:]
    assert "vae/v.pt: MD5 " in checked.stderr
    assert checked.summary["verified"] == 1 and checked.summary["fetched"] == 1
    assert tree(tmp_path) == digests(files)


def test_oss_errors_name_the_setting(s3, oss, bucket, tmp_path):
    upload(s3, bucket, {"vae/a.pt": b"a" * 10})
    bad_key = run_cli(
        ["mirror", f"oss://{bucket}/models", str(tmp_path)], oss_env(oss.url, OSS_ACCESS_KEY_ID="wrong-id")
    )
    assert (
        bad_key.rc == 4 and "OSS_ACCESS_KEY_ID" in bad_key.stderr and "InvalidAccessKeyId" in bad_key.stderr
    )
    no_creds = run_cli(["mirror", f"oss://{bucket}/models", str(tmp_path)], cli_env(OSS_ENDPOINT=oss.url))
    assert no_creds.rc == 4 and "OSS_ACCESS_KEY_SECRET" in no_creds.stderr
    no_bucket = run_cli(["mirror", "oss://no-such-bucket-x/models", str(tmp_path)], oss_env(oss.url))
    assert no_bucket.rc == 5 and "NoSuchBucket" in no_bucket.stderr
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "files": [{"folder": "vae", "path": "b.pt", "source": f"oss://{bucket}/models/vae/b.pt"}],
            }
        )
    )
    no_key = run_cli(["sync", "--manifest", str(manifest), "--models-dir", str(tmp_path)], oss_env(oss.url))
    assert no_key.rc == 5 and f"oss://{bucket}/models/vae/b.pt" in no_key.stderr
    no_endpoint = run_cli(
        ["mirror", f"oss://{bucket}/models", str(tmp_path)],
        cli_env(OSS_ACCESS_KEY_ID="a", OSS_ACCESS_KEY_SECRET="b"),
    )
    assert no_endpoint.rc == 2 and "OSS_ENDPOINT" in no_endpoint.stderr


def test_oss_ecs_ram_role_credentials_from_the_metadata_service(s3, oss, bucket, tmp_path):
    import json

    class Metadata(QuietHandler):
        def do_GET(self):
            if self.path != "/latest/meta-data/ram/security-credentials/comfy-role":
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps(
                {
                    "Code": "Success",
                    "AccessKeyId": "STS.role-key",
                    "AccessKeySecret": "role-secret",
                    "SecurityToken": "role-token",
                    "Expiration": "2099-01-01T00:00:00Z",
                    "LastUpdated": "2026-01-01T00:00:00Z",
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadedServer(Metadata).start()
    oss.keys["STS.role-key"] = "role-token"
    try:
        upload(s3, bucket, {"vae/a.pt": b"role" * 100})
        env = cli_env(
            OSS_ENDPOINT=oss.url,
            OSS_ECS_RAM_ROLE="comfy-role",
            OSS_ECS_METADATA_URL=f"{server.url}/latest/meta-data/ram/security-credentials",
        )
        res = run_cli(["mirror", f"oss://{bucket}/models", str(tmp_path / "m")], env)
        assert res.rc == 0, res.stderr[-2000:]
        assert (tmp_path / "m/vae/a.pt").read_bytes() == b"role" * 100
        wrong = run_cli(
            ["mirror", f"oss://{bucket}/models", str(tmp_path / "w")],
            env | {"OSS_ECS_RAM_ROLE": "not-attached"},
        )
        assert wrong.rc == 4 and "OSS_ECS_RAM_ROLE" in wrong.stderr
    finally:
        del oss.keys["STS.role-key"]
        server.stop()


def test_oss_unreachable_endpoint(bucket, tmp_path):
    from tests.support import free_port

    res = run_cli(
        ["mirror", f"oss://{bucket}/models", str(tmp_path)],
        oss_env(f"http://127.0.0.1:{free_port()}", MODEL_SYNC_RETRIES="1"),
    )
    assert res.rc == 6 and "OSS_ENDPOINT" in res.stderr


def test_progress_bars_on_a_terminal(tmp_path):
    import io

    from model_sync.progress import Progress

    out = io.StringIO()
    p = Progress(tmp_path / "p.json", 10, tty=True, stream=out)
    p.begin(1, 1000)
    p.start_file("vae/a.pt", 1000)
    p.advance("vae/a.pt", 600)
    snap = p.snapshot()
    assert snap["current"] == [{"path": "vae/a.pt", "bytes_done": 600, "bytes_total": 1000}]
    p.advance("vae/a.pt", 900)  # a re-fetched range never counts twice
    assert p.snapshot()["bytes_done"] == 1000
    p.finish_file("vae/a.pt", 1000)
    p.end(True)
    text = out.getvalue()
    assert "vae/a.pt" in text or "total" in text
    assert "{\"progress\"" not in text  # no JSON lines on a terminal


def test_hf_hub_offline_is_a_clear_setting_error_not_an_outage(hub, tmp_path):
    """HF_HUB_OFFLINE=1 makes huggingface_hub refuse the network; retrying cannot help, so
    the sync stops at once (exit 2) and names the variable."""
    hub.add("o/r", {"m.pt": b"x" * 100})
    manifest = hf_manifest(tmp_path / "m.yaml", [("vae", "m.pt", "hf://o/r/m.pt")])
    res = run_cli(
        ["sync", "--manifest", str(manifest), "--models-dir", str(tmp_path / "m")],
        cli_env(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="1", MODEL_SYNC_BACKOFF="5"),
        timeout=30,
    )
    assert res.rc == 2 and "HF_HUB_OFFLINE" in res.stderr and "retrying" not in res.stderr
    assert not hub.requests
