"""Every overlay renders with kustomize, validates strictly, and has the properties a
cluster admin relies on (non-root, probes on the proxy, drain before stop, no inline
secrets, a GPU only where one is meant)."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.support import need_tool
from tests.support.k8s import render

OVERLAYS = ["ack-gpu", "acs", "oss-mount", "cpu", "ack-gpu-ingress"]
GPU_OVERLAYS = {"ack-gpu", "acs", "oss-mount", "ack-gpu-ingress"}
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", re.I)


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request):
    text = render(request.param)
    return request.param, text, [d for d in yaml.safe_load_all(text) if d]


def one(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def test_validates_strictly(rendered):
    _, text, _ = rendered
    validate = need_tool("kubernetes-validate")
    out = subprocess.run(
        [validate, "--strict", "--quiet", "-"], input=text, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_pod_runs_unprivileged(rendered):
    _, _, docs = rendered
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod.get("hostNetwork") is not True and pod.get("hostPID") is not True
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = c["securityContext"]
        assert sc.get("privileged") is not True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc["readOnlyRootFilesystem"] is True


def test_one_writer_and_probes_on_the_proxy(rendered):
    _, _, docs = rendered
    deploy = one(docs, "Deployment")
    assert deploy["spec"]["strategy"]["type"] == "Recreate"
    assert deploy["spec"]["replicas"] == 1
    (c,) = deploy["spec"]["template"]["spec"]["containers"]
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert port == {"http": 8188}
    for probe, path in [
        ("startupProbe", "/readyz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
    ]:
        get = c[probe]["httpGet"]
        assert get["path"] == path and get["port"] in ("http", 8188)
    startup = c["startupProbe"]
    # patient enough for a cold sync: at least half an hour before liveness takes over
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1800
    svc = one(docs, "Service")
    assert svc["spec"]["type"] == "ClusterIP"
    assert [p["port"] for p in svc["spec"]["ports"]] == [8188]


def test_prestop_drains_within_the_grace_period(rendered):
    _, _, docs = rendered
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    cmd = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert cmd[:2] == ["comfyctl", "drain"]
    drain_timeout = float(cmd[cmd.index("--timeout") + 1])
    assert pod["terminationGracePeriodSeconds"] > drain_timeout


def test_no_secret_values_inline(rendered):
    _, text, docs = rendered
    assert not [d for d in docs if d["kind"] == "Secret"], "Secrets are created by the user"
    c = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for env in c["env"]:
        if SECRETISH.search(env["name"]) and not env["name"].endswith("_FILE"):
            assert "value" not in env, f"{env['name']} must come from a Secret"
    assert "COMFY_ADMIN_PASSWORD_FILE" in {e["name"] for e in c["env"]}
    assert "akSecret" not in text and "accessKeySecret" not in text


def test_gpu_only_where_meant(rendered):
    name, _, docs = rendered
    pod = one(docs, "Deployment")["spec"]["template"]
    c = pod["spec"]["containers"][0]
    gpus = c["resources"].get("limits", {}).get("nvidia.com/gpu")
    env = {e["name"]: e.get("value") for e in c["env"]}
    if name in GPU_OVERLAYS:
        assert gpus == 1
    else:
        assert gpus is None and "nvidia.com/gpu" not in c["resources"].get("requests", {})
        assert env["COMFYUI_MODE"] == "cpu"
    if name == "acs":
        labels = pod["metadata"]["labels"]
        assert labels["alibabacloud.com/compute-class"] == "gpu"
        assert labels["alibabacloud.com/gpu-model-series"]
    if name.startswith("ack-gpu"):
        terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"
        ]
        assert terms[0]["matchExpressions"][0]["key"] == "aliyun.accelerator/nvidia_name"


def test_shm_is_memory_backed(rendered):
    _, _, docs = rendered
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert vols[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert vols[mounts["/data"]]["persistentVolumeClaim"]["claimName"] == "comfy-data"


def test_oss_mount_is_read_only_without_mmap():
    docs = [d for d in yaml.safe_load_all(render("oss-mount")) if d]
    pv = one(docs, "PersistentVolume")
    assert pv["spec"]["csi"]["driver"] == "ossplugin.csi.alibabacloud.com"
    assert pv["spec"]["csi"]["readOnly"] is True
    assert pv["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert "nodePublishSecretRef" in pv["spec"]["csi"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    models = [m for m in c["volumeMounts"] if m["mountPath"] == "/data/models"]
    assert models and models[0]["readOnly"] is True
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert "--disable-mmap" in env["COMFYUI_EXTRA_ARGS"].split()
    assert env["MODEL_SYNC_MODE"] == "off"


def test_ingress_terminates_tls_for_the_service():
    docs = [d for d in yaml.safe_load_all(render("ack-gpu-ingress")) if d]
    ing = one(docs, "Ingress")
    assert ing["spec"]["tls"][0]["secretName"]
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == one(docs, "Service")["metadata"]["name"]
