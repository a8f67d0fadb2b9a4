"""Rules R1-R4 (recurrence) and M1-M6 (rooms and resources)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sync_core.domain.actions import Mapping
from sync_core.domain.model import AttendeeType, Location, Origin, Response, Status
from sync_core.engine.decide import decide
from sync_core.engine.inputs import Facts
from tests.engine.builders import (
    CLIENT,
    KNOWN,
    NOW,
    POLICY,
    appt,
    attendee,
    crm_change,
    crm_edited,
    edited,
    gev,
    judge,
    kinds,
    m365,
    rec,
    synced,
    weekly,
)

MON = datetime(2025, 3, 10, 9, tzinfo=UTC)
BOARD = "boardroom@contoso.com"  # Outlook-managed, auto-accept
HALL = "hall@contoso.com"  # CRM-managed


def _series(**kw):  # type: ignore[no-untyped-def]
    kw.setdefault("recurrence", weekly(MON.date()))
    return appt(start=MON, **kw)


def test_R1_a_series_syncs_as_one_series_with_its_pattern() -> None:
    g = gev(_series(), type="seriesMaster")
    d = judge(m365(), None, g, None)
    assert kinds(d) == ["create_crm"] and d.rule == "R1"
    assert d.actions[0].appointment.recurrence == g.appointment.recurrence
    occ = gev(_series(), type="occurrence", event_id="occ", series_master_id="e-linda", original_start=MON)
    assert decide(m365("occ"), None, occ, None, POLICY, NOW, Facts(series_key="ical:UID-1")).rule == "R1"


def test_R2_a_series_without_end_syncs_whole() -> None:
    g = gev(_series(), type="seriesMaster")
    created = judge(m365(), None, g, None).actions[0].appointment
    assert created.recurrence is not None and created.recurrence.range.type == "noEnd"
    assert created.recurrence.range.end_date is None and created.recurrence.range.number_of_occurrences == 0


def test_R3_one_edited_occurrence_syncs_as_an_exception_of_the_series() -> None:
    master = gev(_series(), type="seriesMaster")
    series_mapping, _ = synced(master)
    moved = _series().model_copy(update={"start": MON + timedelta(hours=2), "end": MON + timedelta(hours=3)})
    exc = gev(
        moved, type="exception", event_id="exc", ical_uid="X", series_master_id="e-linda", original_start=MON
    )
    facts = Facts(known_contacts=KNOWN.known_contacts, series_key="ical:UID-1", series_mapping=series_mapping)
    d = decide(m365("exc"), None, exc, None, POLICY, NOW, facts)
    assert d.rule == "R3" and d.meeting_key == "ical:UID-1|2025-03-10T09:00:00Z"
    assert d.actions[0].appointment.series_ref == "ical:UID-1"
    assert d.actions[0].appointment.original_start == MON


def test_R3_one_occurrence_deleted_in_m365_updates_the_series_record() -> None:
    master = gev(_series(), type="seriesMaster")
    mapping, record = synced(master)
    cancelled = edited(master, cancelled_occurrences=(MON,))
    d = judge(m365(), mapping, cancelled, record)
    assert kinds(d) == ["update_crm"] and d.rule == "R3"
    assert d.actions[0].changed_fields == ("cancelled_occurrences",)


def test_R3_one_occurrence_cancelled_in_the_crm_is_deleted_in_m365() -> None:
    master = gev(_series(), type="seriesMaster")
    mapping, record = synced(master)
    d = judge(crm_change(), mapping, master, crm_edited(record, cancelled_occurrences=(MON,)))
    assert kinds(d) == ["cancel_graph_occurrence"] and d.rule == "R3"
    assert d.actions[0].original_start == MON and d.actions[0].series_event_id == "e-linda"


def test_R3_occurrence_edited_in_the_crm_updates_that_occurrence_in_m365() -> None:
    occ = gev(_series(recurrence=None), type="occurrence", event_id="occ", original_start=MON)
    exception = rec(
        appt(start=MON + timedelta(hours=1), origin=Origin.CRM, series_ref="ical:UID-1", original_start=MON),
        crm_id="c-exc",
    )
    d = judge(crm_change("c-exc"), None, occ, exception)
    assert d.rule == "R3" and d.meeting_key == "ical:UID-1|2025-03-10T09:00:00Z"
    update = next(a for a in d.actions if a.kind == "update_graph")
    assert update.event_id == "occ" and set(update.changed_fields) == {"start", "end"}


def test_R4_recurring_skip_and_expand_are_configurable() -> None:
    g = gev(_series(), type="seriesMaster")
    skip = POLICY.model_copy(update={"recurring": "skip"})
    assert judge(m365(), None, g, None, policy=skip).rule == "R4"
    expand = POLICY.model_copy(update={"recurring": "expand"})
    assert judge(m365(), None, g, None, policy=expand).rule == "R4"
    occ = gev(_series(recurrence=None), type="occurrence", event_id="occ", original_start=MON)
    facts = Facts(known_contacts=KNOWN.known_contacts, series_key="ical:UID-1")
    d = decide(m365("occ"), None, occ, None, expand, NOW, facts)
    assert kinds(d) == ["create_crm"] and d.meeting_key == "ical:UID-1|2025-03-10T09:00:00Z"
    assert decide(crm_change(), None, None, rec(_series(origin=Origin.CRM)), skip, NOW).rule == "R4"


# ---- rooms -----------------------------------------------------------------------------------------


def _room_meeting(room: str, response: Response = Response.NONE, **kw):  # type: ignore[no-untyped-def]
    return appt(attendees=(attendee(CLIENT), attendee(room, response, AttendeeType.RESOURCE)), **kw)


def test_M1_a_room_is_found_by_its_unique_display_name() -> None:
    a = appt(locations=(Location(display_name="board room"),), origin=Origin.CRM)
    d = judge(crm_change(), None, None, rec(a))
    created = d.actions[0].appointment
    assert Location(display_name="Board Room", room_email=BOARD) in created.locations
    assert any(x.email == BOARD and x.type is AttendeeType.RESOURCE for x in created.attendees)


def test_M2_auto_accept_room_syncs_once_accepted_confirmed_with_defaults() -> None:
    pending = gev(_room_meeting(BOARD))
    assert judge(m365(), None, pending, None).rule == "M2"
    accepted = gev(_room_meeting(BOARD, Response.ACCEPTED))
    d = judge(m365(), None, accepted, None)
    assert d.rule == "M2" and d.actions[0].kind == "create_crm"
    assert d.actions[0].appointment.status is Status.CONFIRMED
    assert dict(d.actions[0].appointment.crm_fields) == {"event_type": "meeting"}
    declined = gev(_room_meeting(BOARD, Response.DECLINED))
    d = judge(m365(), None, declined, None)
    assert d.rule == "M2" and kinds(d) == ["skip"] and "declined" in d.reason


def test_M3_moderated_room_the_moderators_answer_is_what_syncs() -> None:
    from sync_core.domain.policy import RoomMapping

    rooms = (
        RoomMapping(mailbox=BOARD, crm_space_id="s", display_name="Board Room", mode="outlook_moderated"),
    )
    policy = POLICY.model_copy(update={"rooms": rooms})
    assert judge(m365(), None, gev(_room_meeting(BOARD)), None, policy=policy).rule == "M3"
    d = judge(m365(), None, gev(_room_meeting(BOARD, Response.ACCEPTED)), None, policy=policy)
    assert d.rule == "M3" and d.actions[0].kind == "create_crm"
    d = judge(m365(), None, gev(_room_meeting(BOARD, Response.DECLINED)), None, policy=policy)
    assert d.rule == "M3" and kinds(d) == ["skip"]


def _hall_synced() -> tuple[Mapping, object]:
    g = gev(_room_meeting(HALL))
    d = judge(m365(), None, g, None)
    assert d.rule == "M4" and d.actions[0].appointment.status is Status.PROSPECT
    assert d.mapping is not None
    room_copy = gev(_room_meeting(HALL), mailbox=HALL, event_id="e-hall", is_organizer=False)
    mapping = d.mapping.model_copy(update={"crm_id": "c1"})
    record = rec(d.actions[0].appointment, external_ref=d.meeting_key)
    linked = judge(m365("e-hall", HALL), mapping, room_copy, record)
    assert kinds(linked) == ["link_copy"]  # prospect: the invitation stays pending
    assert linked.mapping is not None
    return linked.mapping, record


def test_M4_crm_managed_room_prospect_then_confirm_accepts_and_declines_overlaps() -> None:
    mapping, record = _hall_synced()
    other = gev(_room_meeting(HALL), mailbox=HALL, event_id="e-other", ical_uid="U2", is_organizer=False)
    later = gev(
        _room_meeting(HALL, start=NOW + timedelta(days=3)),
        mailbox=HALL,
        event_id="e-later",
        is_organizer=False,
    )
    confirmed = record.model_copy(  # type: ignore[attr-defined]
        update={
            "version": "v2",
            "appointment": record.appointment.model_copy(update={"status": Status.CONFIRMED}),
        }  # type: ignore[attr-defined]
    )
    g = gev(_room_meeting(HALL))
    d = decide(crm_change(), mapping, g, confirmed, POLICY, NOW, Facts(room_overlaps=(other, later)))
    responses = [(a.event_id, a.response) for a in d.actions if a.kind == "respond_graph"]
    assert responses == [("e-hall", "accept"), ("e-other", "decline")]
    assert d.rule == "M4"


def test_M4_crm_managed_room_hold_tells_the_organizer_and_cancel_declines() -> None:
    mapping, record = _hall_synced()
    hold = record.model_copy(  # type: ignore[attr-defined]
        update={"version": "v2", "appointment": record.appointment.model_copy(update={"status": Status.HOLD})}  # type: ignore[attr-defined]
    )
    d = judge(crm_change(), mapping, gev(_room_meeting(HALL)), hold)
    assert kinds(d)[0] == "notify_organizer" and d.rule == "M4" and "respond_graph" not in kinds(d)
    cancelled = record.model_copy(  # type: ignore[attr-defined]
        update={
            "version": "v3",
            "appointment": record.appointment.model_copy(update={"status": Status.CANCELLED}),
        }  # type: ignore[attr-defined]
    )
    d = judge(crm_change(), mapping, gev(_room_meeting(HALL)), cancelled)
    declines = [a for a in d.actions if a.kind == "respond_graph"]
    assert [(a.event_id, a.response) for a in declines] == [("e-hall", "decline")]


def test_M4_confirm_seen_before_the_room_copy_is_applied_when_the_copy_arrives() -> None:
    g = gev(_room_meeting(HALL))
    first = judge(m365(), None, g, None)
    assert first.mapping is not None
    mapping = first.mapping.model_copy(update={"crm_id": "c1"})
    confirmed = rec(first.actions[0].appointment.model_copy(update={"status": Status.CONFIRMED}))
    room_copy = gev(_room_meeting(HALL), mailbox=HALL, event_id="e-hall", is_organizer=False)
    d = judge(m365("e-hall", HALL), mapping, room_copy, confirmed)
    assert [(a.kind, getattr(a, "response", None)) for a in d.actions] == [
        ("link_copy", None),
        ("respond_graph", "accept"),
    ]


def test_M5_crm_booking_on_outlook_managed_room_goes_through_acceptance_and_creator_is_told() -> None:
    booking = rec(_room_meeting(BOARD, origin=Origin.CRM))
    d = judge(crm_change(), None, None, booking)
    assert d.actions[0].kind == "create_graph"
    assert any(
        a.email == BOARD and a.type is AttendeeType.RESOURCE for a in d.actions[0].appointment.attendees
    )
    assert d.mapping is not None
    mapping = d.mapping.model_copy(update={"graph_event_id": "e-linda"})
    declined = gev(_room_meeting(BOARD, Response.DECLINED, origin=Origin.CRM))
    d = judge(m365(), mapping, declined, booking)
    notes = [a for a in d.actions if a.kind == "notify_organizer"]
    assert notes and notes[0].rule == "M5" and "declined" in notes[0].reason
    assert notes[0].mailbox == "linda@contoso.com"


def test_M5_W2_an_organizer_without_a_mailbox_is_told_through_the_default_calendar_or_not_at_all() -> None:
    booking = rec(_room_meeting(BOARD, origin=Origin.CRM, organizer="dana@partner.example"))
    for policy, written_to, told in (
        (POLICY.model_copy(update={"default_calendar": "julie@contoso.com"}), "julie@contoso.com", True),
        (POLICY, BOARD, False),  # booked on the room's calendar alone: no mailbox of ours to mail from
    ):
        d = judge(crm_change(), None, None, booking, policy=policy)
        assert d.rule == "W2" and d.actions[0].mailbox == written_to and d.mapping is not None
        mapping = d.mapping.model_copy(update={"graph_event_id": "e-1", "organizer_mailbox": written_to})
        answered = gev(
            _room_meeting(BOARD, Response.ACCEPTED, origin=Origin.CRM, organizer="dana@partner.example"),
            mailbox=written_to,
            event_id="e-1",
        )
        d = judge(m365("e-1", written_to), mapping, answered, booking, policy=policy)
        notes = [a for a in d.actions if a.kind == "notify_organizer"]
        assert [(n.rule, n.mailbox) for n in notes] == ([("M5", written_to)] if told else []), d.explain()


def test_M6_several_rooms_in_different_time_zones_on_one_event() -> None:
    from sync_core.domain.policy import RoomMapping

    rooms = (
        RoomMapping(
            mailbox="ny@contoso.com", crm_space_id="s-ny", display_name="NY 1", time_zone="America/New_York"
        ),
        RoomMapping(
            mailbox="ldn@contoso.com", crm_space_id="s-ldn", display_name="LDN 1", time_zone="Europe/London"
        ),
    )
    policy = POLICY.model_copy(update={"rooms": rooms})
    a = appt(
        attendees=(
            attendee(CLIENT),
            attendee("ny@contoso.com", Response.ACCEPTED, AttendeeType.RESOURCE),
            attendee("ldn@contoso.com", Response.ACCEPTED, AttendeeType.RESOURCE),
        )
    )
    d = judge(m365(), None, gev(a), None, policy=policy)
    created = d.actions[0].appointment
    assert d.actions[0].kind == "create_crm"
    assert {loc.room_email for loc in created.locations} == {"ny@contoso.com", "ldn@contoso.com"}
    one_pending = a.model_copy(
        update={
            "attendees": (*a.attendees[:2], attendee("ldn@contoso.com", Response.NONE, AttendeeType.RESOURCE))
        }
    )
    assert judge(m365(), None, gev(one_pending), None, policy=policy).rule == "M2"
