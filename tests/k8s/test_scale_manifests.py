"""The scale-out overlays (ack-gpu-scale, and -trial with its PostgreSQL) render with
kustomize and validate strictly: the core kinds with kubernetes-validate, KEDA's with the
schema of KEDA's CRDs (as the PyPI package cloudcoil-models-keda carries it, checked just as
strictly: no property the CRD does not name). Then what an operator relies on: stateless
gateway replicas, GPU workers that drain a video job before they stop, KEDA on the queue."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.support import need_tool
from tests.support.k8s import render

SCALE = ["ack-gpu-scale", "ack-gpu-scale-trial"]


@pytest.fixture(scope="module", params=SCALE)
def rendered(request):
    text = render(request.param)
    return request.param, text, [d for d in yaml.safe_load_all(text) if d]


def named(docs, kind, name):
    [found] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def strict(node):
    """What kubernetes-validate's --strict does to the core schemas: an object schema that
    names its properties allows no others."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for v in node.values():
            strict(v)
    elif isinstance(node, list):
        for v in node:
            strict(v)
    return node


def test_core_kinds_validate_strictly(rendered):
    _, text, docs = rendered
    out = subprocess.run(
        [need_tool("kubernetes-validate"), "--strict", "--quiet", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    unknown = [line for line in out.stdout.splitlines() if "Couldn't find schema" in line]
    assert all("keda.sh" in line for line in unknown), unknown  # KEDA's are checked below
    assert all(d["metadata"].get("namespace") == "comfy-stack" for d in docs if d["kind"] != "Namespace")


def test_keda_kinds_validate_strictly_against_kedas_crd_schema(rendered):
    jsonschema = pytest.importorskip("jsonschema")
    keda = pytest.importorskip("cloudcoil.models.keda.v1alpha1")
    _, _, docs = rendered
    kinds = [d for d in docs if d["apiVersion"] == "keda.sh/v1alpha1"]
    assert {d["kind"] for d in kinds} == {"ScaledObject", "TriggerAuthentication"}
    for doc in kinds:
        schema = strict(getattr(keda, doc["kind"]).model_json_schema(by_alias=True))
        errors = [
            f"{'.'.join(map(str, e.path))}: {e.message}"
            for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)
        ]
        assert not errors, errors
        typo = {**doc, "spec": {**doc["spec"], "minReplicas": 1}}  # the check does reject mistakes
        assert list(jsonschema.Draft202012Validator(schema).iter_errors(typo))


def test_gateways_are_stateless_replicas_behind_one_service(rendered):
    _, _, docs = rendered
    gw = named(docs, "Deployment", "comfy-gateway")
    assert gw["spec"]["replicas"] >= 2
    pod = gw["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["COMFY_JOBS_WORKER"]["value"] == "0"
    ing_host = [d for d in docs if d["kind"] == "Ingress"][0]["spec"]["rules"][0]["host"]
    assert env["AUTH_PROXY_ALLOWED_HOSTS"]["value"] == ing_host  # else the gateway answers 421
    assert env["COMFY_JOBS_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "comfy-db", "key": "url"}
    assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v or "ephemeral" in v]
    assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
    svc = named(docs, "Service", "comfy-stack")
    assert svc["spec"]["selector"] == gw["spec"]["template"]["metadata"]["labels"]
    ing = [d for d in docs if d["kind"] == "Ingress"]
    assert (
        ing and ing[0]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "comfy-stack"
    )
    assert named(docs, "PodDisruptionBudget", "comfy-gateway")["spec"]["minAvailable"] >= 1


def test_workers_drain_a_video_job_before_they_stop(rendered):
    _, _, docs = rendered
    worker = named(docs, "Deployment", "comfy-worker")
    pod = worker["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    cmd = c["lifecycle"]["preStop"]["exec"]["command"]
    assert cmd[:2] == ["comfyctl", "drain"]
    drain_s = float(cmd[cmd.index("--timeout") + 1])
    assert drain_s >= 1800  # a 30-minute video job finishes
    assert pod["terminationGracePeriodSeconds"] > drain_s
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e for e in c["env"]}
    assert env["COMFY_WORKER_URL"]["value"] == "http://$(POD_IP):8188"
    assert env["COMFY_JOBS_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["COMFY_WORKER_MODELS_DIR"]["value"] == "/data/models"
    assert env["COMFY_OUTPUTS_TO"]["value"].startswith("oss://")
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert named(docs, "PodDisruptionBudget", "comfy-worker")["spec"]["maxUnavailable"] == 1
    # may annotate pods (pod-deletion-cost), nothing more
    role = named(docs, "Role", "comfy-worker-pod-cost")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}]
    assert pod["serviceAccountName"] == "comfy-worker"


def test_keda_scales_the_workers_on_queue_depth(rendered):
    _, _, docs = rendered
    so = named(docs, "ScaledObject", "comfy-worker")["spec"]
    assert so["scaleTargetRef"]["name"] == "comfy-worker"
    assert 1 <= so["minReplicaCount"] < so["maxReplicaCount"]
    (trigger,) = so["triggers"]
    assert trigger["type"] == "postgresql" and "FROM jobs" in trigger["metadata"]["query"]
    assert "'queued'" in trigger["metadata"]["query"]
    auth = named(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "connection", "name": "comfy-db", "key": "url"}]


def test_every_pod_is_unprivileged_and_no_secret_is_inline(rendered):
    _, text, docs = rendered
    assert not [d for d in docs if d["kind"] == "Secret"], "Secrets are created by the user"
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
            for e in c.get("env", []):
                if any(w in e["name"] for w in ("PASSWORD", "SECRET", "DATABASE_URL")) and not e[
                    "name"
                ].endswith("_FILE"):
                    assert "value" not in e, f"{d['metadata']['name']}: {e['name']} must come from a Secret"


def test_the_trial_database_is_one_statefulset_only_in_the_trial_overlay():
    plain = [d for d in yaml.safe_load_all(render("ack-gpu-scale")) if d]
    assert not [d for d in plain if d["kind"] == "StatefulSet"]
    trial = [d for d in yaml.safe_load_all(render("ack-gpu-scale-trial")) if d]
    pg = named(trial, "StatefulSet", "comfy-postgres")
    assert pg["spec"]["replicas"] == 1
    assert named(trial, "Service", "comfy-postgres")["spec"]["ports"][0]["port"] == 5432
