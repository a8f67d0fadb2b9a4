"""Rules L1-L6 (lifecycle), W1-W4 (writing to M365), X1 (deletion safety), F1-F5 (fields), E1."""

from __future__ import annotations

from datetime import timedelta

from sync_core.domain.actions import ChangeType
from sync_core.domain.model import (
    Attachment,
    AttendeeType,
    Kind,
    Origin,
    Person,
    Response,
    Sensitivity,
    ShowAs,
    Status,
)
from sync_core.domain.policy import DeletePolicy, EventDefaults
from sync_core.engine.decide import decide
from sync_core.engine.inputs import Facts
from sync_core.engine.merge import SYNC_FIELDS
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
    synced,
)


def _crm_status(record, status):  # type: ignore[no-untyped-def]
    return record.model_copy(
        update={"version": "v2", "appointment": record.appointment.model_copy(update={"status": status})}
    )


def test_L1_only_push_statuses_are_written_to_m365() -> None:
    for status in (Status.PROSPECT, Status.HOLD, Status.TENTATIVE):
        assert decide(crm_change(), None, None, rec(appt(status=status)), POLICY, NOW).rule == "L1"
    wider = POLICY.model_copy(update={"push_statuses": (Status.CONFIRMED, Status.TENTATIVE)})
    assert decide(crm_change(), None, None, rec(appt(status=Status.TENTATIVE)), wider, NOW).rule == "W1"


def test_L2_confirmed_event_moved_back_to_tentative_stays_in_outlook() -> None:
    g = gev()
    mapping, record = synced(g)
    d = decide(crm_change(), mapping, g, _crm_status(record, Status.TENTATIVE), POLICY, NOW)
    assert d.rule == "L2" and kinds(d) == ["skip"]


def test_L3_cancelled_in_crm_cancels_the_organizer_event() -> None:
    g = gev()
    mapping, record = synced(g)
    d = decide(crm_change(), mapping, g, _crm_status(record, Status.CANCELLED), POLICY, NOW)
    assert kinds(d) == ["cancel_graph"] and d.rule == "L3"
    assert d.mapping is not None and d.mapping.state == "cancelled"
    d = decide(crm_change(kind=ChangeType.DELETED), mapping, g, None, POLICY, NOW)
    assert kinds(d) == ["cancel_graph"]


def test_L3_cancelled_in_crm_declines_an_external_organizers_invitation() -> None:
    a = appt(organizer=CLIENT, attendees=(attendee("linda@contoso.com"),))
    g = gev(a, is_organizer=False, response=Response.ACCEPTED)
    mapping, record = synced(g)
    d = decide(crm_change(), mapping, g, _crm_status(record, Status.CANCELLED), POLICY, NOW)
    assert [(x.kind, getattr(x, "response", None)) for x in d.actions] == [("respond_graph", "decline")]


def test_L4_cancel_in_m365_cancels_crm_and_keep_policy_only_unlinks() -> None:
    a = appt(organizer=CLIENT, attendees=(attendee("linda@contoso.com"),))
    g = gev(a, is_organizer=False, response=Response.ACCEPTED)
    mapping, record = synced(g)
    cancelled = g.model_copy(update={"is_cancelled": True, "change_key": "ck9"})
    assert kinds(judge(m365(), mapping, cancelled, record)) == ["cancel_crm"]
    keep = POLICY.model_copy(update={"delete_policy": DeletePolicy(m365_to_crm="keep")})
    d = judge(m365(kind=ChangeType.DELETED), mapping, None, record, policy=keep)
    assert kinds(d) == ["unlink"] and d.rule == "L4" and d.mapping is None
    keep_crm = POLICY.model_copy(update={"delete_policy": DeletePolicy(crm_to_m365="keep")})
    d = decide(crm_change(), mapping, g, None, keep_crm, NOW)
    assert kinds(d) == ["unlink"] and d.rule == "L4"


def test_L5_past_meeting_becomes_an_activity_and_back_to_a_meeting_when_moved_to_the_future() -> None:
    past = gev(appt(start=NOW - timedelta(days=2)))
    d = judge(m365(), None, past, None)
    assert d.actions[0].appointment.kind is Kind.ACTIVITY
    g = gev()
    mapping, record = synced(g)
    ended = NOW + timedelta(days=2)  # the clock moves past the meeting
    d = decide(crm_change(), mapping, g, record.model_copy(update={"version": "v9"}), POLICY, ended)
    assert d.rule == "L5" and d.actions[0].changed_fields == ("kind",)
    activity = record.model_copy(update={"appointment": d.actions[0].appointment})
    moved = g.model_copy(
        update={
            "change_key": "ck2",
            "appointment": g.appointment.model_copy(
                update={"start": ended + timedelta(days=1), "end": ended + timedelta(days=1, hours=1)}
            ),
        }
    )
    d = judge(m365(), mapping, moved, activity, now=ended)
    assert "kind" in d.actions[0].changed_fields and d.actions[0].appointment.kind is Kind.MEETING


def test_L5_stops_syncing_after_activity_sync_days() -> None:
    g = gev()
    mapping, record = synced(g)
    much_later = NOW + timedelta(days=POLICY.activity_sync_days + 5)
    edited = g.model_copy(
        update={"change_key": "ck2", "appointment": g.appointment.model_copy(update={"body": "n"})}
    )
    assert judge(m365(), mapping, edited, record, now=much_later).rule == "L5"


def test_L6_attendee_responses_show_on_both_sides() -> None:
    g = gev()
    mapping, record = synced(g)
    accepted = g.appointment.model_copy(update={"attendees": (attendee(CLIENT, Response.ACCEPTED),)})
    d = decide(
        m365(),
        mapping,
        g.model_copy(update={"appointment": accepted, "change_key": "x"}),
        record,
        POLICY,
        NOW,
    )
    assert d.rule == "L6" and d.actions[0].changed_fields == ("attendees",)
    # a sync user's own answer given in the CRM is sent from their copy
    a = appt(attendees=(attendee(CLIENT), attendee("julie@contoso.com")))
    mapping, record = synced(gev(a))
    mapping = mapping.model_copy(
        update={
            "copies": (
                *mapping.copies,
                mapping.copies[0].model_copy(
                    update={"mailbox": "julie@contoso.com", "event_id": "e-j", "role": "attendee"}
                ),
            )
        }
    )
    answered = record.appointment.model_copy(
        update={"attendees": (attendee(CLIENT), attendee("julie@contoso.com", Response.DECLINED))}
    )
    d = decide(
        crm_change(),
        mapping,
        gev(a),
        record.model_copy(update={"appointment": answered, "version": "v2"}),
        POLICY,
        NOW,
    )
    respond = [x for x in d.actions if x.kind == "respond_graph"]
    assert (
        respond
        and respond[0].rule == "L6"
        and respond[0].event_id == "e-j"
        and respond[0].response == "decline"
    )


def test_W1_nothing_is_written_into_invitee_mailboxes() -> None:
    a = appt(origin=Origin.CRM, attendees=(attendee(CLIENT), attendee("julie@contoso.com")))
    d = decide(crm_change(), None, None, rec(a), POLICY, NOW)
    assert [x.mailbox for x in d.actions if x.kind == "create_graph"] == ["linda@contoso.com"]


def test_W2_organizer_without_mailbox_falls_back_to_default_calendar_or_room() -> None:
    a = appt(organizer="temp@contoso.com", origin=Origin.CRM)
    policy = POLICY.model_copy(update={"default_calendar": "julie@contoso.com"})
    d = decide(crm_change(), None, None, rec(a), policy, NOW)
    assert d.rule == "W2" and d.actions[0].mailbox == "julie@contoso.com"
    with_room = a.model_copy(
        update={"attendees": (attendee("boardroom@contoso.com", type=AttendeeType.RESOURCE),)}
    )
    d = decide(crm_change(), None, None, rec(with_room), POLICY, NOW)
    assert d.rule == "W2" and d.actions[0].mailbox == "boardroom@contoso.com"
    d = decide(crm_change(), None, None, rec(a), POLICY, NOW)
    assert d.rule == "W2" and kinds(d) == ["skip"]


def test_W3_created_events_carry_the_configured_defaults() -> None:
    policy = POLICY.model_copy(
        update={"event_defaults": EventDefaults(reminder_minutes=30, categories=("CRM",))}
    )
    created = decide(crm_change(), None, None, rec(), policy, NOW).actions[0].appointment
    assert created.reminder_minutes == 30 and created.categories == ("CRM",)
    kept = decide(crm_change(), None, None, rec(appt(reminder_minutes=5)), policy, NOW).actions[0].appointment
    assert kept.reminder_minutes == 5
    to_crm = judge(m365(), None, gev(), None).actions[0].appointment
    assert dict(to_crm.crm_fields) == POLICY.crm_defaults


def test_W4_no_write_when_nothing_differs() -> None:
    g = gev()
    mapping, record = synced(g)
    for d in (
        judge(m365(), mapping, g.model_copy(update={"change_key": "new"}), record),
        judge(crm_change(), mapping, g, record.model_copy(update={"version": "v5"})),
    ):
        assert kinds(d) == ["skip"] and d.rule == "W4" and not d.writes
    # whitespace, attendee order and names are not edits
    noisy = g.appointment.model_copy(update={"subject": " Quarterly  review ", "body": "\n"})
    d = decide(
        m365(), mapping, g.model_copy(update={"appointment": noisy, "change_key": "n2"}), record, POLICY, NOW
    )
    assert d.rule == "W4"


def test_X1_logical_removal_unlinks_and_never_deletes() -> None:
    g = gev()
    mapping, record = synced(g)
    d = decide(m365(kind=ChangeType.DELETED), mapping, None, record, POLICY, NOW, Facts(logical_removal=True))
    assert kinds(d) == ["unlink"] and d.rule == "X1" and not d.writes
    private_now = g.model_copy(
        update={"appointment": g.appointment.model_copy(update={"sensitivity": Sensitivity.PRIVATE})}
    )
    skip_private = POLICY.model_copy(update={"private_events": "skip"})
    assert kinds(judge(m365(), mapping, private_now, record, policy=skip_private)) == ["unlink"]


def test_X1_too_many_deletes_in_a_run_stop_for_an_operator() -> None:
    g = gev()
    mapping, record = synced(g)
    facts = Facts(deletes_this_run=POLICY.max_deletes_per_run)
    d = decide(m365(kind=ChangeType.DELETED), mapping, None, record, POLICY, NOW, facts)
    assert d.rule == "X1" and kinds(d) == ["skip"] and d.actions[0].needs_operator  # type: ignore[union-attr]
    d = decide(crm_change(), mapping, g, None, POLICY, NOW, facts)
    assert d.rule == "X1" and d.actions[0].needs_operator  # type: ignore[union-attr]


def test_F1_every_field_syncs_both_ways_including_reminder_and_visibility() -> None:
    g = gev()
    mapping, record = synced(g)
    edited = g.appointment.model_copy(
        update={
            "reminder_minutes": 10,
            "sensitivity": Sensitivity.PERSONAL,
            "show_as": ShowAs.OOF,
            "categories": ("A",),
        }
    )
    d = decide(
        m365(), mapping, g.model_copy(update={"appointment": edited, "change_key": "z"}), record, POLICY, NOW
    )
    assert set(d.actions[0].changed_fields) == {"reminder_minutes", "sensitivity", "show_as", "categories"}
    c_edit = record.appointment.model_copy(update={"reminder_minutes": 10, "show_as": ShowAs.FREE})
    d = decide(
        crm_change(),
        mapping,
        g,
        record.model_copy(update={"appointment": c_edit, "version": "v2"}),
        POLICY,
        NOW,
    )
    assert d.actions[0].kind == "update_graph" and set(d.actions[0].changed_fields) == {
        "reminder_minutes",
        "show_as",
    }
    for field in (
        "subject",
        "body",
        "start",
        "end",
        "time_zone",
        "is_all_day",
        "locations",
        "organizer",
        "attendees",
        "sensitivity",
        "show_as",
        "reminder_minutes",
        "categories",
        "online_meeting_url",
    ):
        assert field in SYNC_FIELDS


def test_F2_attendees_unknown_to_the_crm_are_kept_by_email() -> None:
    a = appt(attendees=(attendee(CLIENT), attendee("john@contoso.com"), attendee("stranger@else.org")))
    created = judge(m365(), None, gev(a), None).actions[0].appointment
    assert {x.email for x in created.attendees} == {CLIENT, "john@contoso.com", "stranger@else.org"}


def test_F3_attendee_cap_keeps_the_first_alphabetically_and_is_deterministic() -> None:
    people = [attendee(f"p{i:02d}@else.org") for i in range(60)]
    a = appt(
        attendees=(
            *reversed(people),
            attendee(CLIENT),
            attendee("boardroom@contoso.com", Response.ACCEPTED, AttendeeType.RESOURCE),
        )
    )
    policy = POLICY.model_copy(update={"attendee_cap": 50})
    created = judge(m365(), None, gev(a), None, policy=policy).actions[0].appointment
    persons = sorted(x.email for x in created.attendees if x.type is not AttendeeType.RESOURCE)
    assert len(persons) == 50 and persons == sorted([CLIENT, *(p.email for p in people)])[:50]
    assert "boardroom@contoso.com" in {x.email for x in created.attendees}
    again = judge(m365(), None, gev(a), None, policy=policy).actions[0].appointment
    assert again == created
    assert judge(m365(), None, gev(a), None).actions[0].appointment.attendees.__len__() == 62


def test_F4_times_compare_in_utc_and_the_zone_is_kept() -> None:
    g = gev(appt(time_zone="Europe/Berlin"))
    mapping, record = synced(g)
    assert record.appointment.time_zone == "Europe/Berlin"
    windows_named = g.appointment.model_copy(update={"time_zone": "W. Europe Standard Time"})
    d = decide(
        m365(),
        mapping,
        g.model_copy(update={"appointment": windows_named, "change_key": "w"}),
        record,
        POLICY,
        NOW,
    )
    assert d.rule == "W4"  # same zone, other spelling: not an edit


def test_F5_attachment_metadata_syncs_and_none_is_configurable() -> None:
    files = (Attachment(name="deck.pdf", size=1200, content_type="application/pdf"),)
    g = gev(appt(attachments=files))
    assert judge(m365(), None, g, None).actions[0].appointment.attachments == files
    none = POLICY.model_copy(update={"attachments": "none"})
    assert judge(m365(), None, g, None, policy=none).actions[0].appointment.attachments == ()


def test_E1_every_action_names_its_rule_and_reason_and_explain_shows_them() -> None:
    d = judge(m365(), None, gev(is_draft=True), None)
    assert d.explain() == "S2 skip: draft event (isDraft): never synced until it is sent"
    g = gev()
    mapping, record = synced(g)
    d = decide(
        m365(),
        mapping,
        g.model_copy(
            update={"change_key": "2", "appointment": g.appointment.model_copy(update={"subject": "x"})}
        ),
        record,
        POLICY,
        NOW,
    )
    assert all(a.rule and a.reason for a in d.actions) and d.rule == d.actions[0].rule
    assert Person(email="A@B.com").email == "a@b.com"
