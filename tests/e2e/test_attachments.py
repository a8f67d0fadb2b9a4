"""F5, InterAction: "documents attached to meetings are added during calendar sync", end to end on the local
stack (Graph emulator -> notification -> queue -> worker -> CRM emulator), with the demo policy plus
`attachments: content` and a content limit of 64 KB.

A user adds a file to an Outlook meeting: the CRM record gets its name, size and content. A file over the
limit gets metadata only. A later edit of the meeting downloads and sends no attachment again (W4). A
private meeting synced without details (S3) carries none, and its attachments are not even read."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from devstack.azurite import Azurite
from devstack.stack import LocalStack
from tests.clock import days_ahead, graph_time
from tests.e2e.conftest import Stack, started, wait_for

pytestmark = pytest.mark.e2e

ADELE = "adele@contoso.example"
LIMIT = 64 * 1024
PROPOSAL = b"%PDF-1.7 proposal for Fabrikam " * 600  # 18.6 KB: within the limit
RECORDING = bytes(range(256)) * 400  # 100 KB: over it


@pytest.fixture(scope="module")
def stack(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    policy = json.loads(LocalStack.policy_file.read_text()) | {
        "attachments": "content",
        "attachment_content_max_bytes": LIMIT,
    }
    policy_file = tmp_path_factory.mktemp("policy") / "attachments.json"
    policy_file.write_text(json.dumps(policy))
    yield from started(LocalStack(azurite=azurite, policy_file=policy_file))


def _meeting(subject: str, day: int, **extra: Any) -> dict[str, Any]:
    start = days_ahead(day, 10)
    return {
        "subject": subject,
        "body": {"contentType": "text", "content": "Proposal review"},
        "start": graph_time(start),
        "end": graph_time(start + timedelta(hours=1)),
        "attendees": [
            {"emailAddress": {"address": "megan@fabrikam.example", "name": "Megan Bowen"}, "type": "required"}
        ],
        **extra,
    }


def _file(name: str, raw: bytes, content_type: str) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": name,
        "contentType": content_type,
        "contentBytes": base64.b64encode(raw).decode(),
    }


def _record(stack: Stack, subject: str) -> dict[str, Any] | None:
    return next((a for a in stack.crm_appointments() if a.get("subject") == subject), None)


def _stored(stack: Stack, crm_id: str) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in stack.crm.attachments(crm_id)}


def _attachment_reads(stack: Stack, event_id: str) -> list[str]:
    """The app's Graph reads of this event's attachments: `list`, or the id of one attachment read."""
    out = []
    for r in stack.graph.requests:
        path = r["path"]
        if r["method"] == "GET" and f"/events/{event_id}/attachments" in path:
            tail = path.split("/attachments", 1)[1].strip("/")
            out.append(tail or "list")
    return out


def test_F5_IA_a_file_added_to_an_outlook_meeting_reaches_the_crm_record_with_its_content(
    stack: Stack,
) -> None:
    with stack.graph_http() as g:
        event = g.post(f"/users/{ADELE}/events", json=_meeting("Fabrikam proposal", 9)).json()
        crm_id = wait_for(lambda: _record(stack, "Fabrikam proposal"))["id"]
        added = g.post(
            f"/users/{ADELE}/events/{event['id']}/attachments",
            json=_file("proposal.pdf", PROPOSAL, "application/pdf"),
        )
        assert added.status_code == 201, added.text
        deck_id = added.json()["id"]

        stored = wait_for(lambda: _stored(stack, crm_id).get("proposal.pdf"))
        assert (stored["size"], stored["content_type"], stored["kind"]) == (
            len(PROPOSAL),
            "application/pdf",
            "file",
        )
        assert base64.b64decode(stored["content_base64"]) == PROPOSAL
        record = _record(stack, "Fabrikam proposal")
        assert record is not None and [a["name"] for a in record["attachments"]] == ["proposal.pdf"]
        assert "content_base64" not in json.dumps(record), "the contract never returns content"

        # A file over the configured limit: its name, size and type, no content.
        big = g.post(
            f"/users/{ADELE}/events/{event['id']}/attachments",
            json=_file("recording.mp4", RECORDING, "video/mp4"),
        )
        assert big.status_code == 201, big.text
        over = wait_for(lambda: _stored(stack, crm_id).get("recording.mp4"))
        assert (over["size"], over["content_type"]) == (len(RECORDING), "video/mp4")
        assert "content_base64" not in over
        assert base64.b64decode(_stored(stack, crm_id)["proposal.pdf"]["content_base64"]) == PROPOSAL
        reads = _attachment_reads(stack, event["id"])
        assert deck_id in reads and big.json()["id"] not in reads, "a file over the limit is never downloaded"
        downloads = reads.count(deck_id)

        # W4: a meeting edit lists the attachments again but downloads and sends none of them.
        stack.crm.clear_requests()
        g.patch(f"/users/{ADELE}/events/{event['id']}", json={"subject": "Fabrikam proposal v2"})
        wait_for(lambda: _record(stack, "Fabrikam proposal v2"))
    assert _attachment_reads(stack, event["id"]).count(deck_id) == downloads
    writes = [
        r.body for r in stack.crm.requests if r.method in ("POST", "PATCH") and isinstance(r.body, dict)
    ]
    assert writes and not any("attachments" in w for w in writes), writes


def test_F5_S3_a_private_meeting_without_details_carries_no_attachments(stack: Stack) -> None:
    with stack.graph_http() as g:
        event = g.post(
            f"/users/{ADELE}/events", json=_meeting("Private chat", 10, sensitivity="private")
        ).json()
        crm_id = wait_for(lambda: _record(stack, "Private chat"))["id"]
        g.post(
            f"/users/{ADELE}/events/{event['id']}/attachments",
            json=_file("notes.txt", b"private notes", "text/plain"),
        )
        g.patch(f"/users/{ADELE}/events/{event['id']}", json={"subject": "Private chat moved"})
        wait_for(lambda: _record(stack, "Private chat moved"))
    assert _stored(stack, crm_id) == {}
    assert _attachment_reads(stack, event["id"]) == []
