"""The emulator serves an event's attachments as Microsoft documents them (issue 16 item 7, rule F5).

Golden transcripts: tests/fixtures/graph/docs_event_attachments.json holds the documented examples of
microsoftgraph/microsoft-graph-docs-contrib (each with its commit and path); the documented request is sent to
the emulator and the answer is compared with the documented response: status, the property names of that
attachment type, and every value the request decides.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
from emulator_support import ALICE, ALICE_MAIL, BOB_MAIL

from devstack.graph_emulator import GraphEmulator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "graph"
DOCS = "microsoftgraph/microsoft-graph-docs-contrib"
EXTRAS = {"@odata.context", "@odata.id"}  # where the answer is, not what it is
THREE_MB = 3 * 1024 * 1024


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / "docs_event_attachments.json").read_text("utf-8"))
    assert loaded["source"]["repository"] == DOCS
    case: dict[str, Any] = loaded["examples"][name]
    assert case["source"]["commit"] and case["source"]["path"].startswith("api-reference/v1.0/")
    return case


def keys(body: dict[str, Any]) -> set[str]:
    return set(body) - EXTRAS


async def new_event(http: httpx.AsyncClient, subject: str = "Attachments", **extra: Any) -> dict[str, Any]:
    body = {
        "subject": subject,
        "start": {"dateTime": "2030-03-04T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2030-03-04T11:00:00", "timeZone": "UTC"},
        **extra,
    }
    response = await http.post(f"/users/{ALICE}/events", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def file_body(name: str, raw: bytes, content_type: str | None = None) -> dict[str, Any]:
    body = {"@odata.type": "#microsoft.graph.fileAttachment", "name": name}
    body["contentBytes"] = base64.b64encode(raw).decode()
    if content_type:
        body["contentType"] = content_type
    return body


async def test_F5_documented_list_of_an_event_without_attachments(http: httpx.AsyncClient) -> None:
    """DOCS@0713c450:api-reference/v1.0/api/event-list-attachments.md, Example."""
    documented = example("list_empty")["response"]
    event = await new_event(http)
    assert event["hasAttachments"] is False
    response = await http.get(f"/users/{ALICE}/events/{event['id']}/attachments")
    assert response.status_code == documented["status"]
    assert keys(response.json()) == keys(documented["body"]) and response.json()["value"] == []
    assert response.json()["@odata.context"].endswith("/attachments")


async def test_F5_documented_file_attachment_is_added_and_read_back_with_its_content(
    http: httpx.AsyncClient,
) -> None:
    """DOCS@01c641ac:api-reference/v1.0/api/event-post-attachments.md (file) and
    DOCS@05e4449a:api-reference/v1.0/api/attachment-get.md, Example 1."""
    case = example("post_file")
    documented = case["response"]["body"]
    event = await new_event(http)
    sent = dict(case["request"]["body"], contentBytes=documented["contentBytes"])  # see the fixture's note
    response = await http.post(f"/users/{ALICE}/events/{event['id']}/attachments", json=sent)
    assert response.status_code == case["response"]["status"], response.text
    added = response.json()
    assert keys(added) == keys(documented)
    for name in ("@odata.type", "name", "contentType", "isInline", "contentId", "contentLocation"):
        assert added[name] == documented[name], name
    assert base64.b64decode(added["contentBytes"]) == b"mac and cheese today"
    assert added["size"] == len(b"mac and cheese today")
    assert added["@odata.context"].endswith("/attachments/$entity")

    got = await http.get(f"/users/{ALICE}/events/{event['id']}/attachments/{added['id']}")
    assert got.status_code == example("get_file")["response"]["status"]
    assert keys(got.json()) == keys(example("get_file")["response"]["body"])
    assert got.json()["contentBytes"] == added["contentBytes"]
    assert got.json()["lastModifiedDateTime"] == added["lastModifiedDateTime"]


async def test_F5_documented_item_attachment_is_added_and_read_without_its_item(
    http: httpx.AsyncClient,
) -> None:
    """DOCS@01c641ac:api-reference/v1.0/api/event-post-attachments.md (item) and attachment-get.md, Example 2:
    an itemAttachment has no contentBytes and a null contentType; the item comes only with $expand."""
    case = example("post_item")
    event = await new_event(http)
    response = await http.post(
        f"/users/{ALICE}/events/{event['id']}/attachments", json=case["request"]["body"]
    )
    assert response.status_code == case["response"]["status"], response.text
    added = response.json()
    assert keys(added) == keys(case["response"]["body"])
    assert (added["@odata.type"], added["name"], added["contentType"], added["isInline"]) == (
        "#microsoft.graph.itemAttachment",
        "Holiday event",
        None,
        False,
    )
    assert isinstance(added["size"], int) and added["size"] > 0
    url = f"/users/{ALICE}/events/{event['id']}/attachments/{added['id']}"
    got = (await http.get(url)).json()
    assert keys(got) == keys(example("get_item")["response"]["body"])
    expanded = (await http.get(url, params={"$expand": "microsoft.graph.itemattachment/item"})).json()
    assert expanded["item"]["subject"] == "Discuss gifts for children"


async def test_F5_documented_reference_attachment_reads_with_the_base_properties_only(
    emu: GraphEmulator, http: httpx.AsyncClient
) -> None:
    """DOCS@05e4449a:api-reference/v1.0/api/attachment-get.md, Example 4; resources/referenceattachment.md
    (v1.0: Get and Delete, no create): a POST is refused, Outlook's own attach is emulated."""
    documented = example("get_reference")["response"]["body"]
    event = await new_event(http)
    body = {k: documented[k] for k in ("@odata.type", "name", "contentType", "size", "isInline")}
    refused = await http.post(f"/users/{ALICE}/events/{event['id']}/attachments", json=body)
    assert refused.status_code == 405
    added = emu.add_attachment(ALICE, event["id"], body)
    got = (await http.get(f"/users/{ALICE}/events/{event['id']}/attachments/{added['id']}")).json()
    assert keys(got) == keys(documented)
    assert {k: got[k] for k in body} == body


async def test_F5_list_with_select_leaves_content_bytes_out(http: httpx.AsyncClient) -> None:
    """event-list-attachments.md supports the OData query parameters: with $select only the named properties
    come back (and @odata.type, id); without it a file comes with its contentBytes."""
    event = await new_event(http)
    url = f"/users/{ALICE}/events/{event['id']}/attachments"
    await http.post(url, json=file_body("agenda.pdf", b"%PDF-1.7 agenda", "application/pdf"))
    full = (await http.get(url)).json()["value"]
    assert full[0]["contentBytes"] == base64.b64encode(b"%PDF-1.7 agenda").decode()
    select = "id,name,contentType,size,isInline,lastModifiedDateTime"
    listed = (await http.get(url, params={"$select": select})).json()["value"]
    assert listed == [
        {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "id": full[0]["id"],
            "lastModifiedDateTime": full[0]["lastModifiedDateTime"],
            "name": "agenda.pdf",
            "contentType": "application/pdf",
            "size": len(b"%PDF-1.7 agenda"),
            "isInline": False,
        }
    ]


async def test_F5_a_file_of_3_mb_or_more_is_refused_and_one_under_is_added(http: httpx.AsyncClient) -> None:
    """event-post-attachments.md: "limits the size of the attachment you can add to under 3 MB"."""
    event = await new_event(http)
    url = f"/users/{ALICE}/events/{event['id']}/attachments"
    refused = await http.post(url, json=file_body("big.bin", b"x" * THREE_MB))
    assert refused.status_code == 413, refused.text
    assert refused.json()["error"]["code"] == "ErrorAttachmentSizeTooLarge"
    assert (await http.get(url)).json()["value"] == []
    added = await http.post(url, json=file_body("almost.bin", b"x" * (THREE_MB - 1)))
    assert added.status_code == 201 and added.json()["size"] == THREE_MB - 1


async def test_F5_a_file_needs_name_and_content_bytes(http: httpx.AsyncClient) -> None:
    """resources/fileattachment.md: "The required properties name and contentBytes"."""
    event = await new_event(http)
    url = f"/users/{ALICE}/events/{event['id']}/attachments"
    no_bytes = {"@odata.type": "#microsoft.graph.fileAttachment", "name": "a.txt"}
    assert (await http.post(url, json=no_bytes)).status_code == 400
    assert (await http.post(url, json=file_body("", b"abc"))).status_code == 400
    assert (await http.post(url, json={"name": "a.txt", "contentBytes": "YWJj"})).status_code == 400
    missing = await http.post(
        f"/users/{ALICE}/events/AAMkNoSuchEvent=/attachments", json=file_body("a", b"a")
    )
    assert missing.status_code == 404
    assert (await http.get(f"{url}/AAMkNoSuchAttachment=")).status_code == 404


async def test_F5_adding_an_attachment_changes_the_event_and_is_announced(
    emu: GraphEmulator, http: httpx.AsyncClient
) -> None:
    """An attachment added in Outlook is a change of the event: new changeKey and lastModifiedDateTime,
    hasAttachments true, and an `updated` change for subscribers (what the sync learns it from)."""
    event = await new_event(http)
    emu.advance_clock(60)
    await http.post(f"/users/{ALICE}/events/{event['id']}/attachments", json=file_body("a.txt", b"a"))
    after = (await http.get(f"/users/{ALICE}/events/{event['id']}")).json()
    assert after["hasAttachments"] is True
    assert after["changeKey"] != event["changeKey"]
    assert after["lastModifiedDateTime"] > event["lastModifiedDateTime"]
    changes: list[str] = []
    emu.state.listeners.append(lambda c: changes.append(f"{c.change_type}:{c.event_id}"))
    emu.add_attachment(ALICE_MAIL, event["id"], file_body("b.txt", b"b"))
    assert changes == [f"updated:{event['id']}"]


async def test_F5_an_occurrence_shows_the_attachments_of_its_series(http: httpx.AsyncClient) -> None:
    master = await new_event(
        http,
        "Weekly with deck",
        recurrence={
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
            "range": {"type": "numbered", "startDate": "2030-03-04", "numberOfOccurrences": 3},
        },
        attendees=[{"emailAddress": {"address": BOB_MAIL}, "type": "required"}],
    )
    await http.post(f"/users/{ALICE}/events/{master['id']}/attachments", json=file_body("deck.pptx", b"d"))
    instances = await http.get(
        f"/users/{ALICE}/events/{master['id']}/instances",
        params={"startDateTime": "2030-03-01T00:00:00Z", "endDateTime": "2030-03-20T00:00:00Z"},
    )
    first = instances.json()["value"][0]
    assert first["hasAttachments"] is True
    listed = (await http.get(f"/users/{ALICE}/events/{first['id']}/attachments")).json()["value"]
    assert [a["name"] for a in listed] == ["deck.pptx"]
