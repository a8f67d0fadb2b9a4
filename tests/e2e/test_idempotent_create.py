"""Done-when of issue 4, end to end: a retried create never produces a second event (I3).

A booking made in the CRM emulator goes through the real stack (signed webhook -> ingress -> Azurite queue ->
worker -> Graph adapter) to the organiser's mailbox in the Graph emulator. The emulator saves the event and
loses its answer (`lose_response_count`); the create is sent again with the same transactionId, and Graph
either returns the first event or refuses the duplicate (`duplicate_transaction_status`, 409), when the
adapter finds the event by our tag. Either way: one event in the organiser's calendar, one mapping.
Faults are switched through the emulator's admin endpoint, for the organiser's mailbox only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from sync_core.adapters.graph.base import INLINE_RETRIES
from sync_core.adapters.graph.limits import Backoff
from sync_core.adapters.storage.core import MAPPINGS_TABLE, POISON_QUEUE, get_json
from sync_core.domain.model import Appointment, Attendee, Person
from tests.e2e.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e

ADELE = "adele@contoso.example"
MEGAN = "megan@fabrikam.example"
BASE = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=60)
WAIT = 30.0
INLINE_TRIES = max(INLINE_RETRIES, Backoff().attempts)  # every answer of one invocation lost


def _booking(subject: str, day: int) -> Appointment:
    start = BASE + timedelta(days=day, hours=10)
    return Appointment(
        subject=subject,
        start=start,
        end=start + timedelta(hours=1),
        organizer=Person(email=ADELE),
        attendees=(Attendee(email=MEGAN),),
    )


def _events(stack: Stack, subject: str) -> list[dict[str, Any]]:
    return [e for e in stack.graph.dump_events(ADELE).popitem()[1] if e["subject"] == subject]


def _creates(stack: Stack, subject: str) -> list[dict[str, Any]]:
    """The POSTs of this booking to the organiser's events, as the emulator received them."""
    return [
        r
        for r in stack.graph.requests
        if r["method"] == "POST"
        and r["path"].lower() == f"/users/{ADELE}/events"
        and isinstance(r["json"], dict)
        and r["json"].get("subject") == subject
    ]


def _meeting_rows(stack: Stack, crm_id: str) -> list[dict[str, Any]]:
    assert stack.azurite is not None
    with TableClient.from_connection_string(
        stack.azurite.connection_string, table_name=MAPPINGS_TABLE
    ) as table:
        rows = table.query_entities("RowKey eq 'meeting' and CrmId eq @crm", parameters={"crm": crm_id})
        return [dict(get_json(dict(r), "Data")) for r in rows]


def _queue_depth(stack: Stack, name: str) -> int:
    assert stack.azurite is not None
    client = QueueClient.from_connection_string(stack.azurite.connection_string, name)
    try:
        return int(client.get_queue_properties().approximate_message_count or 0)
    finally:
        client.close()


@pytest.fixture
def faults(stack: Stack) -> Iterator[Any]:
    """`faults(**FaultSpec)` for the organiser's mailbox through the admin endpoint; cleared afterwards."""
    admin = stack.graph.admin_url

    def set_faults(**spec: Any) -> None:
        httpx.post(f"{admin}/faults", json={"mailbox": ADELE, **spec}, timeout=10).raise_for_status()

    try:
        yield set_faults
    finally:
        httpx.delete(f"{admin}/faults", params={"mailbox": ADELE}, timeout=10).raise_for_status()


@pytest.mark.parametrize(
    ("lost", "duplicate_status", "day"),
    [
        pytest.param(1, 0, 1, id="retry-returns-the-event"),
        pytest.param(1, 409, 2, id="retry-refused-409"),
        pytest.param(INLINE_TRIES, 0, 3, id="every-inline-try-lost-the-queue-retries"),
    ],
)
def test_I3_a_crm_booking_whose_create_answer_is_lost_makes_one_event_and_one_mapping(
    stack: Stack, faults: Any, lost: int, duplicate_status: int, day: int
) -> None:
    subject = f"Lost answer {day}"
    faults(lose_response_count=lost, duplicate_transaction_status=duplicate_status)

    record = stack.crm.user_create(_booking(subject, day), created_by=ADELE)

    def mapped() -> list[dict[str, Any]]:
        return [m for m in _meeting_rows(stack, record["id"]) if m.get("graph_event_id")]

    mapping = wait_for(mapped, timeout=WAIT)[0]
    wait_for(
        lambda: _queue_depth(stack, "sync-changes") + _queue_depth(stack, "sync-bulk") == 0, timeout=WAIT
    )

    events = _events(stack, subject)
    assert len(events) == 1, events
    assert mapping["graph_event_id"] == events[0]["id"]
    assert mapping["organizer_mailbox"].lower() == ADELE
    assert len(_meeting_rows(stack, record["id"])) == 1

    creates = _creates(stack, subject)
    assert len({c["json"]["transactionId"] for c in creates}) == 1, "every retry reused the transactionId"
    assert events[0]["transactionId"] == creates[0]["json"]["transactionId"]
    statuses = [c["status"] for c in creates]
    assert statuses[:lost] == [500] * lost, statuses  # saved by the mailbox, answer lost
    if duplicate_status:
        assert statuses[lost:] == [duplicate_status], statuses
        lookups = [
            r
            for r in stack.graph.requests
            if r["method"] == "GET"
            and r["path"].lower() == f"/users/{ADELE}/events"
            and mapping["meeting_key"] in r["query"].get("filter", "")
        ]
        assert lookups and lookups[0]["status"] == 200

    assert _queue_depth(stack, POISON_QUEUE) == 0
