"""F5 through the CRM contract: the REST connector sends a file's bytes as `content_base64`, the CRM emulator
stores them with that attachment version, keeps them when the same version comes again without them, and never
returns them; a PATCH that changes nothing keeps the version (W4)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import httpx

from devstack.crm_emulator import CrmEmulator
from sync_core.adapters.crm.rest import RestCrmConnector
from sync_core.domain.model import Appointment, Attachment

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
DECK = Attachment(
    name="deck.pdf",
    size=11,
    content_type="application/pdf",
    id="a-1",
    last_modified=T1,
    content=b"%PDF deck 1",
)
BIG = Attachment(name="video.mp4", size=9_000_000, content_type="video/mp4", id="a-2", last_modified=T1)


def meeting(*attachments: Attachment) -> Appointment:
    return Appointment(subject="Deck", start=START, end=START + timedelta(hours=1), attachments=attachments)


def sent_contents(crm: CrmEmulator) -> list[list[str | None]]:
    return [
        [a.get("content_base64") for a in r.body["attachments"]]
        for r in crm.requests
        if r.method in ("POST", "PATCH") and isinstance(r.body, dict) and "attachments" in r.body
    ]


async def test_F5_a_file_reaches_the_crm_with_its_bytes_and_a_large_one_as_metadata(
    crm: CrmEmulator, connector: RestCrmConnector
) -> None:
    record = await connector.create_appointment(meeting(DECK, BIG), idempotency_key="k1", external_ref="m1")
    assert record.appointment.attachments == (DECK, BIG)
    assert all(a.content is None for a in record.appointment.attachments), "responses carry no content"
    stored = crm.attachments(record.crm_id)
    assert [(a["name"], a["size"], a["kind"], a.get("content_base64")) for a in stored] == [
        ("deck.pdf", 11, "file", base64.b64encode(b"%PDF deck 1").decode()),
        ("video.mp4", 9_000_000, "file", None),
    ]
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {crm.token}"}) as http:
        answer = await http.get(f"{crm.base_url}/appointments/{record.crm_id}")
    assert "content_base64" not in answer.text


async def test_F5_W4_the_same_version_without_bytes_keeps_the_stored_content_and_the_version(
    crm: CrmEmulator, connector: RestCrmConnector
) -> None:
    record = await connector.create_appointment(meeting(DECK), idempotency_key="k2", external_ref="m2")
    metadata_only = DECK.model_copy(update={"content": None})
    again = await connector.update_appointment(
        record.crm_id, meeting(metadata_only), fields=["attachments"], expected_version=record.version
    )
    assert again.version == record.version, "nothing changed: same version, no webhook"
    assert crm.attachments(record.crm_id)[0]["content_base64"] == base64.b64encode(b"%PDF deck 1").decode()
    assert sent_contents(crm)[-1] == [None], "the connector sent no bytes for a file without content"


async def test_F5_a_replaced_file_gets_its_new_bytes_and_a_removed_one_loses_them(
    crm: CrmEmulator, connector: RestCrmConnector
) -> None:
    record = await connector.create_appointment(meeting(DECK), idempotency_key="k3", external_ref="m3")
    new = DECK.model_copy(
        update={"id": "a-3", "last_modified": T1 + timedelta(hours=1), "size": 9, "content": b"%PDF new!"}
    )
    changed = await connector.update_appointment(
        record.crm_id, meeting(new), fields=["attachments"], expected_version=record.version
    )
    assert changed.version != record.version
    assert [a.get("content_base64") for a in crm.attachments(record.crm_id)] == [
        base64.b64encode(b"%PDF new!").decode()
    ]
    await connector.update_appointment(
        record.crm_id, meeting(), fields=["attachments"], expected_version=None
    )
    assert crm.attachments(record.crm_id) == []


def test_F5_bytes_that_are_not_base64_are_refused(crm: CrmEmulator) -> None:
    body = meeting(DECK.model_copy(update={"content": None})).model_dump(mode="json")
    body["attachments"][0]["content_base64"] = "not base64!"
    r = httpx.post(
        f"{crm.base_url}/appointments",
        json=body,
        headers={"Authorization": f"Bearer {crm.token}", "Idempotency-Key": "k4"},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_appointment"
    body["attachments"][0]["content_base64"] = base64.b64encode(b"ok").decode()
    body["attachments"][0]["surprise"] = 1
    r = httpx.post(
        f"{crm.base_url}/appointments",
        json=body,
        headers={"Authorization": f"Bearer {crm.token}", "Idempotency-Key": "k5"},
    )
    assert r.status_code == 422, "attachment objects stay closed"
