"""Rules D1-D4 (direction, conflicts, echoes) and I1-I5 (identity, duplicates)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sync_core.domain import identity
from sync_core.domain.actions import ChangeType, Receipt
from sync_core.domain.model import Origin, Person, Response, Side
from sync_core.engine.content_sync import receipt_fingerprint
from sync_core.engine.decide import decide
from sync_core.engine.inputs import Facts
from tests.engine.builders import (
    CLIENT,
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
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def test_D1_direction_crm_to_m365_ignores_m365_items() -> None:
    policy = POLICY.model_copy(update={"direction": "crm_to_m365"})
    assert judge(m365(), None, gev(), None, policy=policy).rule == "D1"
    g = gev()
    mapping, record = synced(g)
    d = judge(m365(), mapping, edited(g, subject="local"), record, policy=policy)
    assert d.rule == "D1" and kinds(d) == ["skip"]
    # and the next CRM change overwrites the M365 edit
    d = judge(crm_change(), mapping, edited(g, subject="local"), crm_edited(record, body="x"), policy=policy)
    update = next(a for a in d.actions if a.kind == "update_graph")
    assert set(update.changed_fields) == {"subject", "body"}


def test_D2_one_way_m365_to_crm_never_flows_back_and_overwrites_crm_edits() -> None:
    policy = POLICY.model_copy(update={"direction": "m365_to_crm"})
    g = gev()
    mapping, record = synced(g, policy=policy)
    edited_in_crm = crm_edited(record, subject="CRM edit")
    d = judge(crm_change(), mapping, g, edited_in_crm, policy=policy)
    assert d.rule == "D2" and kinds(d) == ["skip"]
    d = judge(m365(), mapping, edited(g, body="notes"), edited_in_crm, policy=policy)
    assert kinds(d) == ["update_crm"]
    assert set(d.actions[0].changed_fields) == {"subject", "body"}
    assert d.actions[0].appointment.subject == "Quarterly review"


def test_D3_fields_changed_on_one_side_merge_three_way() -> None:
    g = gev()
    mapping, record = synced(g)
    d = decide(
        m365(), mapping, edited(g, subject="M365 subject"), crm_edited(record, body="CRM notes"), POLICY, NOW
    )
    by_kind = {a.kind: a for a in d.actions}
    assert by_kind["update_crm"].changed_fields == ("subject",)
    assert by_kind["update_graph"].changed_fields == ("body",)
    assert d.mapping is not None and d.mapping.snapshot is not None
    assert (d.mapping.snapshot.subject, d.mapping.snapshot.body) == ("M365 subject", "CRM notes")


def test_D3_same_field_changed_on_both_sides_m365_wins_by_default_and_says_so() -> None:
    g = gev()
    mapping, record = synced(g)
    d = decide(
        m365(), mapping, edited(g, subject="from M365"), crm_edited(record, subject="from CRM"), POLICY, NOW
    )
    assert kinds(d) == ["update_crm"] and d.rule == "D3"
    assert d.actions[0].appointment.subject == "from M365"
    assert "conflict on subject: m365 wins" in d.reason


def test_D3_crm_wins_and_newest_wins_are_configurable() -> None:
    g = gev()
    mapping, record = synced(g)
    m_edit, c_edit = edited(g, subject="from M365"), crm_edited(record, subject="from CRM")
    crm_wins = POLICY.model_copy(update={"conflict": "crm_wins"})
    d = decide(m365(), mapping, m_edit, c_edit, crm_wins, NOW)
    assert kinds(d) == ["update_graph"] and d.actions[0].appointment.subject == "from CRM"
    newest = POLICY.model_copy(update={"conflict": "newest_wins"})
    m_new = m_edit.model_copy(update={"last_modified": T0 + timedelta(hours=2)})
    c_old = c_edit.model_copy(update={"updated_at": T0 + timedelta(hours=1)})
    assert decide(m365(), mapping, m_new, c_old, newest, NOW).actions[0].kind == "update_crm"
    c_new = c_edit.model_copy(update={"updated_at": T0 + timedelta(hours=3)})
    assert decide(m365(), mapping, m_new, c_new, newest, NOW).actions[0].kind == "update_graph"


def test_D4_our_own_crm_write_read_back_is_skipped_by_version_or_content() -> None:
    g = gev()
    mapping, record = synced(g)
    by_version = Receipt(target_id="c1", version="v1", fingerprint="-", at=T0)
    d = decide(crm_change(), mapping.model_copy(update={"crm_receipt": by_version}), g, record, POLICY, NOW)
    assert d.rule == "D4"
    by_content = Receipt(
        target_id="c1", version="v0", fingerprint=receipt_fingerprint(record.appointment), at=T0
    )
    d = decide(crm_change(), mapping.model_copy(update={"crm_receipt": by_content}), g, record, POLICY, NOW)
    assert d.rule == "D4"
    other_record = Receipt(target_id="c2", version="v1", fingerprint="-", at=T0)
    d = decide(crm_change(), mapping.model_copy(update={"crm_receipt": other_record}), g, record, POLICY, NOW)
    assert d.rule == "W4"  # not an echo, and nothing differs


def test_I1_occurrence_key_is_series_key_plus_original_start_not_icaluid() -> None:
    start = datetime(2025, 3, 10, 9, tzinfo=UTC)
    occ = gev(type="occurrence", ical_uid="OCC-UID-DIFFERENT", series_master_id="m1", original_start=start)
    key = identity.meeting_key(occ, "ical:SERIES")
    assert key == "ical:SERIES|2025-03-10T09:00:00Z"
    other_copy = occ.model_copy(
        update={"mailbox": "julie@contoso.com", "ical_uid": "ANOTHER", "event_id": "x"}
    )
    assert identity.meeting_key(other_copy, "ical:SERIES") == key
    assert identity.meeting_key(gev()) == "ical:UID-1"


def test_I1_copies_of_one_meeting_join_one_record() -> None:
    # Linda organises and invites Julie (both sync users): Julie's copy joins, never creates (SO-7).
    a = appt(attendees=(attendee(CLIENT), attendee("julie@contoso.com")))
    g = gev(a)
    mapping, record = synced(g)
    julie = gev(
        a, mailbox="julie@contoso.com", event_id="e-julie", is_organizer=False, response=Response.NONE
    )
    d = judge(m365("e-julie", "julie@contoso.com"), mapping, julie, record)
    assert kinds(d) == ["link_copy"] and d.rule == "I1"
    assert d.mapping is not None and {c.mailbox for c in d.mapping.copies} == {
        "linda@contoso.com",
        "julie@contoso.com",
    }


def test_I2_invitee_copy_of_a_sync_user_organizer_is_ignored_until_mapped() -> None:
    a = appt(attendees=(attendee(CLIENT), attendee("julie@contoso.com")))
    julie = gev(
        a, mailbox="julie@contoso.com", event_id="e-julie", is_organizer=False, response=Response.ACCEPTED
    )
    d = judge(m365("e-julie", "julie@contoso.com"), None, julie, None)
    assert d.rule == "I2" and kinds(d) == ["skip"]


def test_I2_invitee_copy_updates_only_its_own_response() -> None:
    a = appt(attendees=(attendee(CLIENT), attendee("julie@contoso.com")))
    mapping, record = synced(gev(a))
    julie = gev(
        a.model_copy(update={"subject": "local edit"}),
        mailbox="julie@contoso.com",
        event_id="e-julie",
        is_organizer=False,
        response=Response.DECLINED,
    )
    d = judge(m365("e-julie", "julie@contoso.com"), mapping, julie, record)
    update = next(a for a in d.actions if a.kind == "update_crm")
    assert update.rule == "L6" and update.changed_fields == ("attendees",)
    assert update.appointment.subject == "Quarterly review"
    assert {x.email: x.response for x in update.appointment.attendees}[
        "julie@contoso.com"
    ] is Response.DECLINED


def test_I2_stub_first_invitee_creates_later_invitees_join() -> None:
    a = appt(organizer=CLIENT, attendees=(attendee("linda@contoso.com"), attendee("julie@contoso.com")))
    linda = gev(a, is_organizer=False, response=Response.ACCEPTED)
    d = judge(m365(), None, linda, None)
    assert d.actions[0].kind == "create_crm" and d.rule == "I2"
    assert d.actions[0].appointment.organizer == Person(email=CLIENT)
    assert d.mapping is not None
    mapping = d.mapping.model_copy(update={"crm_id": "c1"})
    record = rec(d.actions[0].appointment, external_ref=d.meeting_key)
    julie = gev(
        a, mailbox="julie@contoso.com", event_id="e-julie", is_organizer=False, response=Response.ACCEPTED
    )
    d = judge(m365("e-julie", "julie@contoso.com"), mapping, julie, record)
    assert "create_crm" not in kinds(d) and kinds(d)[0] == "link_copy"


def test_I3_creates_carry_deterministic_idempotency_keys_and_transaction_ids() -> None:
    a = judge(m365(), None, gev(), None).actions[0]
    b = judge(m365(), None, gev(change_key="other"), None).actions[0]
    assert a.kind == b.kind == "create_crm"
    assert a.idempotency_key == b.idempotency_key == identity.idempotency_key("ical:UID-1", Side.CRM)
    t1 = decide(crm_change(), None, None, rec(), POLICY, NOW).actions[0]
    t2 = decide(crm_change(), None, None, rec(version="v7"), POLICY, NOW).actions[0]
    assert t1.kind == "create_graph" and t1.transaction_id == t2.transaction_id
    assert len(t1.transaction_id) == 36 and identity.transaction_id("crm:c1") == t1.transaction_id


def test_I3_our_create_found_without_mapping_is_linked_not_created_again() -> None:
    # Crash between the Graph create and the mapping save: the event carries our tag.
    record = rec()
    ours = gev(record.appointment, written_by_us="crm:c1")
    d = judge(m365(), None, ours, record)
    assert "create_crm" not in kinds(d) and d.actions[0].kind == "link_copy"
    d = judge(crm_change(), None, ours, record)
    assert "create_graph" not in kinds(d) and d.rule == "I3"


def test_I3_crm_record_created_from_m365_without_mapping_waits_for_the_m365_side() -> None:
    record = rec(appt(origin=Origin.M365), external_ref="ical:UID-1")
    d = judge(crm_change(), None, None, record)
    assert d.rule == "I3" and kinds(d) == ["skip"]


def test_I4_keys_do_not_depend_on_event_ids_that_change_on_move() -> None:
    # Ids are immutable ids (Prefer: IdType="ImmutableId", in the Graph adapter); the meeting key does
    # not use the event id at all, so even a re-created id keeps the mapping.
    moved = gev(event_id="AAMk-new-id", mailbox="linda@contoso.com")
    assert identity.meeting_key(moved) == identity.meeting_key(gev())


def test_I5_onboarding_adopts_an_existing_crm_record_instead_of_creating() -> None:
    existing = rec(appt(subject="Quarterly review", origin=Origin.M365), external_ref="ical:UID-1")
    d = judge(m365(), None, gev(), existing)
    assert d.rule == "I5" and "create_crm" not in kinds(d)
    assert d.mapping is not None and d.mapping.crm_id == "c1"
    d = judge(crm_change(), None, gev(), existing)
    assert d.rule == "I5" and "create_graph" not in kinds(d)


def test_I5_backfill_is_the_same_code_path_as_a_notification() -> None:
    resync = judge(m365(kind=ChangeType.UPDATED), None, gev(), None)  # what a delta round enqueues
    notified = judge(m365(kind=ChangeType.CREATED), None, gev(), None)
    assert resync == notified
    assert Facts() == Facts()
