"""Rules S1-S8: what is in scope."""

from __future__ import annotations

from datetime import timedelta

from sync_core.domain.actions import ChangeType
from sync_core.domain.model import Origin, Person, Response, Sensitivity, Status
from sync_core.domain.policy import Policy, SyncUser
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
    synced,
    weekly,
)


def test_S1_mailbox_of_a_disabled_or_unknown_user_is_not_synced() -> None:
    policy = POLICY.model_copy(
        update={"sync_users": (SyncUser(email="linda@contoso.com", crm_user_id="u", enabled=False),)}
    )
    d = judge(m365(), None, gev(), None, policy=policy)
    assert d.rule == "S1" and kinds(d) == ["skip"]
    d = judge(m365(mailbox="mike@contoso.com"), None, gev(mailbox="mike@contoso.com"), None)
    assert d.rule == "S1"


def test_S1_crm_events_go_to_the_primary_of_several_mailboxes() -> None:
    user = SyncUser(
        email="linda@contoso.com",
        primary_mailbox="team@contoso.com",
        mailboxes=("linda@contoso.com",),
        crm_user_id="u",
    )
    policy = Policy(sync_users=(user,), own_domains=("contoso.com",))
    d = judge(crm_change(), None, None, rec(), policy=policy)
    assert d.actions[0].kind == "create_graph" and d.actions[0].mailbox == "team@contoso.com"
    # and both of the user's mailboxes are synced
    assert judge(m365(), None, gev(), None, policy=policy).rule != "S1"


def test_S2_draft_of_a_mapped_event_is_not_synced_either() -> None:
    g = gev()
    mapping, record = synced(g)
    draft = g.model_copy(update={"is_draft": True, "change_key": "ck9"})
    assert judge(m365(), mapping, draft, record).rule == "S2"


def test_S3_private_events_sync_without_attendees_by_default() -> None:
    g = gev(appt(sensitivity=Sensitivity.PRIVATE, body="secret agenda"))
    d = judge(m365(), None, g, None)
    created = d.actions[0].appointment
    assert d.actions[0].kind == "create_crm"
    assert created.attendees == () and created.body == "" and created.subject == "Quarterly review"
    assert created.start == g.appointment.start and created.show_as == g.appointment.show_as


def test_S3_private_events_skip_and_full_are_configurable() -> None:
    g = gev(appt(sensitivity=Sensitivity.CONFIDENTIAL, body="agenda"))
    skip = POLICY.model_copy(update={"private_events": "skip"})
    assert judge(m365(), None, g, None, policy=skip).rule == "S3"
    full = POLICY.model_copy(update={"private_events": "full"})
    created = judge(m365(), None, g, None, policy=full).actions[0].appointment
    assert created.body == "agenda" and created.attendees


def test_S3_private_event_matching_uses_the_full_attendee_list() -> None:
    # Without details the CRM gets no attendees, but the contact still decides it is in scope (S5).
    g = gev(appt(sensitivity=Sensitivity.PRIVATE))
    assert decide(m365(), None, g, None, POLICY, NOW, Facts()).rule == "S5"


def test_S4_internal_events_are_skipped_by_default_and_configurable() -> None:
    g = gev(appt(attendees=(attendee("julie@contoso.com"),)))
    facts = Facts(known_contacts=frozenset({"julie@contoso.com"}))
    assert decide(m365(), None, g, None, POLICY, NOW, facts).rule == "S4"
    policy = POLICY.model_copy(update={"internal_events": "sync"})
    assert decide(m365(), None, g, None, policy, NOW, facts).actions[0].kind == "create_crm"


def test_S5_unmatched_events_are_skipped_by_default_and_configurable() -> None:
    g = gev(appt(attendees=(attendee("stranger@else.com"),)))
    assert judge(m365(), None, g, None).rule == "S5"
    policy = POLICY.model_copy(update={"unmatched_events": "sync"})
    assert judge(m365(), None, g, None, policy=policy).actions[0].kind == "create_crm"


def test_S5_same_decision_whoever_sends_the_invite() -> None:
    # SO-10: Linda's and Julie's copies of the same invitation get the same answer.
    a = appt(
        organizer="ext@unknown.org", attendees=(attendee("linda@contoso.com"), attendee("julie@contoso.com"))
    )
    for mailbox in ("linda@contoso.com", "julie@contoso.com"):
        g = gev(a, mailbox=mailbox, event_id="e-" + mailbox, is_organizer=False, response=Response.ACCEPTED)
        assert decide(m365(g.event_id, mailbox), None, g, None, POLICY, NOW, Facts()).rule == "S5"
        known = Facts(known_contacts=frozenset({"ext@unknown.org"}))
        assert (
            decide(m365(g.event_id, mailbox), None, g, None, POLICY, NOW, known).actions[0].kind
            == "create_crm"
        )


def test_S6_only_events_inside_the_window_sync() -> None:
    old = gev(appt(start=NOW - timedelta(days=POLICY.past_days + 2)))
    far = gev(appt(start=NOW + timedelta(days=POLICY.future_days + 2)))
    assert judge(m365(), None, old, None).rule == "S6"
    assert judge(m365(), None, far, None).rule == "S6"
    crm_far = rec(appt(start=NOW + timedelta(days=POLICY.future_days + 2), origin=Origin.CRM))
    assert judge(crm_change(), None, None, crm_far).rule == "S6"


def test_S6_a_series_that_reaches_into_the_window_is_kept() -> None:
    started_long_ago = appt(
        start=NOW - timedelta(days=400), recurrence=weekly((NOW - timedelta(days=400)).date())
    )
    d = judge(m365(), None, gev(started_long_ago, type="seriesMaster"), None)
    assert d.actions[0].kind == "create_crm" and d.rule == "R1"


def test_S7_bulk_imported_crm_records_are_never_pushed() -> None:
    imported = rec(appt(origin=Origin.IMPORT))
    assert judge(crm_change(), None, None, imported).rule == "S7"
    allowed = POLICY.model_copy(update={"skip_imported": False})
    assert judge(crm_change(), None, None, imported, policy=allowed).actions[0].kind == "create_graph"


def test_S8_external_invitation_syncs_once_accepted_not_while_received() -> None:
    a = appt(organizer=CLIENT, attendees=(attendee("linda@contoso.com"),))
    received = gev(a, is_organizer=False, response=Response.NOT_RESPONDED)
    assert judge(m365(), None, received, None).rule == "S8"
    for response in (Response.ACCEPTED, Response.TENTATIVE):
        accepted = received.model_copy(update={"response": response})
        d = judge(m365(), None, accepted, None)
        assert d.actions[0].kind == "create_crm", d.explain()
        assert d.actions[0].appointment.organizer == Person(email=CLIENT)
    declined = received.model_copy(update={"response": Response.DECLINED})
    assert judge(m365(), None, declined, None).rule == "S8"


def test_S8_status_of_created_record_is_the_configured_one() -> None:
    a = appt(organizer=CLIENT, attendees=(attendee("linda@contoso.com"),))
    g = gev(a, is_organizer=False, response=Response.ACCEPTED)
    assert judge(m365(), None, g, None).actions[0].appointment.status is Status.CONFIRMED


def test_S6_created_event_in_window_is_not_confused_by_change_type() -> None:
    d = judge(m365(kind=ChangeType.CREATED), None, gev(), None)
    assert d.actions[0].kind == "create_crm"
