"""Attack: a synced user forges our tag to take over another user's CRM record (issue 15, item 1; rules
I3, I5, L3, L4).

Replayed as it was reproduced against the local stack: Bruno's client meeting is booked in the CRM and
synced to his mailbox. Adele, another synced user, sets our extended property on an event of her own,
first to the plain key `crm:<Bruno's record id>` (the property's id and name are readable on every event
we write), then to the exact value on Bruno's event (a valid signature, but for another mailbox). Then she
moves and deletes her event. Before the defence the record was overwritten with Adele's subject, time and
organizer, cancelled when she deleted her event, and Bruno's Outlook meeting was cancelled at his next
edit. Now her tag is not ours, her event is a meeting of her own, and Bruno's record and meeting are
untouched.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from sync_core.domain.model import Appointment, Attendee, Person, Status
from sync_core.domain.policy import DEFAULT_EXTENDED_PROPERTY_ID as PROP
from tests.clock import days_ahead, graph_time
from tests.e2e.conftest import Stack, on_container, wait_for

pytestmark = pytest.mark.e2e

ADELE = "adele@contoso.example"
BRUNO = "bruno@contoso.example"
CLIENT = "megan@fabrikam.example"


def _record(stack: Stack, crm_id: str) -> dict[str, Any]:
    [record] = [a for a in stack.crm_appointments() if a["id"] == crm_id]
    return record


def _events(stack: Stack, mailbox: str, subject: str) -> list[dict[str, Any]]:
    return [e for evs in stack.graph.dump_events(mailbox).values() for e in evs if e["subject"] == subject]


def _tag(stack: Stack, mailbox: str, event_id: str) -> str:
    """Our tag on an event, read as any mailbox owner can read it."""
    with stack.graph_http() as g:
        event = g.get(
            f"/users/{mailbox}/events/{event_id}",
            params={"$expand": f"singleValueExtendedProperties($filter=id eq '{PROP}')"},
        ).json()
    return str(next(p["value"] for p in event["singleValueExtendedProperties"] if p["id"] == PROP))


def _drained() -> bool:
    from sync_core.adapters.storage.core import CHANGES_QUEUE

    return int(on_container(lambda c: c.storage.queue_depth(CHANGES_QUEUE))) == 0


@pytest.mark.parametrize("forged", ["plain key", "signature copied from the victim's mailbox"])
def test_I3_I5_a_forged_tag_on_another_users_event_takes_over_nothing(stack: Stack, forged: str) -> None:
    start = days_ahead(6, 10)
    subject = f"Bruno's client review ({forged})"
    takeover = f"Adele's takeover ({forged})"
    booked = stack.crm.user_create(
        Appointment(
            subject=subject,
            start=start,
            end=start + timedelta(hours=1),
            organizer=Person(email=BRUNO),
            attendees=(Attendee(email=CLIENT),),
            status=Status.CONFIRMED,
        ),
        created_by=BRUNO,
    )
    [bruno_event] = wait_for(lambda: _events(stack, BRUNO, subject))
    wait_for(_drained)
    before = _record(stack, booked["id"])
    tag = f"crm:{booked['id']}" if forged == "plain key" else _tag(stack, BRUNO, bruno_event["id"])

    # The attack: Adele's own event carries the tag, then moves, then is deleted.
    with stack.graph_http() as g:
        attack = g.post(
            f"/users/{ADELE}/events",
            json={
                "subject": takeover,
                "start": graph_time(start + timedelta(hours=3)),
                "end": graph_time(start + timedelta(hours=4)),
                "attendees": [{"emailAddress": {"address": CLIENT}, "type": "required"}],
                "singleValueExtendedProperties": [{"id": PROP, "value": tag}],
            },
        )
        attack.raise_for_status()
        event_id = attack.json()["id"]
        wait_for(lambda: [a for a in stack.crm_appointments() if a["subject"] == takeover])
        g.patch(
            f"/users/{ADELE}/events/{event_id}",
            json={
                "start": graph_time(start + timedelta(hours=5)),
                "end": graph_time(start + timedelta(hours=6)),
            },
        ).raise_for_status()
        wait_for(_drained)
        g.delete(f"/users/{ADELE}/events/{event_id}").raise_for_status()
    wait_for(
        lambda: [
            a for a in stack.crm_appointments() if a["subject"] == takeover and a["status"] == "cancelled"
        ]
    )
    wait_for(_drained)

    # Refused, with nothing changed: Bruno's record is as it was, his meeting live, the client uninformed.
    after = _record(stack, booked["id"])
    assert (after["subject"], after["start"], after["status"], after["version"]) == (
        before["subject"],
        before["start"],
        before["status"],
        before["version"],
    )
    assert after["organizer"]["email"] == BRUNO
    [live] = _events(stack, BRUNO, subject)
    assert live["id"] == bruno_event["id"] and not live["isCancelled"]
    # Adele's event was a meeting of her own: its own record, which her delete cancelled (L4).
    [own] = [a for a in stack.crm_appointments() if a["subject"] == takeover]
    assert own["id"] != booked["id"] and own["organizer"]["email"] == ADELE
