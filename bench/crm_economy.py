"""CRM economy: the CRM's own API requests per synced change, per echo, per duplicate, per no-op, with a
connector other than the REST contract (`LocalStack(connector=...)`: Dataverse and Salesforce).

Counted at the source, the CRM emulator's request log (every Web API request the app sends), beside the
Graph and Table counts of bench.economy's Meter. Phases run one after another on one stack, each waiting
for the queues to drain and the CRM's webhooks to be answered:

1. synced create, M365 -> CRM: events created in Outlook, the CRM's notifications (Dataverse's webhook,
   Salesforce's outbound message) switched off, so the echo of our own CRM writes is measured on its own
   in phase 2;
2. echo: one hint per record of phase 1 (a CrmChange on the queue, as a webhook or the sweep makes it);
3. duplicate: every Graph notification of phase 1, delivered again;
4. no-op: each event PATCHed with the subject it already has;
5. synced update, M365 -> CRM: a new subject on each event (webhooks on: includes its CRM echo);
6. synced create, CRM -> M365: records made by a CRM user (includes the echoes both ways);
7. synced update, CRM -> M365, every webhook delivered twice: a CRM user's edit of each record of phase 6.

A connector is one `CrmSide` in `SIDES`: how to reach its emulator in the stack and what a CRM user does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from bench.common import StorageCounter, wait_idle, wait_until
from bench.economy import MAILBOXES, Meter, create_events, replay, set_subjects
from devstack.run import dataverse_webhook, salesforce_outbound_url
from devstack.stack import CRM_KEY, CRM_SECRET, LocalStack
from sync_core.adapters.storage.core import CHANGES_QUEUE
from sync_core.domain.messages import CrmChange, encode
from sync_core.domain.model import Appointment, Attendee, Person

EXTERNAL = "megan@fabrikam.example"


@dataclass(frozen=True)
class CrmSide:
    """One connector's CRM emulator in a LocalStack: its request log and rows, its webhooks, a CRM user."""

    emulator: Callable[[LocalStack], Any]  # has .requests (entries with .method), .user_create, .user_update
    rows: Callable[[Any], list[dict[str, Any]]]  # every record: {"id", "subject"}
    webhooks: Callable[[LocalStack, bool], None]  # deliver (True) or drop (False) the CRM's notifications
    duplicate: Callable[[Any, bool], None]  # deliver each notification twice
    settle: Callable[[Any], None]  # until every notification so far was answered
    book: Callable[[Any, str, str], None]  # (emulator, id, user): what makes a new record pushed (L1)


def _dataverse_webhooks(stack: LocalStack, on: bool) -> None:
    if on:
        stack.dataverse.register_webhook(
            *dataverse_webhook(stack.settings["PUBLIC_BASE_URL"], CRM_KEY, CRM_SECRET)
        )
    else:
        stack.dataverse.register_webhook(None)


DATAVERSE = CrmSide(
    emulator=lambda stack: stack.dataverse,
    rows=lambda emu: [
        {"id": r["activityid"], "subject": str(r.get("subject") or "")} for r in emu.appointments()
    ],
    webhooks=_dataverse_webhooks,
    duplicate=lambda emu, on: emu.duplicate_webhooks(on),
    settle=lambda emu: emu.wait_for_webhooks(30),
    # A new row is Open; saving it in the app books it: Scheduled, Busy (appointment.md StateCode 3).
    book=lambda emu, crm_id, user: emu.user_update(crm_id, statecode=3, statuscode=5, updated_by=user),
)


def _salesforce_messages(stack: LocalStack, on: bool) -> None:
    url = salesforce_outbound_url(stack.settings["PUBLIC_BASE_URL"], CRM_KEY)
    stack.salesforce.outbound.endpoint = url if on else None


SALESFORCE = CrmSide(
    emulator=lambda stack: stack.salesforce,
    rows=lambda emu: [{"id": r["Id"], "subject": str(r.get("Subject") or "")} for r in emu.events()],
    webhooks=_salesforce_messages,  # the outbound message on Event
    duplicate=lambda emu, on: setattr(emu.outbound, "duplicate", on),
    settle=lambda emu: emu.outbound.wait_idle(30),
    book=lambda emu, crm_id, user: None,  # an Event has no status to book
)
SIDES: dict[str, CrmSide] = {"dataverse": DATAVERSE, "salesforce": SALESFORCE}


def _hint(connection: str, crm_ids: list[str]) -> None:
    """One CrmChange per record on the live queue: what the CRM's webhook (or the sweep) makes of a change."""
    now = datetime.now(UTC)
    queue = QueueClient.from_connection_string(
        connection, CHANGES_QUEUE, message_encode_policy=TextBase64EncodePolicy()
    )
    with queue:
        for crm_id in crm_ids:
            change = CrmChange(
                correlation_id=f"bench-{uuid.uuid4().hex[:16]}",
                received_at=now,
                crm_id=crm_id,
                change_type="updated",
            )
            queue.send_message(encode(change))


def run(count: int, connector: str = "dataverse") -> list[dict[str, Any]]:
    side = SIDES[connector]
    counter = StorageCounter()
    counter.install()
    stack = LocalStack(connector=connector).start()
    emu = side.emulator(stack)
    meter = Meter(stack, counter, crm_log=lambda: emu.requests)
    connection = stack.settings["AzureWebJobsStorage"]
    tag = uuid.uuid4().hex[:6]
    day = (datetime.now(UTC) + timedelta(days=4)).date().isoformat()
    created: list[tuple[str, str]] = []
    rows: list[dict[str, Any]] = []

    def mine(prefix: str) -> list[dict[str, Any]]:
        return [r for r in side.rows(emu) if r["subject"].startswith(f"{prefix} {tag} ")]

    def labelled(row: dict[str, Any]) -> dict[str, Any]:
        return {"connector": connector, **row}

    try:
        wait_idle(connection)
        side.settle(emu)
        g = stack.graph_http()
        side.webhooks(stack, False)
        n0 = len(stack.graph.notifications_sent)

        def create() -> None:
            create_events(g, tag, day, count, created)
            wait_until(lambda: len(mine("eco")) >= count, 60)

        rows.append(meter.measure("synced create M365->CRM", count, create))
        notifications = [n for n in stack.graph.notifications_sent[n0:] if n.get("kind") != "lifecycle"]
        records = [r["id"] for r in mine("eco")]
        rows.append(
            meter.measure("echo (our CRM write read back)", len(records), lambda: _hint(connection, records))
        )
        side.webhooks(stack, True)

        def duplicate() -> None:
            replay(stack, notifications)

        rows.append(meter.measure("duplicate Graph notification", len(notifications), duplicate))

        def no_op() -> None:
            set_subjects(g, created, tag)
            wait_until(lambda: len(stack.graph.notifications_sent) >= n0 + len(notifications) + count, 10)
            side.settle(emu)

        rows.append(meter.measure("no-op (PATCH with equal subject)", len(created), no_op))

        def update() -> None:
            set_subjects(g, created, tag, " moved")
            wait_until(lambda: sum(r["subject"].endswith(" moved") for r in mine("eco")) >= count, 60)
            side.settle(emu)

        rows.append(meter.measure("synced update M365->CRM (+ its echo)", count, update))

        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=5)

        def crm_create() -> None:
            for i in range(count):
                organizer = MAILBOXES[i % len(MAILBOXES)]
                appt = Appointment(
                    subject=f"eco-crm {tag} {i}",
                    start=start + timedelta(minutes=i),
                    end=start + timedelta(minutes=i + 30),
                    organizer=Person(email=organizer),
                    attendees=(Attendee(email=EXTERNAL),),
                )
                made = emu.user_create(appt, created_by=organizer)
                side.book(emu, str(made["id"]), organizer)
            wait_until(lambda: _graph_subjects(stack, f"eco-crm {tag} ") >= count, 60)
            side.settle(emu)

        rows.append(meter.measure("synced create CRM->M365 (+ its echo)", count, crm_create))

        def crm_update() -> None:
            side.duplicate(emu, True)
            try:
                for i, record in enumerate(mine("eco-crm")):
                    emu.user_update(record["id"], subject=f"eco-crm {tag} {i} moved", updated_by=MAILBOXES[0])
                side.settle(emu)
            finally:
                side.duplicate(emu, False)
            wait_until(lambda: _graph_subjects(stack, f"eco-crm {tag} ", " moved") >= count, 60)
            side.settle(emu)

        rows.append(meter.measure("synced update CRM->M365, webhook delivered twice", count, crm_update))
        g.close()
        return [labelled(r) for r in rows]
    finally:
        stack.stop()


def _graph_subjects(stack: LocalStack, prefix: str, suffix: str = "") -> int:
    """Organizer events in Outlook whose subject starts with `prefix` (and ends with `suffix`)."""
    return sum(
        1
        for events in stack.graph.dump_events().values()
        for e in events
        if str(e.get("subject")).startswith(prefix)
        and str(e.get("subject")).endswith(suffix)
        and e.get("isOrganizer", True)
    )
