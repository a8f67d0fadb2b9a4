"""The seed scenarios (issue 16) that failed over HTTP, end to end on the local stack, each named for its rule
and the vendor document it comes from. Changes are made as users make them: in Outlook through the Graph
emulator's API, in the CRM through the emulator's user routes.

Demo policy (devstack/demo-policy.json): adele, bruno, chen are sync users; Harbour Room is Outlook-managed
(auto-accept), Summit Hall is CRM-managed. A customer's organizer is a mailbox of another organisation in the
same emulator: not a sync user, never subscribed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import Stack, drained, wait_for
from tests.e2e.outlook import MEGAN, events, series, weekly
from tests.e2e.test_crm_to_m365 import _decisions, stack

pytestmark = pytest.mark.e2e
__all__ = ["stack"]

ADELE = "adele@contoso.example"
CUSTOMER = "lena@northwind.example"
BASE = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=50)
WAIT = 20.0


def _when(day: int, hour: float) -> dict[str, str]:
    at = BASE + timedelta(days=day, hours=hour)
    return {"dateTime": at.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def _customer(stack: Stack) -> None:
    if not any(m["mail"] == CUSTOMER for m in stack.graph.mailboxes):
        stack.graph.add_mailbox(str(uuid.uuid5(uuid.NAMESPACE_DNS, CUSTOMER)), CUSTOMER, "Lena (Northwind)")


def _invited(stack: Stack, subject: str, day: int) -> dict[str, Any]:
    """A customer invites Adele; Adele accepts in Outlook. Returns Adele's copy as Graph shows it."""
    _customer(stack)
    with stack.graph_http() as g:
        g.post(
            f"/users/{CUSTOMER}/events",
            json={
                "subject": subject,
                "start": _when(day, 10),
                "end": _when(day, 11),
                "attendees": [{"emailAddress": {"address": ADELE}, "type": "required"}],
            },
        ).raise_for_status()
        copy = wait_for(lambda: events(stack, ADELE, subject), timeout=WAIT)[0]
        g.post(f"/users/{ADELE}/events/{copy['id']}/accept", json={"sendResponse": True}).raise_for_status()
    return copy


def _record(stack: Stack, subject: str) -> dict[str, Any]:
    return wait_for(lambda: [a for a in stack.crm_appointments() if a["subject"] == subject], timeout=WAIT)[0]


def _settled(stack: Stack) -> None:
    """Every webhook the CRM sent so far was delivered, and the queue has drained: the changes are decided."""
    assert stack.crm.wait_for_webhooks(timeout=WAIT)
    wait_for(drained, timeout=WAIT)


def _decided_on(stack: Stack, crm_id: str, version: str) -> list[dict[str, Any]]:
    """The decisions taken on the record at `version` (once there is one)."""
    return [d for d in _decisions(stack, crm_id) if d["versions"].get("crm_version") == version]


def test_I2_L4_superoffice_8_a_crm_edit_of_a_record_made_from_an_invitee_copy_cancels_nothing(
    stack: Stack,
) -> None:
    """SuperOffice scenario 8: a customer invites Linda, she accepts, the record is made from her copy (I2); a
    CRM user adds notes. Before, the app read no M365 side for such a record and took that for "deleted in
    M365" (L4): it cancelled the record while Linda's meeting was live. L4 now needs Graph's word, and the
    notes stay: the meeting is the customer's, the record's notes are the CRM's own."""
    subject = "Northwind quarterly"
    copy = _invited(stack, subject, day=1)
    record = _record(stack, subject)

    edited = stack.crm.user_update(record["id"], body="Notes from the call: pricing agreed", updated_by=ADELE)

    assert edited["version"] != record["version"]
    _settled(stack)
    latest = _decided_on(stack, record["id"], edited["version"])  # a no-op has no row: only writes do
    assert not [d for d in latest if d["rule"] == "L4" and "cancel" in str(d["actions"])], latest
    stored = stack.crm.store.get(record["id"])
    assert stored["status"] != "cancelled" and stored["body"] == "Notes from the call: pricing agreed", stored
    live = events(stack, ADELE, subject)
    assert [e["id"] for e in live if not e["isCancelled"]] == [copy["id"]]


def _answer(record: dict[str, Any], email: str) -> str:
    return next(a["response"] for a in record["attendees"] if a["email"] == email)


def test_L6_superoffice_4_7_the_answer_of_the_invitee_whose_copy_made_the_record_reaches_the_crm(
    stack: Stack,
) -> None:
    """SuperOffice scenarios 4, 7, 8, 10: the record made from Linda's invitee copy showed her answer as
    `none` forever (Exchange tracks no responses on an invitee's copy, and that `none` won every merge). Her
    copy's own responseStatus is her answer, on create and on every later change."""
    subject = "Northwind pricing call"
    _invited(stack, subject, day=3)  # Adele accepts
    record = wait_for(
        lambda: [
            r for r in stack.crm_appointments() if r["subject"] == subject and _answer(r, ADELE) != "none"
        ],
        timeout=WAIT,
    )[0]
    assert _answer(record, ADELE) == "accepted", record

    copy = events(stack, ADELE, subject)[0]
    with stack.graph_http() as g:  # she changes her mind in Outlook
        g.post(f"/users/{ADELE}/events/{copy['id']}/tentativelyAccept", json={"sendResponse": True})
    assert wait_for(
        lambda: [
            r
            for r in stack.crm_appointments()
            if r["subject"] == subject and _answer(r, ADELE) == "tentativelyAccepted"
        ],
        timeout=WAIT,
    )


def test_R3_superoffice_6_an_occurrence_deleted_in_outlook_reaches_the_crm(stack: Stack) -> None:
    """SuperOffice scenario 6: a deleted occurrence never reached the CRM (Graph announces occurrence
    changes on the series master, and the master was read without its cancelledOccurrences)."""
    subject = "Weekly Northwind stand-up"
    first = BASE + timedelta(days=7, hours=9)
    with stack.graph_http() as g:
        g.post(
            f"/users/{ADELE}/events",
            json=series(subject, first, timedelta(minutes=30), [MEGAN], weekly(first), 4),
        ).raise_for_status()
        _record(stack, subject)
        second = first + timedelta(weeks=1)
        view = g.get(
            f"/users/{ADELE}/calendarView",
            params={
                "startDateTime": second.isoformat(),
                "endDateTime": (second + timedelta(hours=1)).isoformat(),
            },
        ).json()["value"]
        [occurrence] = [e for e in view if e["subject"] == subject]
        g.delete(f"/users/{ADELE}/events/{occurrence['id']}").raise_for_status()

    def cancelled() -> list[str]:
        record = _record(stack, subject)
        return [str(s) for s in record["cancelled_occurrences"]]

    gone = wait_for(cancelled, timeout=WAIT)
    assert [datetime.fromisoformat(s.replace("Z", "+00:00")) for s in gone] == [second]


def test_M4_L3_momentus_cancelling_a_booking_made_in_outlook_declines_the_room_and_leaves_the_meeting(
    stack: Stack,
) -> None:
    """Momentus: when the events team cancels an event booked from Outlook on a Momentus-managed space,
    "the corresponding Outlook event will be declined". Before, the organizer's meeting was cancelled (the
    customer got a cancellation) and the room's decline after it was refused and poisoned."""
    from tests.e2e.test_crm_to_m365 import HALL, _answered, _outlook_event

    subject = "Northwind launch dinner"
    with stack.graph_http() as g:
        g.post(f"/users/{ADELE}/events", json=_outlook_event(subject, 12, 18, 21, (HALL,))).raise_for_status()
    record = _record(stack, subject)
    stack.crm.user_update(record["id"], status="confirmed")
    assert wait_for(lambda: _answered(stack, HALL, subject, "accepted"), timeout=WAIT)

    stack.crm.user_cancel(record["id"])

    assert wait_for(lambda: _answered(stack, HALL, subject, "declined"), timeout=WAIT)
    [meeting] = events(stack, ADELE, subject)
    assert not meeting["isCancelled"]  # the organizer's meeting and its attendees are left alone
    assert not [
        m
        for m in stack.graph.sent_mail
        if subject in m["message"]["subject"] and "Cancel" in m["message"]["subject"]
    ]
    decided = _decisions(stack, record["id"])
    assert not [d for d in decided if d["outcome"] not in ("applied", "no-op")], decided


def test_L5_interaction_a_meeting_becomes_an_activity_when_it_ends_with_no_edit(stack: Stack) -> None:
    """InterAction: "once the meeting has passed it becomes an activity". No notification comes when time
    passes; before, the kind changed only on an edit or a full resync. The hourly sweep now hands the
    worker each mapped meeting that ended since its last run."""
    import time as _time

    from tests.e2e.test_reconcile import _state, _sweep

    now = datetime.now(UTC)
    end = now + timedelta(seconds=8)
    subject = "Northwind call, ending shortly"
    with stack.graph_http() as g:
        g.post(
            f"/users/{ADELE}/events",
            json={
                "subject": subject,
                "start": {
                    "dateTime": (now - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S"),
                    "timeZone": "UTC",
                },
                "end": {"dateTime": end.strftime("%Y-%m-%dT%H:%M:%S.%f"), "timeZone": "UTC"},
                "attendees": [{"emailAddress": {"address": "megan@fabrikam.example"}, "type": "required"}],
            },
        ).raise_for_status()
    record = _record(stack, subject)
    assert record["kind"] == "meeting", record
    swept = datetime.now(UTC)
    _sweep(stack)  # its delta round reads the new meeting once more: still a meeting
    wait_for(lambda: (_state(ADELE).last_sweep or swept) > swept and drained(), timeout=WAIT)
    assert _record(stack, subject)["kind"] == "meeting"
    _time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()) + 1)  # the meeting ends; nobody edits

    _sweep(stack)

    assert wait_for(lambda: _record(stack, subject)["kind"] == "activity", timeout=WAIT)


def test_R3_superoffice_6_an_occurrence_moved_in_outlook_reaches_the_crm_without_waiting_for_a_sweep(
    stack: Stack,
) -> None:
    """SuperOffice scenario 6: a moved occurrence reached the CRM only at the next hourly sweep (Graph
    announces it on the series master, whose read named no exceptions). The master is now read with its
    exceptionOccurrences, and each is decided as an exception of the series."""
    subject = "Weekly Northwind review"
    first = BASE + timedelta(days=14, hours=13)
    with stack.graph_http() as g:
        g.post(
            f"/users/{ADELE}/events",
            json={
                "subject": subject,
                "start": _when(14, 13),
                "end": _when(14, 14),
                "attendees": [{"emailAddress": {"address": "megan@fabrikam.example"}, "type": "required"}],
                "recurrence": {
                    "pattern": {
                        "type": "weekly",
                        "interval": 1,
                        "daysOfWeek": [first.strftime("%A").lower()],
                    },
                    "range": {
                        "type": "numbered",
                        "startDate": first.date().isoformat(),
                        "numberOfOccurrences": 4,
                    },
                },
            },
        ).raise_for_status()
        series = _record(stack, subject)
        second = first + timedelta(weeks=1)
        z = "%Y-%m-%dT%H:%M:%SZ"
        window = {
            "startDateTime": second.strftime(z),
            "endDateTime": (second + timedelta(hours=1)).strftime(z),
        }
        view = g.get(f"/users/{ADELE}/calendarView", params=window).json()["value"]
        [occurrence] = [e for e in view if e["subject"] == subject]
        moved = second + timedelta(hours=2)
        g.patch(
            f"/users/{ADELE}/events/{occurrence['id']}",
            json={
                "start": {"dateTime": moved.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
                "end": {
                    "dateTime": (moved + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
                    "timeZone": "UTC",
                },
            },
        ).raise_for_status()

    def exception() -> list[dict[str, Any]]:
        return [
            r
            for r in stack.crm_appointments()
            if r.get("series_ref") and r["id"] != series["id"] and r["subject"] == subject
        ]

    [record] = wait_for(exception, timeout=WAIT)
    assert datetime.fromisoformat(record["start"].replace("Z", "+00:00")) == moved
    assert datetime.fromisoformat(record["original_start"].replace("Z", "+00:00")) == second
