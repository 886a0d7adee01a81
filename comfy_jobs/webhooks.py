"""Optional webhooks on terminal job states, signed per the Standard Webhooks scheme
(https://www.standardwebhooks.com: `webhook-id`, `webhook-timestamp`, `webhook-signature`
= v1,base64(HMAC-SHA256(secret, "id.timestamp.body")), with the `standardwebhooks`
library). Deliveries sit in the ledger's outbox, written in the same transaction as the
state change, so a crash loses none; they are retried with backoff and never hold up a job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timezone

import aiohttp
from standardwebhooks import Webhook

log = logging.getLogger(__name__)
MAX_TRIES = 8
BACKOFF_S = 5.0  # then 10, 20, ... (about 10 minutes in all)


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z") if ts else None


class Sender:
    def __init__(self, ledger, url: str, secret: str, session: aiohttp.ClientSession, metrics):
        self.ledger, self.url, self.session, self.metrics = ledger, url, session, metrics
        self.signer = Webhook(secret)
        self.wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                for d in await self.ledger.due_deliveries(time.time(), 20):
                    await self.deliver(d)
            except Exception:  # noqa: BLE001 - the outbox is retried on the next round
                log.exception("webhook outbox")
            try:
                await asyncio.wait_for(self.wake.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()

    async def payload(self, job_id: str, kind: str) -> dict:
        job = await self.ledger.get_job(job_id)
        data: dict[str, object] = {"id": job_id, "status": kind.removeprefix("job.")}
        if job is not None:
            data.update(
                status=job.status,
                created_at=iso(job.created_at),
                completed_at=iso(job.completed_at),
                error=job.error,
                outputs=[
                    {
                        "node_id": o.node_id,
                        "name": o.name,
                        "type": o.type,
                        "id": o.asset.id,
                        "hash": o.asset.hash,
                        "size_bytes": o.asset.size,
                        "content_type": o.asset.content_type,
                    }
                    for o in job.outputs
                ],
            )
        return {"type": kind, "timestamp": iso(time.time()), "data": data}

    async def deliver(self, d) -> None:
        body = json.dumps(await self.payload(d.job_id, d.body["type"]), separators=(",", ":"))
        msg_id = f"msg_{d.id}_{d.job_id}"  # the same on every retry, so receivers can de-duplicate
        now = datetime.now(timezone.utc)
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self.signer.sign(msg_id, now, body),
        }
        error = ""
        try:
            async with self.session.post(
                self.url, data=body.encode(), headers=headers, timeout=aiohttp.ClientTimeout(total=15)
            ) as r:
                if 200 <= r.status < 300:
                    await self.ledger.delivery_done(d.id, True, "", None)
                    return
                error = f"answered {r.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.metrics.webhook_failures += 1
        tries = d.attempts + 1
        retry_at = time.time() + BACKOFF_S * 2 ** (tries - 1) if tries < MAX_TRIES else None
        log.warning("webhook for job %s to %s %s (try %d of %d)", d.job_id, self.url, error, tries, MAX_TRIES)
        await self.ledger.delivery_done(d.id, False, error, retry_at)
