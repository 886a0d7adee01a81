"""A worker pod tells Kubernetes which pods to remove first on scale-in: itself while idle.

The ReplicaSet controller deletes the pods with the lowest
`controller.kubernetes.io/pod-deletion-cost` first
(https://kubernetes.io/docs/reference/labels-annotations-taints/#pod-deletion-cost), so the
worker sets it to IDLE_COST when it holds no job and BUSY_COST while it runs one. KEDA's
scale-in then takes idle pods, and a busy one only when every pod is busy (it drains first).
One merge-patch of the pod's own annotation through the API server, with the pod's service
account (deploy/k8s/overlays/ack-gpu-scale/rbac.yaml allows get and patch on pods); off when
the worker does not run in a pod (COMFY_POD_NAME unset).
"""

from __future__ import annotations

import json
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp

log = logging.getLogger(__name__)
ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
IDLE_COST, BUSY_COST = -1000, 1000
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class PodRef:
    api: str  # https://KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT
    namespace: str
    name: str
    token_file: Path = SERVICE_ACCOUNT / "token"
    ca_file: Path | None = SERVICE_ACCOUNT / "ca.crt"


class PodCost:
    def __init__(self, pod: PodRef, session: aiohttp.ClientSession):
        self.pod, self.session = pod, session
        self.current: int | None = None
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(pod.ca_file))
            if pod.ca_file and pod.api.startswith("https:")
            else True
        )

    async def set(self, busy: bool) -> None:
        cost = BUSY_COST if busy else IDLE_COST
        if cost == self.current:
            return
        url = f"{self.pod.api}/api/v1/namespaces/{self.pod.namespace}/pods/{self.pod.name}"
        try:
            token = self.pod.token_file.read_text().strip()  # the kubelet rotates it: read each time
            async with self.session.patch(
                url,
                data=json.dumps({"metadata": {"annotations": {ANNOTATION: str(cost)}}}),
                ssl=self._ssl,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/merge-patch+json"},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as r:
                if r.status >= 300:
                    raise RuntimeError(f"{r.status} {(await r.text())[:200]}")
            self.current = cost
        except (OSError, aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
            # Scale-in then picks pods its own way; the drain still protects the job.
            log.warning("could not set %s on pod %s: %s", ANNOTATION, self.pod.name, exc)
