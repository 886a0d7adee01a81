"""Manifest validation, URI parsing and the pure planner (no I/O)."""

from __future__ import annotations

import pytest
import yaml

from model_sync.errors import DeleteRefusedError, ManifestError, UsageError
from model_sync.manifest import EXTENSIONS, FOLDER_KEYS, load_manifest, parse_manifest
from model_sync.planner import (
    Action,
    Item,
    RemoteObject,
    decide,
    describe,
    plan_deletions,
    select_files,
    select_mirror,
)
from model_sync.state import LocalStat, StateRecord
from model_sync.uris import parse_uri

SHA = "a" * 64


def manifest(*files, profiles=None):
    return {"version": 1, "profiles": profiles or {"p1": "one", "p2": "two"}, "files": list(files)}


def entry(**kw):
    base = {
        "folder": "checkpoints",
        "path": "m.safetensors",
        "source": "s3://bkt/m.safetensors",
        "profiles": ["p1"],
    }
    base.update(kw)
    return base


@pytest.mark.parametrize(
    "bad, needle",
    [
        (entry(folder="checkpoint"), "unknown folder key 'checkpoint'"),
        (entry(path="m.zip"), "unrecognised extension '.zip'"),
        (entry(path="../m.safetensors"), "plain relative path"),
        (entry(path="/abs.safetensors"), "plain relative path"),
        (entry(source="ftp://x/y.safetensors"), "unsupported scheme 'ftp'"),
        (entry(source="s3://bucket-only"), "no object key"),
        (entry(source="hf://owner-only"), "expected hf://owner/repo/path@revision"),
        (entry(source="hf://o/r/f.safetensors@"), "empty or malformed @revision"),
        (entry(sha256="xyz"), "64 hex digits"),
        (entry(size=-1), "non-negative integer"),
        (entry(profiles=["nope"]), "profile 'nope' is not declared"),
        (entry(colour="red"), "unknown field(s) colour"),
    ],
)
def test_malformed_entries_are_named(bad, needle):
    with pytest.raises(ManifestError) as exc:
        parse_manifest(manifest(bad), "models.yaml")
    assert needle in str(exc.value)
    assert "models.yaml: files[0]" in str(exc.value)


def test_duplicate_destination_names_both_entries():
    with pytest.raises(ManifestError, match=r"files\[1\].*checkpoints/m.safetensors.*files\[0\]"):
        parse_manifest(manifest(entry(), entry(source="oss://b2/other.safetensors")))


def test_version_and_yaml_errors(tmp_path):
    with pytest.raises(ManifestError, match="version: 1"):
        parse_manifest({"version": 2, "files": []})
    bad = tmp_path / "m.yaml"
    bad.write_text("files: [unclosed")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(bad)
    with pytest.raises(ManifestError, match="cannot read manifest"):
        load_manifest(tmp_path / "absent.yaml")


def test_declared_folders_and_extensions_are_accepted(tmp_path):
    data = manifest(entry(folder="LLM", path="q/model.gguf"), entry(folder="configs", path="c.yaml"))
    data["folders"], data["extensions"] = ["LLM"], [".yaml"]
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    m = load_manifest(path)
    assert [f.dest for f in m.files] == ["LLM/q/model.gguf", "configs/c.yaml"]
    assert m.files[0].key == "LLM/q/model.gguf"


def test_uri_forms():
    hf = parse_uri("hf://Comfy-Org/Wan_2.2_ComfyUI_Repackaged/split_files/vae/wan.safetensors@abc123")
    assert (hf.bucket, hf.key, hf.revision) == (
        "Comfy-Org/Wan_2.2_ComfyUI_Repackaged",
        "split_files/vae/wan.safetensors",
        "abc123",
    )
    assert parse_uri("hf://o/r/f.bin").revision == ""
    oss = parse_uri("oss://my-bucket/models", prefix=True)
    assert str(oss.child("vae/x.pt")) == "oss://my-bucket/models/vae/x.pt"
    assert str(parse_uri("s3://b", prefix=True).child("a/b.pt")) == "s3://b/a/b.pt"
    assert parse_uri("https://example.org/x.bin").url == "https://example.org/x.bin"


def test_profile_selection_and_from_prefix():
    m = parse_manifest(
        manifest(
            entry(path="a.safetensors", profiles=["p1"]),
            entry(path="b.safetensors", profiles=["p2"], key="custom/b.safetensors"),
            entry(path="common.safetensors", profiles=[]),
        )
    )
    assert [i.dest for i in select_files(m, ("p1",), None)] == [
        "checkpoints/a.safetensors",
        "checkpoints/common.safetensors",
    ]
    assert len(select_files(m, (), None)) == 3
    items = select_files(m, ("p2",), "oss://bkt/models")
    assert [str(i.source) for i in items] == [
        "oss://bkt/models/custom/b.safetensors",
        "oss://bkt/models/checkpoints/common.safetensors",
    ]
    with pytest.raises(UsageError, match="unknown profile.*declares p1, p2"):
        select_files(m, ("p3",), None)


def test_mirror_skips_what_comfyui_would_not_load():
    prefix = parse_uri("s3://b/models", prefix=True)
    items = select_mirror(
        prefix, ["vae/a.pt", "README.md", "nofolder/x.pt", "loras/.hidden.pt"], FOLDER_KEYS, EXTENSIONS
    )
    assert [i.dest for i in items] == ["vae/a.pt"]


REMOTE = RemoteObject(size=10, identity="etag:e1:10", etag="e1", md5=None)
ITEM = Item("vae/a.pt", parse_uri("s3://b/vae/a.pt"))
LOCAL = LocalStat(10, 111, 5)
RECORD = StateRecord("vae/a.pt", "s3://b/vae/a.pt", "etag:e1:10", 10, 111, 5)


def test_decide_covers_each_definition_of_unchanged():
    assert decide(ITEM, REMOTE, RECORD, LOCAL, False).action is Action.SKIP
    assert decide(ITEM, REMOTE, RECORD, LOCAL, True).action is Action.VERIFY
    assert decide(ITEM, REMOTE, None, None, False).action is Action.FETCH
    assert decide(ITEM, REMOTE, None, LOCAL, False).action is Action.VERIFY
    assert decide(ITEM, REMOTE, None, LocalStat(9, 1, 1), False).action is Action.FETCH
    changed = RemoteObject(size=10, identity="etag:e2:10")
    assert decide(ITEM, changed, RECORD, LOCAL, False).action is Action.FETCH
    touched = LocalStat(10, 222, 5)
    assert decide(ITEM, REMOTE, RECORD, touched, False).action is Action.VERIFY
    with_sha = Item("vae/a.pt", ITEM.source, sha256=SHA)
    assert decide(with_sha, REMOTE, RECORD, LOCAL, False).action is Action.VERIFY


def test_deletions_only_touch_recorded_files_and_respect_the_cap():
    assert plan_deletions([ITEM], ["vae/a.pt", "vae/old.pt"], 5) == ["vae/old.pt"]
    with pytest.raises(DeleteRefusedError, match="would remove 3 files"):
        plan_deletions([], ["a/1.pt", "a/2.pt", "a/3.pt"], 2)


def test_describe_prints_every_step():
    lines = describe([decide(ITEM, REMOTE, None, None, False)], ["vae/old.pt"])
    assert lines[0].startswith("fetch  vae/a.pt  <- s3://b/vae/a.pt")
    assert "delete vae/old.pt" in lines
    assert lines[-1] == "plan: 1 to fetch (10 bytes), 0 to verify, 0 unchanged, 1 to delete"


def test_settings_flag_over_environment_over_default(tmp_path):
    from model_sync.settings import load_settings

    env = {
        "MODEL_PROFILES": "a, b",
        "MODEL_SYNC_FROM": "oss://env/models",
        "MODEL_SYNC_PART_SIZE": "1048576",
        "MODEL_SYNC_PROGRESS_FILE": str(tmp_path / "p.json"),
    }
    s = load_settings(env, models_dir=str(tmp_path))
    assert s.profiles == ("a", "b") and s.from_prefix == "oss://env/models"
    assert s.part_size == 1048576 and s.progress_path == tmp_path / "p.json"
    assert s.range_threads == 4
    s = load_settings(
        env,
        models_dir=str(tmp_path),
        profiles=["c"],
        from_prefix="s3://flag/m",
        progress_file=str(tmp_path / "q.json"),
    )
    assert s.profiles == ("c",) and s.from_prefix == "s3://flag/m"
    assert s.progress_path == tmp_path / "q.json"
    assert (
        load_settings({}, models_dir=str(tmp_path)).progress_path
        == tmp_path / ".model_sync" / "progress.json"
    )
    with pytest.raises(UsageError, match="MODEL_SYNC_PART_SIZE"):
        load_settings({"MODEL_SYNC_PART_SIZE": "big"}, models_dir=str(tmp_path))


def test_profiles_read_one_way_from_flags_and_environment(tmp_path):
    """MODEL_PROFILES="a b" (how comfyctl serve was always given it) works for the sync too."""
    from model_sync.settings import load_settings

    for raw in ("a b", "a,b", "a, b"):
        assert load_settings({"MODEL_PROFILES": raw}, models_dir=str(tmp_path)).profiles == ("a", "b")
    assert load_settings({}, models_dir=str(tmp_path), profiles=["a,b", "c"]).profiles == ("a", "b", "c")


def test_backends_take_credentials_from_the_settings_not_the_environment(tmp_path, monkeypatch):
    from model_sync.settings import load_settings

    monkeypatch.setenv("OSS_ENDPOINT", "https://leaked.example")
    s = load_settings(
        {
            "OSS_ENDPOINT": "https://oss.example",
            "OSS_SECURITY_TOKEN": "sts",
            "HUGGING_FACE_HUB_TOKEN": "hf_x",
            "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",
        },
        models_dir=str(tmp_path),
    )
    assert s.storage.oss_endpoint == "https://oss.example" and s.storage.oss_session_token == "sts"
    assert s.storage.hf_token == "hf_x" and s.storage.s3_endpoint == "http://127.0.0.1:9"
    assert "sts" not in repr(s) and "hf_x" not in repr(s)
