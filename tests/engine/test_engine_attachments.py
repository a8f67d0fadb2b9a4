"""Rule F5 (attachments) in the engine: metadata syncs, content only under `attachments: content`, an
unchanged attachment is not sent again (W4), a private event without details carries none (S3)."""

from __future__ import annotations

from datetime import UTC, datetime

from sync_core.domain.model import Attachment, CrmRecord, Sensitivity, content_of
from tests.engine.builders import POLICY, appt, edited, gev, judge, m365, synced

CONTENT = POLICY.model_copy(update={"attachments": "content"})
T1 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
T2 = datetime(2025, 3, 2, 8, 0, tzinfo=UTC)
DECK = Attachment(
    name="deck.pdf",
    size=12,
    content_type="application/pdf",
    id="att-1",
    last_modified=T1,
    content=b"%PDF-1.7 abc",
)


def test_F5_content_rides_to_the_crm_only_under_the_content_policy() -> None:
    g = gev(appt(attachments=(DECK,)))
    created = judge(m365(), None, g, None, policy=CONTENT).actions[0]
    assert created.kind == "create_crm"
    assert created.appointment.attachments == (DECK,)
    assert created.appointment.attachments[0].content == b"%PDF-1.7 abc"
    metadata = judge(m365(), None, g, None).actions[0]  # the default policy: metadata
    assert metadata.appointment.attachments == (DECK,) and metadata.appointment.attachments[0].content is None
    none = judge(m365(), None, g, None, policy=POLICY.model_copy(update={"attachments": "none"}))
    assert none.actions[0].appointment.attachments == ()


def test_F5_content_is_never_serialised_into_snapshots_or_fingerprints() -> None:
    g = gev(appt(attachments=(DECK,)))
    mapping, _ = synced(g, policy=CONTENT)
    assert mapping.snapshot is not None
    dumped = mapping.model_dump_json()
    assert '"content"' not in dumped and "PDF-1.7" not in dumped and "JVBER" not in dumped
    assert content_of(mapping.snapshot)["attachments"][0]["id"] == "att-1"


def test_F5_W4_an_unchanged_attachment_is_not_sent_again_on_a_meeting_edit() -> None:
    g = gev(appt(attachments=(DECK,)))
    mapping, record = synced(g, policy=CONTENT)
    stored = CrmRecord(
        crm_id=record.crm_id,
        version="v2",
        appointment=record.appointment.model_copy(
            update={"attachments": (DECK.model_copy(update={"content": None}),)}
        ),
        external_ref=record.external_ref,
    )
    later = edited(g, subject="Quarterly review, moved")
    update = judge(m365(), mapping, later, stored, policy=CONTENT).actions[0]
    assert update.kind == "update_crm" and update.changed_fields == ("subject",)


def test_F5_a_file_replaced_in_outlook_is_sent_again() -> None:
    g = gev(appt(attachments=(DECK,)))
    mapping, record = synced(g, policy=CONTENT)
    new = DECK.model_copy(update={"id": "att-2", "last_modified": T2, "content": b"%PDF-1.7 new"})
    d = judge(m365(), mapping, edited(g, attachments=(new,)), record, policy=CONTENT)
    update = d.actions[0]
    assert update.kind == "update_crm" and update.changed_fields == ("attachments",)
    assert update.appointment.attachments[0].content == b"%PDF-1.7 new"


def test_F5_S3_a_private_event_without_details_carries_no_attachments() -> None:
    g = gev(appt(attachments=(DECK,), sensitivity=Sensitivity.PRIVATE))
    created = judge(m365(), None, g, None, policy=CONTENT).actions[0]
    assert created.kind == "create_crm" and created.appointment.attachments == ()
