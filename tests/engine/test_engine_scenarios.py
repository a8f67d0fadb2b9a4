"""The product documents' own scenarios as tables (seeds: SuperOffice 1-10, Momentus, Sage CRM,
InterAction, Practifi). Each row: the situation, the rule we expect to decide, the actions we expect."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from sync_core.domain.actions import ChangeType
from sync_core.domain.model import AttendeeType, Origin, Response, Sensitivity, Status
from sync_core.domain.policy import DeletePolicy, RoomMapping
from sync_core.engine.decide import decide
from sync_core.engine.inputs import Decision, Facts
from tests.engine.builders import (
    CLIENT,
    KNOWN,
    NOW,
    POLICY,
    appt,
    attendee,
    crm_change,
    edited,
    gev,
    judge,
    m365,
    rec,
    synced,
    weekly,
)

LINDA, JULIE, JOHN, MIKE = "linda@contoso.com", "julie@contoso.com", "john@contoso.com", "mike@contoso.com"
BOARD, HALL = "boardroom@contoso.com", "hall@contoso.com"
Case = Callable[[], Decision]


def _invite(*people: str, organizer: str = CLIENT, **kw):  # type: ignore[no-untyped-def]
    return appt(organizer=organizer, attendees=tuple(attendee(p) for p in people), **kw)


def _copy(a, mailbox: str, response: Response = Response.ACCEPTED, **kw):  # type: ignore[no-untyped-def]
    return gev(
        a, mailbox=mailbox, event_id="e-" + mailbox.split("@")[0], is_organizer=False, response=response, **kw
    )


def _so1() -> Decision:  # Linda invites a known customer from the CRM: it must appear in her Outlook
    return judge(crm_change(kind=ChangeType.CREATED), None, None, rec())


def _so2() -> Decision:  # the customer deletes (declines) the invitation: Linda's CRM shows the answer
    g = gev()
    mapping, record = synced(g)
    return decide(
        m365(), mapping, edited(g, attendees=(attendee(CLIENT, Response.DECLINED),)), record, POLICY, NOW
    )


def _so3() -> Decision:  # Linda invites from Outlook: the CRM gets the appointment
    return judge(m365(kind=ChangeType.CREATED), None, gev(), None)


def _so3_accept() -> Decision:  # ... and the customer's acceptance
    g = gev()
    mapping, record = synced(g)
    return decide(
        m365(), mapping, edited(g, attendees=(attendee(CLIENT, Response.ACCEPTED),)), record, POLICY, NOW
    )


def _so4() -> Decision:  # a known customer invites Julie, who tentatively accepts
    return judge(m365(), None, _copy(_invite(JULIE), JULIE, Response.TENTATIVE), None)


def _so4_received() -> Decision:  # ... not while the invitation is only received
    return judge(m365(), None, _copy(_invite(JULIE), JULIE, Response.NOT_RESPONDED), None)


def _so5() -> Decision:  # invited with John and Mike, who are not in the CRM: all participants kept
    return judge(m365(), None, _copy(_invite(LINDA, JOHN, MIKE), LINDA), None)


def _so6_delete_one() -> Decision:  # recurring invite; Linda deletes one occurrence
    series = _copy(
        _invite(LINDA, recurrence=weekly((NOW + timedelta(days=1)).date())), LINDA, type="seriesMaster"
    )
    mapping, record = synced(series)
    gone = NOW + timedelta(days=8)
    return decide(
        m365(series.event_id), mapping, edited(series, cancelled_occurrences=(gone,)), record, POLICY, NOW
    )


def _so6_alarm() -> Decision:  # ... and sets the alarm: it syncs (SuperOffice loses it)
    g = _copy(_invite(LINDA), LINDA)
    mapping, record = synced(g)
    return decide(m365(g.event_id), mapping, edited(g, reminder_minutes=15), record, POLICY, NOW)


def _so7() -> Decision:  # invites Linda and Julie: Julie's copy joins Linda's record, never a second one
    a = _invite(LINDA, JULIE)
    mapping, record = synced(_copy(a, LINDA))
    return judge(m365("e-julie", JULIE), mapping, _copy(a, JULIE, Response.DECLINED), record)


def _so8() -> Decision:  # Linda marks the invite private and sets an alarm
    g = _copy(_invite(LINDA), LINDA)
    mapping, record = synced(g)
    edit = edited(g, sensitivity=Sensitivity.PRIVATE, reminder_minutes=30)
    return decide(
        m365(g.event_id), mapping, edit, record, POLICY.model_copy(update={"private_events": "full"}), NOW
    )


def _so9() -> Decision:  # recurring project meeting without end: the whole series, no cap at 100
    series = _copy(_invite(LINDA, recurrence=weekly(NOW.date())), LINDA, type="seriesMaster")
    return judge(m365(series.event_id), None, series, None)


def _so10() -> Decision:  # an unknown customer invites Linda and Julie: the same answer for both
    a = _invite(LINDA, JULIE, organizer="someone@unknown.org")
    for mailbox in (LINDA, JULIE):
        d = decide(
            m365("e-" + mailbox.split("@")[0], mailbox), None, _copy(a, mailbox), None, POLICY, NOW, Facts()
        )
        assert d.rule == "S5"
    return d


SUPEROFFICE: list[tuple[str, Case, str, list[str]]] = [
    ("SO-1 CRM invite shows in Outlook", _so1, "W1", ["create_graph"]),
    ("SO-2 customer declines", _so2, "L6", ["update_crm"]),
    ("SO-3 Outlook invite shows in CRM", _so3, "I2", ["create_crm"]),
    ("SO-3 customer accepts", _so3_accept, "L6", ["update_crm"]),
    ("SO-4 tentatively accepted", _so4, "I2", ["create_crm"]),
    ("SO-4 only received", _so4_received, "S8", ["skip"]),
    ("SO-5 unknown participants kept", _so5, "I2", ["create_crm"]),
    ("SO-6 one occurrence deleted", _so6_delete_one, "R3", ["update_crm"]),
    ("SO-6 alarm set", _so6_alarm, "F1", ["update_crm"]),
    ("SO-7 second invitee joins", _so7, "I1", ["link_copy", "update_crm"]),
    ("SO-8 private and alarm", _so8, "F1", ["update_crm"]),
    ("SO-9 series without end", _so9, "R1", ["create_crm"]),
    ("SO-10 unknown sender, same answer", _so10, "S5", ["skip"]),
]


@pytest.mark.parametrize(
    ("case", "expected_rule", "expected_kinds"), [c[1:] for c in SUPEROFFICE], ids=[c[0] for c in SUPEROFFICE]
)
def test_SO_superoffice_user_scenarios(case: Case, expected_rule: str, expected_kinds: list[str]) -> None:
    d = case()
    assert (d.rule, [a.kind for a in d.actions]) == (expected_rule, expected_kinds), d.explain()


def test_F2_SO5_participants_unknown_to_the_crm_are_on_the_record() -> None:
    created = _so5().actions[0].appointment  # type: ignore[union-attr]
    assert {a.email for a in created.attendees} == {LINDA, JOHN, MIKE}


def test_F1_SO8_visibility_and_alarm_both_sync() -> None:
    assert set(_so8().actions[0].changed_fields) == {"sensitivity", "reminder_minutes"}  # type: ignore[union-attr]


# ---- Momentus ----------------------------------------------------------------------------------------
def _room(room: str, response: Response = Response.NONE, **kw):  # type: ignore[no-untyped-def]
    return appt(attendees=(attendee(CLIENT), attendee(room, response, AttendeeType.RESOURCE)), **kw)


MODERATED = POLICY.model_copy(
    update={
        "rooms": (
            RoomMapping(mailbox=BOARD, crm_space_id="s", display_name="Board Room", mode="outlook_moderated"),
        )
    }
)


def _mom_hall_mapping():  # type: ignore[no-untyped-def]
    first = judge(m365(), None, gev(_room(HALL)), None)
    mapping = first.mapping.model_copy(update={"crm_id": "c1"})  # type: ignore[union-attr]
    linked = judge(
        m365("e-hall", HALL),
        mapping,
        gev(_room(HALL), mailbox=HALL, event_id="e-hall", is_organizer=False),
        rec(first.actions[0].appointment),
    )  # type: ignore[union-attr]
    return linked.mapping, rec(first.actions[0].appointment)  # type: ignore[union-attr]


def _mom_status(status: Status, facts: Facts = KNOWN) -> Decision:
    mapping, record = _mom_hall_mapping()
    changed = record.model_copy(
        update={"version": "v2", "appointment": record.appointment.model_copy(update={"status": status})}
    )
    return decide(crm_change(), mapping, gev(_room(HALL)), changed, POLICY, NOW, facts)


OTHER = gev(_room(HALL), mailbox=HALL, event_id="e-other", ical_uid="U-OTHER", is_organizer=False)

MOMENTUS: list[tuple[str, Case, str, list[str]]] = [
    (
        "Outlook-managed auto-accept: pending",
        lambda: judge(m365(), None, gev(_room(BOARD)), None),
        "M2",
        ["skip"],
    ),
    (
        "Outlook-managed auto-accept: accepted -> confirmed",
        lambda: judge(m365(), None, gev(_room(BOARD, Response.ACCEPTED)), None),
        "M2",
        ["create_crm"],
    ),
    (
        "Outlook-managed auto-accept: declined -> nothing",
        lambda: judge(m365(), None, gev(_room(BOARD, Response.DECLINED)), None),
        "M2",
        ["skip"],
    ),
    (
        "Outlook-managed moderated: moderator accepts",
        lambda: judge(m365(), None, gev(_room(BOARD, Response.ACCEPTED)), None, policy=MODERATED),
        "M3",
        ["create_crm"],
    ),
    (
        "Outlook-managed moderated: moderator declines",
        lambda: judge(m365(), None, gev(_room(BOARD, Response.DECLINED)), None, policy=MODERATED),
        "M3",
        ["skip"],
    ),
    (
        "Momentus-managed: booked as prospect",
        lambda: judge(m365(), None, gev(_room(HALL)), None),
        "M4",
        ["create_crm"],
    ),
    (
        "Momentus-managed: hold -> organiser told",
        lambda: _mom_status(Status.HOLD),
        "M4",
        ["notify_organizer"],
    ),
    (
        "Momentus-managed: tentative -> organiser told",
        lambda: _mom_status(Status.TENTATIVE),
        "M4",
        ["notify_organizer"],
    ),
    (
        "Momentus-managed: confirm -> accept, overlaps declined",
        lambda: _mom_status(Status.CONFIRMED, Facts(room_overlaps=(OTHER,))),
        "M4",
        ["respond_graph", "respond_graph"],
    ),
    (
        # Momentus: cancelling an event booked from Outlook "the corresponding Outlook event will be
        # declined": the room declines, the organizer's meeting and its attendees stay (issue 16 item 2).
        "Momentus-managed: cancel -> room declines, meeting untouched",
        lambda: _mom_status(Status.CANCELLED),
        "M4",
        ["respond_graph"],
    ),
    (
        "Momentus booking on Outlook-managed room -> written to Outlook",
        lambda: decide(crm_change(), None, None, rec(_room(BOARD, origin=Origin.CRM)), POLICY, NOW),
        "W1",
        ["create_graph"],
    ),
    (
        "Momentus hold is not synced until confirmed",
        lambda: decide(crm_change(), None, None, rec(_room(BOARD, status=Status.HOLD)), POLICY, NOW),
        "L1",
        ["skip"],
    ),
    (
        "no Outlook account: default calendar",
        lambda: decide(
            crm_change(),
            None,
            None,
            rec(appt(organizer="events@contoso.com")),
            POLICY.model_copy(update={"default_calendar": JULIE}),
            NOW,
        ),
        "W2",
        ["create_graph"],
    ),
    (
        "no Outlook account: resource calendar only",
        lambda: decide(
            crm_change(), None, None, rec(_room(BOARD, organizer="events@contoso.com")), POLICY, NOW
        ),
        "W2",
        ["create_graph"],
    ),
]


@pytest.mark.parametrize(
    ("case", "expected_rule", "expected_kinds"), [c[1:] for c in MOMENTUS], ids=[c[0] for c in MOMENTUS]
)
def test_M_momentus_outlook_managed_and_momentus_managed_flows(
    case: Case, expected_rule: str, expected_kinds: list[str]
) -> None:
    d = case()
    assert (d.rule, [a.kind for a in d.actions]) == (expected_rule, expected_kinds), d.explain()


def test_L2_L3_L4_momentus_notes_about_the_sync() -> None:
    g = gev()
    mapping, record = synced(g)
    back = record.model_copy(
        update={
            "version": "v2",
            "appointment": record.appointment.model_copy(update={"status": Status.TENTATIVE}),
        }
    )
    assert decide(crm_change(), mapping, g, back, POLICY, NOW).rule == "L2"  # stays in Outlook
    gone = record.model_copy(
        update={
            "version": "v3",
            "appointment": record.appointment.model_copy(update={"status": Status.CANCELLED}),
        }
    )
    assert [a.kind for a in decide(crm_change(), mapping, g, gone, POLICY, NOW).actions] == ["cancel_graph"]
    assert [
        a.kind for a in decide(m365(kind=ChangeType.DELETED), mapping, None, record, POLICY, NOW).actions
    ] == ["cancel_crm"]


# ---- Sage CRM ----------------------------------------------------------------------------------------
SAGE: list[tuple[str, Case, str, list[str]]] = [
    (
        "organizer is the mailbox owner: normal appointment",
        lambda: judge(m365(), None, gev(), None),
        "I2",
        ["create_crm"],
    ),
    (
        "invitee copy, organizer is a sync user: ignored",
        lambda: judge(m365("e-julie", JULIE), None, _copy(_invite(JULIE, organizer=LINDA), JULIE), None),
        "I2",
        ["skip"],
    ),
    (
        "invitee copy, organizer not a sync user: stub",
        lambda: judge(m365("e-julie", JULIE), None, _copy(_invite(JULIE), JULIE), None),
        "I2",
        ["create_crm"],
    ),
    (
        "CRM appointment goes to the organizer's mailbox only",
        lambda: decide(
            crm_change(), None, None, rec(_invite(JULIE, organizer=LINDA, origin=Origin.CRM)), POLICY, NOW
        ),
        "W1",
        ["create_graph"],
    ),
    (
        "CRM appointment outside the date range",
        lambda: decide(crm_change(), None, None, rec(appt(start=NOW + timedelta(days=900))), POLICY, NOW),
        "S6",
        ["skip"],
    ),
    (
        "recurring CRM appointment syncs as a series",
        lambda: decide(
            crm_change(), None, None, rec(appt(recurrence=weekly(NOW.date()), origin=Origin.CRM)), POLICY, NOW
        ),
        "W1",
        ["create_graph"],
    ),
]


@pytest.mark.parametrize(
    ("case", "expected_rule", "expected_kinds"), [c[1:] for c in SAGE], ids=[c[0] for c in SAGE]
)
def test_I2_sage_crm_organizer_and_stub_rules(
    case: Case, expected_rule: str, expected_kinds: list[str]
) -> None:
    d = case()
    assert (d.rule, [a.kind for a in d.actions]) == (expected_rule, expected_kinds), d.explain()


# ---- InterAction ------------------------------------------------------------------------------------
INTERACTION = POLICY.model_copy(
    update={
        "direction": "m365_to_crm",
        "recurring": "skip",
        "private_events": "skip",
        "activity_sync_days": 30,
    }
)


def test_L5_D2_interaction_activity_conversion_one_way() -> None:
    g = _copy(_invite(LINDA), LINDA)
    assert judge(m365(g.event_id), None, g, None, policy=INTERACTION).actions[0].kind == "create_crm"
    mapping, record = synced(g, policy=INTERACTION)
    after = NOW + timedelta(days=3)  # the meeting has taken place: it becomes an activity
    d = decide(
        m365(g.event_id), mapping, edited(g, body="notes after the meeting"), record, INTERACTION, after
    )
    update = d.actions[0]
    assert update.kind == "update_crm" and set(update.changed_fields) == {"body", "kind"}  # type: ignore[union-attr]
    assert update.appointment.kind.value == "activity"  # type: ignore[union-attr]
    activity = record.model_copy(update={"appointment": update.appointment})  # type: ignore[union-attr]
    future = after + timedelta(days=7)
    d = decide(
        m365(g.event_id),
        mapping,
        edited(g, start=future, end=future + timedelta(hours=1)),
        activity,
        INTERACTION,
        after,
    )
    assert d.actions[0].appointment.kind.value == "meeting"  # type: ignore[union-attr]
    late = NOW + timedelta(days=60)
    assert decide(m365(g.event_id), mapping, edited(g, body="x"), activity, INTERACTION, late).rule == "L5"
    edited_in_crm = record.model_copy(update={"version": "v9"})
    assert decide(crm_change(), mapping, g, edited_in_crm, INTERACTION, NOW).rule == "D2"
    assert (
        judge(
            m365(),
            None,
            gev(appt(recurrence=weekly(NOW.date())), type="seriesMaster"),
            None,
            policy=INTERACTION,
        ).rule
        == "R4"
    )
    assert (
        judge(m365(), None, gev(appt(sensitivity=Sensitivity.PRIVATE)), None, policy=INTERACTION).rule == "S3"
    )
    assert (
        judge(
            m365(g.event_id),
            None,
            _copy(_invite(LINDA), LINDA, Response.NOT_RESPONDED),
            None,
            policy=INTERACTION,
        ).rule
        == "S8"
    )


# ---- Practifi ---------------------------------------------------------------------------------------
def _practifi(setting: dict[str, object], case: Callable[[object], Decision]) -> Decision:
    return case(POLICY.model_copy(update=setting))


INTERNAL = gev(appt(attendees=(attendee(JULIE),)))
PRACTIFI: list[tuple[str, dict[str, object], Callable[[object], Decision], str, list[str]]] = [
    (
        "Sync Internal Events off",
        {},
        lambda p: decide(m365(), None, INTERNAL, None, p, NOW, Facts(known_contacts=frozenset({JULIE}))),
        "S4",
        ["skip"],
    ),  # type: ignore[arg-type]
    (
        "Sync Internal Events on",
        {"internal_events": "sync"},
        lambda p: decide(m365(), None, INTERNAL, None, p, NOW, Facts(known_contacts=frozenset({JULIE}))),
        "I2",
        ["create_crm"],
    ),  # type: ignore[arg-type]
    (
        "Delete Synced Events: delete",
        {},
        lambda p: decide(m365(kind=ChangeType.DELETED), *_mapped(), p, NOW),
        "L4",
        ["cancel_crm"],
    ),  # type: ignore[arg-type]
    (
        "Delete Synced Events: keep",
        {"delete_policy": DeletePolicy(m365_to_crm="keep", crm_to_m365="keep")},
        lambda p: decide(m365(kind=ChangeType.DELETED), *_mapped(), p, NOW),
        "L4",
        ["unlink"],
    ),  # type: ignore[arg-type]
    (
        "Sync Private Events: without attendees",
        {},
        lambda p: judge(m365(), None, gev(appt(sensitivity=Sensitivity.PRIVATE)), None, policy=p),
        "I2",
        ["create_crm"],
    ),  # type: ignore[arg-type]
    (
        "Sync Private Events off",
        {"private_events": "skip"},
        lambda p: judge(m365(), None, gev(appt(sensitivity=Sensitivity.PRIVATE)), None, policy=p),
        "S3",
        ["skip"],
    ),  # type: ignore[arg-type]
    ("Sync Direction two-way: M365 takes precedence", {}, lambda p: _both_edited(p), "D3", ["update_crm"]),  # type: ignore[arg-type]
    (
        "Sync Direction one-way",
        {"direction": "m365_to_crm"},
        lambda p: decide(crm_change(), None, None, rec(), p, NOW),
        "D2",
        ["skip"],
    ),  # type: ignore[arg-type]
    (
        "Sync Unmatched Events off",
        {},
        lambda p: decide(m365(), None, gev(), None, p, NOW, Facts()),
        "S5",
        ["skip"],
    ),  # type: ignore[arg-type]
    (
        "Sync Unmatched Events on",
        {"unmatched_events": "sync"},
        lambda p: decide(m365(), None, gev(), None, p, NOW, Facts()),
        "I2",
        ["create_crm"],
    ),  # type: ignore[arg-type]
    (
        "Data imports are not synchronized",
        {},
        lambda p: decide(crm_change(), None, None, rec(appt(origin=Origin.IMPORT)), p, NOW),
        "S7",
        ["skip"],
    ),  # type: ignore[arg-type]
    (
        "Draft events don't appear",
        {},
        lambda p: judge(m365(), None, gev(is_draft=True), None, policy=p),
        "S2",
        ["skip"],
    ),  # type: ignore[arg-type]
]


def _mapped():  # type: ignore[no-untyped-def]
    g = gev()
    mapping, record = synced(g)
    return mapping, None, record


def _both_edited(policy) -> Decision:  # type: ignore[no-untyped-def]
    g = gev()
    mapping, record = synced(g)
    crm_edit = record.model_copy(
        update={"version": "v2", "appointment": record.appointment.model_copy(update={"subject": "CRM"})}
    )
    return decide(m365(), mapping, edited(g, subject="M365"), crm_edit, policy, NOW)


@pytest.mark.parametrize(
    ("setting", "case", "expected_rule", "expected_kinds"),
    [c[1:] for c in PRACTIFI],
    ids=[c[0] for c in PRACTIFI],
)
def test_S_practifi_settings(
    setting: dict[str, object],
    case: Callable[[object], Decision],
    expected_rule: str,
    expected_kinds: list[str],
) -> None:
    d = _practifi(setting, case)
    assert (d.rule, [a.kind for a in d.actions]) == (expected_rule, expected_kinds), d.explain()


def test_F3_M1_practifi_fifty_attendees_alphabetically_and_unique_resource_names() -> None:
    from sync_core.domain.policy import load_policy
    from sync_core.errors import ConfigurationError

    people = tuple(attendee(f"guest{i:03d}@else.org") for i in range(70))
    capped = judge(
        m365(),
        None,
        gev(appt(attendees=(attendee(CLIENT), *people))),
        None,
        policy=POLICY.model_copy(update={"attendee_cap": 50}),
    )
    kept = sorted(a.email for a in capped.actions[0].appointment.attendees)  # type: ignore[union-attr]
    assert kept == sorted([CLIENT, *(p.email for p in people)])[:50]
    with pytest.raises(ConfigurationError, match="ambiguous"):
        load_policy(
            {
                "rooms": [
                    {"mailbox": "a@contoso.com", "crm_space_id": "1", "display_name": "Room"},
                    {"mailbox": "b@contoso.com", "crm_space_id": "2", "display_name": "ROOM"},
                ]
            }
        )
