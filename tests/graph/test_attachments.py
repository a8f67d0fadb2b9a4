"""F5: the Graph adapter reads an event's attachments with one list call (metadata, no contentBytes) and
fetches the bytes only of files within the limit that the target does not already hold in that version."""

from __future__ import annotations

import base64
from typing import Any

from graph_support import ALICE_MAIL, at, meeting

from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.graph.adapter import GraphAdapter
from sync_core.domain.model import Attachment


def file_body(name: str, raw: bytes, content_type: str = "application/pdf") -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": name,
        "contentType": content_type,
        "contentBytes": base64.b64encode(raw).decode(),
    }


def attachment_calls(emu: GraphEmulator) -> list[str]:
    return [
        f"{r['method']} {'item' if r['path'].rstrip('/').split('/')[-2] == 'attachments' else 'list'}"
        for r in emu.requests
        if "/attachments" in r["path"]
    ]


async def _event_with_files(emu: GraphEmulator, adapter: GraphAdapter) -> str:
    created = await adapter.create_event(
        ALICE_MAIL, meeting("Deck review", at(5)), transaction_id="t-att", tag="k-att"
    )
    emu.add_attachment(ALICE_MAIL, created.event_id, file_body("deck.pdf", b"%PDF small deck"))
    emu.add_attachment(ALICE_MAIL, created.event_id, file_body("video.mp4", b"v" * 5000, "video/mp4"))
    emu.add_attachment(
        ALICE_MAIL,
        created.event_id,
        {"@odata.type": "#microsoft.graph.itemAttachment", "name": "Prep", "item": {"subject": "Prep"}},
    )
    emu.add_attachment(
        ALICE_MAIL,
        created.event_id,
        {"@odata.type": "#microsoft.graph.referenceAttachment", "name": "Plan.docx", "size": 900},
    )
    emu.clear_requests()
    return created.event_id


async def test_F5_has_attachments_is_read_with_the_event(emu: GraphEmulator, adapter: GraphAdapter) -> None:
    event_id = await _event_with_files(emu, adapter)
    read = await adapter.get_event(ALICE_MAIL, event_id)
    assert read is not None and read.has_attachments
    assert attachment_calls(emu) == [], "get_event itself makes no attachment call"


async def test_F5_metadata_in_one_list_call_without_content_bytes(
    emu: GraphEmulator, adapter: GraphAdapter
) -> None:
    event_id = await _event_with_files(emu, adapter)
    got = await adapter.read_attachments(ALICE_MAIL, event_id)
    assert [(a.name, a.kind, a.size, a.content_type) for a in got] == [
        ("deck.pdf", "file", len(b"%PDF small deck"), "application/pdf"),
        ("video.mp4", "file", 5000, "video/mp4"),
        ("Prep", "item", got[2].size, "application/octet-stream"),
        ("Plan.docx", "reference", 900, "application/octet-stream"),
    ]
    assert all(a.id and a.last_modified is not None and a.content is None for a in got)
    assert attachment_calls(emu) == ["GET list"]
    listed = next(r for r in emu.requests if r["path"].endswith("/attachments"))
    selected = listed["query"].get("select", "")
    assert "contentBytes" not in selected and "name" in selected and "lastModifiedDateTime" in selected


async def test_F5_content_only_for_files_within_the_limit(emu: GraphEmulator, adapter: GraphAdapter) -> None:
    event_id = await _event_with_files(emu, adapter)
    got = await adapter.read_attachments(ALICE_MAIL, event_id, content_max_bytes=1000)
    assert {a.name: a.content for a in got} == {
        "deck.pdf": b"%PDF small deck",
        "video.mp4": None,  # over the limit: metadata only
        "Prep": None,
        "Plan.docx": None,
    }
    assert attachment_calls(emu) == ["GET list", "GET item"]


async def test_F5_a_file_the_target_holds_in_this_version_is_not_downloaded_again(
    emu: GraphEmulator, adapter: GraphAdapter
) -> None:
    event_id = await _event_with_files(emu, adapter)
    first = await adapter.read_attachments(ALICE_MAIL, event_id, content_max_bytes=10_000)
    assert attachment_calls(emu) == ["GET list", "GET item", "GET item"]
    emu.clear_requests()
    again = await adapter.read_attachments(ALICE_MAIL, event_id, known=first, content_max_bytes=10_000)
    assert again == first and all(a.content is None for a in again)
    assert attachment_calls(emu) == ["GET list"]
    # A file replaced in Outlook (same name, new id and time) is a new version: downloaded.
    emu.add_attachment(ALICE_MAIL, event_id, file_body("deck.pdf", b"%PDF the new deck"))
    emu.clear_requests()
    third = await adapter.read_attachments(ALICE_MAIL, event_id, known=first, content_max_bytes=10_000)
    assert [a.content for a in third if a.content is not None] == [b"%PDF the new deck"]
    assert attachment_calls(emu) == ["GET list", "GET item"]


async def test_F5_an_event_without_attachments_lists_none(emu: GraphEmulator, adapter: GraphAdapter) -> None:
    created = await adapter.create_event(
        ALICE_MAIL, meeting("Plain", at(6)), transaction_id="t-plain", tag="k-plain"
    )
    assert not created.has_attachments
    assert await adapter.read_attachments(ALICE_MAIL, created.event_id, content_max_bytes=10) == ()
    assert Attachment(name="x", content=b"1") == Attachment(name="x"), "content never counts in equality"
