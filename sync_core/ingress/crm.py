"""Front door for CRM webhooks: signature, replay window, validation, then one queue message per event. I/O
side.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from sync_core.adapters import telemetry
from sync_core.domain.messages import CrmChange, encode
from sync_core.ingress.graph import Reply
from sync_core.ports.crm_webhook import WebhookRejected, parse_events, verify_signature

log = logging.getLogger("sync_core.crm_ingress")

REPLAY_REASON = "replayed request: this signed timestamp and body were already accepted"

_CHANGE_TYPES = {
    "appointment.created": "created",
    "appointment.updated": "updated",
    "appointment.cancelled": "cancelled",
    "appointment.deleted": "deleted",
}


class Replays(Protocol):
    """Remembers accepted requests (crm_replay.ReplayGuard): a second delivery of one is a replay."""

    async def first_time(self, signed_at: int, body: bytes, now: datetime) -> bool: ...

    async def forget(self, signed_at: int, body: bytes) -> None: ...


def _refused(exc: WebhookRejected) -> Reply:
    log.warning("CRM webhook refused (%d): %s", exc.status, exc.reason)
    return Reply(exc.status, json.dumps({"error": exc.reason}))


async def handle_crm_webhook(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: Sequence[str],
    enqueue: Callable[[str], Awaitable[None]],
    replays: Replays,
    now: datetime,
) -> Reply:
    try:
        signed_at = verify_signature(headers, body, secrets, now.timestamp())
        events = parse_events(body)
    except WebhookRejected as exc:
        return _refused(exc)
    # Only an authentic, well-formed request is remembered: junk cannot fill the table.
    if not await replays.first_time(signed_at, body, now):
        return _refused(WebhookRejected(401, REPLAY_REASON))
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
    try:
        await asyncio.gather(*(enqueue(m) for m in messages))
    except Exception:
        # Not queued (or only partly): the sender's retry must not be refused as a replay. Events are
        # hints and the worker reads the record, so a partly queued batch sent again is harmless.
        await replays.forget(signed_at, body)
        raise
    return Reply(202, json.dumps({"accepted": len(messages)}))
