"""First-version behaviours: create, update, cancel, echo, drafts, CRM -> M365 create."""

from __future__ import annotations

from datetime import UTC, datetime

from sync_core.domain.actions import ChangeType, Receipt
from sync_core.domain.model import Status
from tests.engine.builders import appt, crm_change, gev, judge, kinds, m365, rec, synced


def test_I2_organizer_copy_creates_the_crm_record() -> None:
    d = judge(m365(kind=ChangeType.CREATED), None, gev(), None)
    assert kinds(d) == ["create_crm"]
    assert d.rule == "I2"
    assert d.meeting_key == "ical:UID-1"
    assert d.actions[0].appointment.status is Status.CONFIRMED


def test_W4_update_lists_only_the_changed_fields() -> None:
    g = gev()
    mapping, record = synced(g)
    moved = g.model_copy(
        update={"change_key": "ck2", "appointment": g.appointment.model_copy(update={"subject": "New"})}
    )
    d = judge(m365(), mapping, moved, record)
    assert kinds(d) == ["update_crm"]
    assert d.actions[0].changed_fields == ("subject",)


def test_L4_deleted_in_m365_cancels_the_crm_record() -> None:
    g = gev()
    mapping, record = synced(g)
    d = judge(m365(kind=ChangeType.DELETED), mapping, None, record)
    assert kinds(d) == ["cancel_crm"] and d.rule == "L4"


def test_D4_our_own_graph_write_read_back_is_skipped() -> None:
    g = gev(change_key="ck-ours")
    mapping, record = synced(g)
    receipt = Receipt(
        target_id=g.event_id, version="ck-ours", fingerprint="x", at=datetime(2025, 1, 1, tzinfo=UTC)
    )
    mapping = mapping.model_copy(update={"graph_receipt": receipt})
    edited = g.model_copy(
        update={"appointment": g.appointment.model_copy(update={"subject": "what we wrote"})}
    )
    d = judge(m365(), mapping, edited, record)
    assert kinds(d) == ["skip"] and d.rule == "D4"


def test_S2_draft_events_are_never_synced() -> None:
    d = judge(m365(), None, gev(is_draft=True), None)
    assert kinds(d) == ["skip"] and d.rule == "S2"


def test_W1_confirmed_crm_record_is_written_to_the_organizers_primary_mailbox() -> None:
    d = judge(crm_change(kind=ChangeType.CREATED), None, None, rec())
    assert kinds(d) == ["create_graph"] and d.rule == "W1"
    assert d.actions[0].mailbox == "linda@contoso.com"
    assert len(d.actions[0].transaction_id) == 36


def test_L1_a_crm_prospect_is_not_pushed() -> None:
    d = judge(crm_change(), None, None, rec(appt(status=Status.PROSPECT)))
    assert kinds(d) == ["skip"] and d.rule == "L1"
