"""Front door for CRM webhooks: signature, replay window, validation, then one queue message per event.

Pure apart from the `enqueue` passed in. Bad signature or stale timestamp: 401; malformed: 400; too
large: 413; each with a reason and nothing enqueued. Valid: 202.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime

from sync_core import telemetry
from sync_core.crm_webhook import WebhookRejected, parse_events, verify_signature
from sync_core.ingress import Reply
from sync_core.messages import CrmChange, encode

log = logging.getLogger("sync_core.crm_ingress")

_CHANGE_TYPES = {
    "appointment.created": "created",
    "appointment.updated": "updated",
    "appointment.cancelled": "cancelled",
    "appointment.deleted": "deleted",
}


async def handle_crm_webhook(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: Sequence[str],
    enqueue: Callable[[str], Awaitable[None]],
    now: datetime,
) -> Reply:
    try:
        verify_signature(headers, body, secrets, now.timestamp())
        events = parse_events(body)
    except WebhookRejected as exc:
        log.warning("CRM webhook refused (%d): %s", exc.status, exc.reason)
        return Reply(exc.status, json.dumps({"error": exc.reason}))
    messages = [
        encode(
            CrmChange(
                correlation_id=telemetry.new_correlation_id(),
                received_at=now,
                crm_id=e.appointment_id,
                change_type=_CHANGE_TYPES[e.type],  # type: ignore[arg-type]
                version=e.version,
            )
        )
        for e in events
    ]
    telemetry.notifications_received("crm", accepted=len(messages))
    await asyncio.gather(*(enqueue(m) for m in messages))
    return Reply(202, json.dumps({"accepted": len(messages)}))
