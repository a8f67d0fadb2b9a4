"""Crash between our create and the mapping save (rule I3), met by a cancel in the CRM (L3), and the
rooms whose invitations M4 declines. Pure decisions; the worker's side is in tests/core/test_worker_*.py."""

from __future__ import annotations

from datetime import timedelta

from sync_core.domain.actions import Mapping
from sync_core.domain.model import AttendeeType, Origin, Response, Status
from sync_core.engine.decide import decide
from sync_core.engine.inputs import Facts
from tests.engine.builders import (
    CLIENT,
    NOW,
    POLICY,
    appt,
    attendee,
    crm_change,
    gev,
    judge,
    kinds,
    m365,
    rec,
)

HALL = "hall@contoso.com"


def _our_lost_create() -> tuple[Status, object]:
    return Status.CANCELLED, gev(written_by_us="crm:c1", appointment=appt(origin=Origin.M365))


def test_I3_L3_a_crm_cancel_finds_our_create_whose_mapping_was_never_saved_and_cancels_it() -> None:
    record = rec(appt(origin=Origin.CRM, status=Status.CANCELLED))
    ours = gev(written_by_us="crm:c1")
    d = judge(crm_change(), None, ours, record)
    assert kinds(d) == ["cancel_graph"] and d.rule == "L3"
    assert d.mapping is not None and d.mapping.state == "cancelled" and d.mapping.graph_event_id == "e-linda"
    # Without our create found, there is nothing to cancel.
    assert judge(crm_change(), None, None, record).rule == "L3"
    assert kinds(judge(crm_change(), None, None, record)) == ["skip"]


def test_I3_L3_our_tagged_create_seen_from_m365_is_cancelled_when_its_crm_record_was_cancelled() -> None:
    record = rec(appt(origin=Origin.CRM, status=Status.CANCELLED))
    d = judge(m365(), None, gev(written_by_us="crm:c1"), record)
    assert kinds(d) == ["cancel_graph"]
    assert d.mapping is not None and d.mapping.crm_id == "c1" and d.mapping.state == "cancelled"


def test_I3_a_claimed_row_and_our_create_found_again_link_without_a_second_create() -> None:
    record = rec(appt(origin=Origin.CRM))
    claimed = Mapping(meeting_key="crm:c1", crm_id="c1", organizer_mailbox="linda@contoso.com")
    d = judge(crm_change(), claimed, gev(written_by_us="crm:c1"), record)
    assert "create_graph" not in kinds(d)
    assert d.mapping is not None and d.mapping.graph_event_id == "e-linda"


def test_M4_only_pending_invitations_are_declined_never_one_the_room_accepted() -> None:
    meeting = appt(
        attendees=(attendee(CLIENT), attendee(HALL, Response.NONE, AttendeeType.RESOURCE)), origin=Origin.CRM
    )
    mapping = Mapping(
        meeting_key="crm:c1",
        crm_id="c1",
        organizer_mailbox="linda@contoso.com",
        graph_event_id="e-linda",
        copies=(),
        snapshot=meeting.model_copy(update={"status": Status.PROSPECT}),
    )
    from sync_core.domain.actions import GraphCopy

    mapping = mapping.model_copy(
        update={
            "copies": (
                GraphCopy(mailbox="linda@contoso.com", event_id="e-linda"),
                GraphCopy(mailbox=HALL, event_id="e-hall", role="room"),
            )
        }
    )
    overlap = meeting.model_copy(update={"start": meeting.start + timedelta(minutes=30)})
    pending = gev(overlap, mailbox=HALL, event_id="e-pending", ical_uid="U2", is_organizer=False)
    accepted = pending.model_copy(
        update={"event_id": "e-accepted", "ical_uid": "U3", "response": Response.ACCEPTED}
    )
    cancelled = pending.model_copy(update={"event_id": "e-gone", "ical_uid": "U4", "is_cancelled": True})
    facts = Facts(room_overlaps=(pending, accepted, cancelled))
    d = decide(crm_change(), mapping, gev(meeting), rec(meeting), POLICY, NOW, facts)
    responses = [(a.event_id, a.response) for a in d.actions if a.kind == "respond_graph"]
    assert responses == [("e-hall", "accept"), ("e-pending", "decline")]


def test_X1_the_delete_limit_holds_a_cancel_for_an_operator() -> None:
    record = rec(appt(origin=Origin.CRM, status=Status.CANCELLED))
    facts = Facts(deletes_this_run=POLICY.max_deletes_per_run)
    d = decide(crm_change(), None, gev(written_by_us="crm:c1"), record, POLICY, NOW, facts)
    assert d.rule == "X1" and kinds(d) == ["skip"] and d.actions[0].needs_operator  # type: ignore[union-attr]
