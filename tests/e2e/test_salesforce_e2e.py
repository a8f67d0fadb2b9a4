"""Microsoft 365 <-> Salesforce end to end on the real stack (CRM_CONNECTOR=salesforce): both directions, the
outbound message (duplicated, from another org, echoing our writes), a cancel, a deletion and 403
REQUEST_LIMIT_EXCEEDED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.data.tables.aio import TableClient

from devstack.azurite import Azurite
from devstack.salesforce_emulator import INTEGRATION_USER_ID, ORG_ID
from devstack.salesforce_emulator.outbound import soap_message
from devstack.stack import LocalStack
from sync_core.adapters.storage.core import POISON_QUEUE, SUBSCRIPTIONS_TABLE
from sync_core.adapters.storage.replays import fingerprint, partition
from sync_core.domain.model import Appointment, Attendee, Person
from sync_core.ingress.dataverse import dedupe_moment
from sync_core.ingress.salesforce import DEDUPE_PREFIX
from tests.e2e.conftest import settle, started, wait_for
from tests.e2e.outlook import ADELE, BRUNO, MEGAN, events, post, pricing_meeting

pytestmark = pytest.mark.e2e

BASE = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=20)
WAIT = 20.0
EVENT_WRITES = ("POST", "PATCH", "DELETE")


@pytest.fixture(scope="module")
def stack(azurite: Azurite) -> Iterator[LocalStack]:
    yield from started(LocalStack(azurite=azurite, connector="salesforce"))


def _at(day: int, hour: float) -> datetime:
    return BASE + timedelta(days=day, hours=hour)


def _sf_events(stack: LocalStack, subject: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{stack.salesforce.base_url}/_emulator/events", timeout=10)
    r.raise_for_status()
    return [e for e in r.json() if e.get("Subject") == subject]


def _user_edit(stack: LocalStack, event_id: str, **fields: Any) -> None:
    """A Salesforce user's edit, through the emulator's user route (over HTTP, as `make run` offers)."""
    r = httpx.patch(f"{stack.salesforce.base_url}/_emulator/user/events/{event_id}", json=fields, timeout=10)
    r.raise_for_status()


def _people(stack: LocalStack, obj: str) -> dict[str, str]:
    """Email -> Id of the seeded Users or Contacts."""
    rows = stack.salesforce._call(lambda: [dict(r) for r in stack.salesforce.store.objects[obj].values()])
    return {str(r["Email"]).lower(): str(r["Id"]) for r in rows if r.get("Email")}


def _delivered(stack: LocalStack, record_id: str) -> list[tuple[str, int | None, bool]]:
    """(notification id, status, acknowledged) of each outbound message POST about this Event."""
    return [
        (d.notification_id, d.status, d.acked)
        for d in stack.salesforce.outbound.deliveries
        if d.record_id == record_id
    ]


def _event_writes(stack: LocalStack) -> int:
    return sum(
        1 for r in stack.salesforce.requests if r.method in EVENT_WRITES and "/sobjects/Event" in r.path
    )


def _settle(stack: LocalStack) -> None:
    """Until nothing moves: every outbound message acknowledged or given up and the queues drained, twice
    in a row."""
    settle(stack, stack.salesforce.outbound.wait_idle, WAIT)


def _made_by_adele(stack: LocalStack, subject: str, day: int, *attendees: Attendee) -> dict[str, Any]:
    """A Salesforce user (Adele) makes an Event from 9 to 10 on `day`; its row."""
    return stack.salesforce.user_create(
        Appointment(
            subject=subject,
            start=_at(day, 9),
            end=_at(day, 10),
            organizer=Person(email=ADELE, name="Adele Vance"),
            attendees=attendees,
        ),
        created_by=ADELE,
    )


def _sweep(stack: LocalStack) -> None:
    stack.host.invoke_timer("reconcile_sweep").result(timeout=60)


def test_an_outlook_meeting_becomes_an_event_a_salesforce_edit_and_cancel_reach_outlook(
    stack: LocalStack,
) -> None:
    post(stack, ADELE, pricing_meeting("Fabrikam pricing", _at(1, 10), _at(1, 11)))

    # Outlook -> Salesforce: one Event owned by Adele, its invitees the user and the contact.
    row = wait_for(lambda: _sf_events(stack, "Fabrikam pricing"), timeout=WAIT, what="the Event")[0]
    assert len(_sf_events(stack, "Fabrikam pricing")) == 1
    users, contacts = _people(stack, "User"), _people(stack, "Contact")
    assert row["OwnerId"] == users[ADELE] and row["CreatedById"] == INTEGRATION_USER_ID
    assert row["StartDateTime"].startswith(_at(1, 10).strftime("%Y-%m-%dT%H:%M:%S"))
    event_id = row["Id"]
    invited = {r["RelationId"] for r in stack.salesforce.relations(event_id)}
    assert {users[BRUNO], contacts[MEGAN]} <= invited

    # Our create's own outbound message (an echo) is acknowledged, queued, and writes nothing back.
    _settle(stack)
    assert any(acked for _, _, acked in _delivered(stack, event_id)), "the echo came as an outbound message"
    writes, change_key = _event_writes(stack), events(stack, ADELE, "Fabrikam pricing")[0]["changeKey"]
    stamp = _sf_events(stack, "Fabrikam pricing")[0]["SystemModstamp"]
    _settle(stack)
    assert (
        _event_writes(stack) == writes and _sf_events(stack, "Fabrikam pricing")[0]["SystemModstamp"] == stamp
    )
    assert events(stack, ADELE, "Fabrikam pricing")[0]["changeKey"] == change_key

    # A Salesforce user's edit -> the outbound message -> the worker -> Outlook.
    before = len(_delivered(stack, event_id))
    _user_edit(
        stack,
        event_id,
        Subject="Fabrikam pricing (moved)",
        StartDateTime=_at(1, 14).isoformat(),
        EndDateTime=_at(1, 15).isoformat(),
        updated_by=ADELE,
    )
    moved = wait_for(lambda: events(stack, ADELE, "Fabrikam pricing (moved)"), timeout=WAIT, what="the edit")
    assert moved[0]["start"]["dateTime"].startswith(_at(1, 14).strftime("%Y-%m-%dT%H:%M"))
    assert (None, 200, True) in [(None, s, a) for _, s, a in _delivered(stack, event_id)[before:]]
    wait_for(lambda: events(stack, BRUNO, "Fabrikam pricing (moved)"), timeout=WAIT)  # Exchange updated
    _settle(stack)

    # A cancel in Salesforce (our msync_Status__c) -> the Outlook meeting is cancelled, the attendees told.
    _user_edit(stack, event_id, msync_Status__c="cancelled", updated_by=ADELE)
    wait_for(lambda: events(stack, ADELE, "Fabrikam pricing (moved)") == [], timeout=WAIT, what="the cancel")
    told = wait_for(
        lambda: [e for e in events(stack, BRUNO, "Canceled: Fabrikam pricing (moved)") if e["isCancelled"]],
        timeout=WAIT,
    )
    assert len(told) == 1
    assert _sf_events(stack, "Fabrikam pricing (moved)")[0]["msync_Status__c"] == "cancelled"
    _settle(stack)


def test_a_salesforce_event_sent_twice_is_one_meeting_and_its_deletion_cancels_it(
    stack: LocalStack,
) -> None:
    stack.salesforce.outbound.duplicate = True
    try:
        made = _made_by_adele(
            stack, "Contoso x Fabrikam kickoff", 2, Attendee(email=BRUNO, name="Bruno Costa")
        )
        event = wait_for(lambda: events(stack, ADELE, "Contoso x Fabrikam kickoff"), timeout=WAIT)
        assert stack.salesforce.outbound.wait_idle(WAIT)
    finally:
        stack.salesforce.outbound.duplicate = False
    event_id = made["Id"]
    first = _delivered(stack, event_id)[0][0]
    copies = [(s, a) for n, s, a in _delivered(stack, event_id) if n == first]
    assert copies == [(200, True), (200, True)], "one notification delivered twice, both acknowledged"
    assert asyncio.run(_dedupe_rows(stack, first)) == 1, "recorded once: the second copy was not queued"
    assert [a["emailAddress"]["address"] for a in event[0]["attendees"]] == [BRUNO]
    _settle(stack)
    assert len(events(stack, ADELE, "Contoso x Fabrikam kickoff")) == 1
    assert len(_sf_events(stack, "Contoso x Fabrikam kickoff")) == 1

    # Deleted in Salesforce: no outbound message (flows and workflow rules fire on create and edit); the
    # sweep reads the deletion from the change feed (/queryAll, IsDeleted) after the cursor an earlier
    # sweep left (a first read has no cursor, and reports no deletions), and the meeting is cancelled.
    _sweep(stack)
    _settle(stack)
    sent = len(stack.salesforce.outbound.deliveries)
    stack.salesforce.user_delete(event_id)
    _sweep(stack)
    wait_for(
        lambda: events(stack, ADELE, "Contoso x Fabrikam kickoff") == [], timeout=WAIT, what="the cancel"
    )
    assert len(stack.salesforce.outbound.deliveries) == sent
    _settle(stack)


async def _dedupe_rows(stack: LocalStack, notification_id: str) -> int:
    """Rows of the replay guard (bootstrap: in SyncSubscriptions) recording this notification."""
    key = DEDUPE_PREFIX + f"{ORG_ID[:15]}:{notification_id}".encode()
    connection = stack.settings["AzureWebJobsStorage"]
    now = datetime.now(UTC)
    found = 0
    async with TableClient.from_connection_string(connection, SUBSCRIPTIONS_TABLE) as table:
        for hour in (now - timedelta(hours=1), now):
            moment = dedupe_moment(None, hour)
            pk, rk = partition(moment), fingerprint(moment, key)
            found += len(
                [e async for e in table.query_entities(f"PartitionKey eq '{pk}' and RowKey eq '{rk}'")]
            )
    return found


def test_an_outbound_message_of_another_organization_is_refused_403(stack: LocalStack) -> None:
    body = soap_message("00D000000000002EAA", [("04l000000000999AAA", "Event", {"Id": "00U000000000999AAA"})])
    answer = stack.post_to_ingress(
        "crm/salesforce/webhook", body, {"Content-Type": "text/xml; charset=utf-8"}
    )
    assert answer.status_code == 403 and "OrganizationId" in answer.text and "<Ack>" not in answer.text
    assert answer.headers["Content-Type"] == "text/xml; charset=utf-8"  # a SOAP fault
    no_key = httpx.post(f"{stack.host.base_url}/api/crm/salesforce/webhook", content=body, timeout=10)
    assert no_key.status_code == 401  # the host's own check: no function key


def test_403_request_limit_exceeded_is_throttling_and_the_edit_still_reaches_outlook(
    stack: LocalStack,
) -> None:
    """Last in the module: the throttled message waits 300 s invisible in the queue (the allocation refills
    over 24 hours, and Salesforce sends no Retry-After), so the queues do not drain while it waits."""
    made = _made_by_adele(stack, "Board prep", 3)
    wait_for(lambda: events(stack, ADELE, "Board prep"), timeout=WAIT)
    _settle(stack)

    stack.salesforce.set_faults(limit_exceeded=1)  # the worker's read of the edited Event: 403
    _user_edit(stack, made["Id"], Subject="Board prep (moved)", updated_by=ADELE)
    wait_for(
        lambda: any(r.status == 403 for r in stack.salesforce.requests), timeout=WAIT, what="the 403 answer"
    )
    assert events(stack, ADELE, "Board prep"), "not synced while throttled"
    # The allocation is back: the sweep reads the change feed and the edit arrives; nothing was poisoned.
    _sweep(stack)
    wait_for(
        lambda: events(stack, ADELE, "Board prep (moved)"), timeout=WAIT, what="the edit after throttling"
    )
    assert _poisoned(stack) == 0


def _poisoned(stack: LocalStack) -> int:
    from azure.storage.queue import QueueClient

    client = QueueClient.from_connection_string(stack.settings["AzureWebJobsStorage"], POISON_QUEUE)
    try:
        return int(client.get_queue_properties().approximate_message_count or 0)
    finally:
        client.close()
