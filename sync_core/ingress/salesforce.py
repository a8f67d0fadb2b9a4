"""Front door for Salesforce outbound messages: the organization, one hint CrmChange per Event notification
(de-duplicated by notification id), then the Ack, only once all are queued (Salesforce retries until it has
one). I/O side. Answers: docs/connectors/salesforce.md, "Push (outbound messages)".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sync_core.adapters import telemetry
from sync_core.adapters.crm.salesforce_outbound import (
    ack,
    authorize,
    events_only,
    fault,
    parse_message,
    short_id,
)
from sync_core.domain.messages import CrmChange, encode
from sync_core.errors import SyncError
from sync_core.ingress.crm import Replays
from sync_core.ingress.dataverse import dedupe_moment
from sync_core.ingress.graph import Reply
from sync_core.ports.crm_webhook import WebhookRejected

log = logging.getLogger("sync_core.salesforce_ingress")

CONNECTOR = "salesforce"
DEDUPE_PREFIX = b"salesforce:"
CONTENT_TYPE = "text/xml"  # the Functions host adds "; charset=utf-8" to a text/ mimetype


def _refused(exc: WebhookRejected) -> Reply:
    log.warning("Salesforce outbound message refused (%d): %s", exc.status, exc.reason)
    return Reply(exc.status, fault(exc.reason), CONTENT_TYPE)


def _unavailable(what: str, exc: Exception) -> Reply:
    """503: not acknowledged, so Salesforce sends the message again (and the sweep reads the change too)."""
    log.error("Salesforce outbound message: %s: %s", what, exc)
    return Reply(503, fault(f"{what}; try again", server=True), CONTENT_TYPE)


async def handle_salesforce_outbound(
    body: bytes,
    *,
    connector: str,
    org_id: str | None,
    enqueue: Callable[[str], Awaitable[None]],
    replays: Replays,
    now: datetime,
) -> Reply:
    """200 Ack; 403 another organization or SALESFORCE_ORG_ID unset; 400 not an outbound message; 413 too
    large; 422 about another object; 404 CRM_CONNECTOR is not salesforce; 503 the queue or the
    de-duplication table unreachable (no Ack: Salesforce sends it again). All SOAP, text/xml."""
    if connector != CONNECTOR:
        return _refused(
            WebhookRejected(
                404,
                f"outbound messages are taken only with CRM_CONNECTOR=salesforce (not {connector})",
            )
        )
    try:
        message = parse_message(body)
        authorize(message, org_id)
        events_only(message)
    except WebhookRejected as exc:
        return _refused(exc)
    # A notification id is the same in every retry of it, and retries come within minutes at first; the
    # record is filed under the current hour (a retry in the next hour is queued again: a harmless hint).
    moment = dedupe_moment(None, now)
    org = short_id(message.organization_id)
    queued = duplicates = 0
    for notification in message.notifications:
        if notification.record_id is None:  # deleted before it was sent: the change feed has the deletion
            log.info("Salesforce notification %s carries no record", notification.notification_id)
            continue
        key = DEDUPE_PREFIX + f"{org}:{notification.notification_id}".encode()
        try:
            first = await replays.first_time(moment, key, now)
        except SyncError as exc:
            return _unavailable("could not check for a duplicate", exc)
        if not first:
            duplicates += 1
            continue
        change = CrmChange(
            correlation_id=telemetry.new_correlation_id(),
            received_at=now,
            crm_id=notification.record_id,
            change_type="updated",  # created or edited: the worker reads which
        )
        try:
            await enqueue(encode(change))
        except SyncError as exc:
            await replays.forget(moment, key)  # not queued: Salesforce's retry must not be a duplicate
            return _unavailable("could not queue the change", exc)
        queued += 1
    log.info(
        "Salesforce outbound message (action %s): %d queued, %d already queued",
        message.action_id,
        queued,
        duplicates,
    )
    telemetry.notifications_received("crm", accepted=queued, discarded=duplicates)
    return Reply(200, ack(), CONTENT_TYPE)
