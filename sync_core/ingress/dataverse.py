"""Front door for Dataverse webhooks: the key, the RemoteExecutionContext, de-duplication, then one CrmChange
on the queue as a hint (the worker re-reads the appointment). I/O side.

Dataverse waits for the answer (60 s at most) and tries again once, only after 502, 503 or 504
(use-webhooks.md, "Troubleshoot WebHook registrations"): so nothing here but checks and one queue send.
Answers: 401 bad or missing key; 400 not a RemoteExecutionContext; 413 too large; 422 a context for another
table or message (a step registered wrongly; Dataverse records it as a failed System Job); 404 when
CRM_CONNECTOR is not dataverse; 202 queued; 200 a delivery already queued (nothing queued again).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime

from sync_core.adapters import telemetry
from sync_core.adapters.crm.dataverse_webhook import authenticate, parse_context
from sync_core.domain.messages import CrmChange, encode
from sync_core.errors import SyncError
from sync_core.ingress.crm import Replays
from sync_core.ingress.graph import Reply
from sync_core.ports.crm_webhook import WebhookRejected

log = logging.getLogger("sync_core.dataverse_ingress")

CONNECTOR = "dataverse"
DEDUPE_PREFIX = b"dataverse:"
FUTURE_SLACK_SECONDS = 300  # a Dataverse clock this far ahead of ours is not believed for bucketing
_HOUR = 3600


def _refused(exc: WebhookRejected) -> Reply:
    log.warning("Dataverse webhook refused (%d): %s", exc.status, exc.reason)
    return Reply(exc.status, json.dumps({"error": exc.reason}))


def _unavailable(what: str, exc: Exception) -> Reply:
    """503: Dataverse tries again once, and only after 502, 503 or 504 (a 500 would lose the change until
    the CRM sweep reads it from the change feed)."""
    log.error("Dataverse webhook: %s: %s", what, exc)
    return Reply(503, json.dumps({"error": f"{what}; try again"}))


def dedupe_moment(occurred: int | None, now: datetime) -> int:
    """The moment the de-duplication record is filed under (ReplayGuard buckets and purges by hour): the
    operation's own OperationCreatedOn, the same in every delivery of it; without a believable one, the
    start of the current hour (a retry a second later still finds the record)."""
    current = int(now.timestamp())
    if occurred is None or occurred > current + FUTURE_SLACK_SECONDS:
        return current - current % _HOUR
    return occurred


async def handle_dataverse_webhook(
    headers: Mapping[str, str],
    body: bytes,
    *,
    connector: str,
    secrets: Sequence[str],
    enqueue: Callable[[str], Awaitable[None]],
    replays: Replays,
    now: datetime,
) -> Reply:
    if connector != CONNECTOR:
        return _refused(
            WebhookRejected(
                404, f"Dataverse webhooks are taken only with CRM_CONNECTOR=dataverse (not {connector})"
            )
        )
    try:
        authenticate(headers, secrets)
        notice = parse_context(body)
    except WebhookRejected as exc:
        return _refused(exc)
    moment = dedupe_moment(notice.occurred_seconds, now)
    key = DEDUPE_PREFIX + notice.dedupe_key.encode("utf-8")
    try:
        first = await replays.first_time(moment, key, now)
    except SyncError as exc:
        return _unavailable("could not check for a duplicate", exc)
    if not first:
        log.info(
            "Dataverse webhook %s of %s already queued (%s): not queued again",
            notice.message,
            notice.appointment_id,
            notice.dedupe_key,
        )
        telemetry.notifications_received("crm", accepted=0, discarded=1)
        return Reply(200, json.dumps({"accepted": 0, "duplicate": True}))
    message = encode(
        CrmChange(
            correlation_id=telemetry.new_correlation_id(),
            received_at=now,
            crm_id=notice.appointment_id,
            change_type=notice.change_type,
        )
    )
    try:
        await enqueue(message)
    except SyncError as exc:
        # Not queued: Dataverse's retry must not be taken for a duplicate.
        await replays.forget(moment, key)
        return _unavailable("could not queue the change", exc)
    log.info(
        "Dataverse webhook %s of appointment %s queued (Dataverse correlation %s)",
        notice.message,
        notice.appointment_id,
        notice.correlation_id,
    )
    telemetry.notifications_received("crm", accepted=1)
    return Reply(202, json.dumps({"accepted": 1}))
