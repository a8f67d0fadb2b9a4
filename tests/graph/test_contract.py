"""Contract suite: what the adapter sends is what Graph documents, and what the emulator answers has the
shape of Graph's documented payloads (tests/fixtures/graph, copied from the reference) and parses cleanly
into msgraph-sdk's models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from graph_support import ALICE, ALICE_MAIL, BOB_MAIL, PROP, at, meeting
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from msgraph.generated.models.event import Event
from msgraph.generated.models.event_collection_response import EventCollectionResponse
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.graph.adapter import GraphAdapter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "graph"
ENTITY_EXTRAS = {"@odata.etag", "@odata.context", "@odata.type"}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def parse(payload: Any, model: Any) -> Any:
    node = JsonParseNodeFactory().get_root_parse_node("application/json", json.dumps(payload).encode())
    return node.get_object_value(model)


def prefer(request: dict[str, Any]) -> str:
    return ", ".join(v for k, v in request["headers"].items() if k.lower() == "prefer")


async def _exercise(adapter: GraphAdapter) -> str:
    """One of everything the adapter does to events and mail."""
    created = await adapter.create_event(
        ALICE_MAIL,
        meeting("Contract", at(4), attendees=(BOB_MAIL,)),
        transaction_id="tx-contract",
        tag="key-1",
    )
    await adapter.get_event(ALICE_MAIL, created.event_id)
    changed = meeting("Contract renamed", at(4), attendees=(BOB_MAIL,))
    await adapter.update_event(ALICE_MAIL, created.event_id, changed, fields=["subject"], tag="key-1")
    await adapter.calendar_view(ALICE_MAIL, at(1), at(20))
    page = await adapter.delta_page(ALICE_MAIL, link=None, start=at(1), end=at(20))
    while page.next_link:
        page = await adapter.delta_page(ALICE_MAIL, link=page.next_link)
    bob_copy = next(e for e in await adapter.calendar_view(BOB_MAIL, at(1), at(20)))
    await adapter.respond(BOB_MAIL, bob_copy.event_id, "tentativelyAccept")
    await adapter.send_mail(ALICE_MAIL, "Note", "text")
    await adapter.cancel_event(ALICE_MAIL, created.event_id, "off")
    return created.event_id


async def test_every_request_prefers_immutable_ids_and_utc(adapter: GraphAdapter, emu: GraphEmulator) -> None:
    await _exercise(adapter)
    requests = emu.requests
    assert len(requests) >= 9  # one of each call _exercise makes
    for request in requests:
        assert 'IdType="ImmutableId"' in prefer(request), (request["method"], request["path"])
        assert 'outlook.timezone="UTC"' in prefer(request), (request["method"], request["path"])


async def test_a_create_sends_transaction_id_and_our_single_value_extended_property(
    adapter: GraphAdapter, emu: GraphEmulator
) -> None:
    await adapter.create_event(ALICE_MAIL, meeting("Tagged", at(5)), transaction_id="tx-tag", tag="meeting-9")
    (post,) = [r for r in emu.requests if r["method"] == "POST" and r["path"].endswith("/events")]
    body = post["json"]
    assert body["transactionId"] == "tx-tag"
    # The value is the meeting key signed for this mailbox (issue 15): the key, then its MAC.
    [prop] = body["singleValueExtendedProperties"]
    assert prop == {"id": PROP, "value": adapter.signed_tag("meeting-9", ALICE_MAIL)}
    assert prop["value"].startswith("meeting-9#v1.")
    documented = fixture("graph_event_create_with_single_value_extended_property.json")
    assert set(documented["singleValueExtendedProperties"][0]) == set(
        body["singleValueExtendedProperties"][0]
    )
    assert "transactionId" in fixture("graph_event_create_request_transactionId.json")
    assert set(body) - set(parse(body, Event).additional_data) == set(body)  # every key a model property


async def test_W4_a_patch_carries_only_the_changed_fields(adapter: GraphAdapter, emu: GraphEmulator) -> None:
    created = await adapter.create_event(
        ALICE_MAIL, meeting("Before", at(6)), transaction_id="tx-w4", tag="k"
    )
    emu.clear_requests()
    later = meeting("After", at(6, 11))
    await adapter.update_event(ALICE_MAIL, created.event_id, later, fields=["subject"], tag="k")
    await adapter.update_event(ALICE_MAIL, created.event_id, later, fields=["start", "end"], tag="k")
    first, second = [r["json"] for r in emu.requests if r["method"] == "PATCH"]
    # msgraph-sdk always writes the entity's @odata.type; apart from it, only what changed plus our tag.
    assert set(first) - {"@odata.type"} == {"subject", "singleValueExtendedProperties"}
    # Times travel as one group (graph_convert._TIME_FIELDS): start, end and isAllDay must agree.
    assert set(second) - {"@odata.type"} == {"start", "end", "isAllDay", "singleValueExtendedProperties"}
    assert first["subject"] == "After"


async def test_event_payloads_match_the_documented_shape_and_parse_into_msgraph_models(
    adapter: GraphAdapter, emu: GraphEmulator
) -> None:
    event_id = await _exercise(adapter)
    documented = fixture("graph_event_get_response.json")
    for request in emu.requests:
        if request["method"] != "GET":
            continue
        async with httpx.AsyncClient(headers={"Authorization": "Bearer x"}) as http:
            reply = await http.get(
                f"{emu.base_url}{request['path']}",
                params=request["query"],
                headers={"Prefer": prefer(request)},
            )
        body = reply.json()
        items = body.get("value", [body]) if reply.status_code == 200 else []
        for item in items:
            if "@removed" in item or "scheduleId" in item:
                continue
            model = parse(item, Event)
            assert set(model.additional_data) <= ENTITY_EXTRAS | {"@removed"}, (
                request["path"],
                model.additional_data,
            )
            missing = set(documented) - set(item) - {"@odata.context", "transactionId"}
            assert not missing, (request["path"], missing)
        if "value" in body:
            collection = parse(body, EventCollectionResponse)
            assert set(collection.additional_data) <= {"@odata.context", "@odata.deltaLink"}
    assert event_id


async def test_delta_and_error_envelopes_match_the_documented_ones(
    adapter: GraphAdapter, emu: GraphEmulator
) -> None:
    for n in (7, 8):
        await adapter.create_event(ALICE_MAIL, meeting("Envelope", at(n)), transaction_id=f"tx-{n}", tag="k")
    async with httpx.AsyncClient(base_url=emu.base_url, headers={"Authorization": "Bearer x"}) as http:
        delta = (
            await http.get(
                f"/users/{ALICE}/calendarView/delta",
                params={"startDateTime": "2030-01-01T00:00:00Z", "endDateTime": "2030-02-01T00:00:00Z"},
                headers={"Prefer": "odata.maxpagesize=1"},
            )
        ).json()
        throttled = None
        emu.set_faults(ALICE_MAIL, throttle_count=1, retry_after=1)
        reply = await http.get(f"/users/{ALICE}/events")
        throttled = reply.json()
    page1 = fixture("graph_event_delta_response_page1_nextLink.json")
    assert set(page1) <= set(delta) | {"@odata.nextLink"} and "@odata.nextLink" in delta
    assert set(page1["value"][0]) <= set(delta["value"][0])
    assert reply.status_code == 429 and reply.headers["Retry-After"]
    assert set(fixture("graph_throttled_429_response.json")["error"]) <= set(throttled["error"])
    error = parse(throttled, ODataError)
    assert error.error.code == "TooManyRequests"


async def test_bodies_are_read_as_text_so_an_outlook_html_body_compares_as_its_text(
    adapter: GraphAdapter, emu: GraphEmulator
) -> None:
    """Issue 16 item 9: Graph returns HTML unless asked for text (event-get.md, Prefer
    outlook.body-content-type); read as HTML, a body we wrote as text came back reformatted."""
    written = "Agenda:\n  1. pricing  \n\n\n\n2. next steps"
    created = await adapter.create_event(
        ALICE_MAIL,
        meeting("Body", at(5)).model_copy(update={"body": written}),
        transaction_id="tx-body",
        tag="key-body",
    )
    emu.clear_requests()
    read = await adapter.get_event(ALICE_MAIL, created.event_id)
    assert read is not None and read.appointment.body.strip() == written.strip()
    [get] = [r for r in emu.requests if r["method"] == "GET"]
    assert 'outlook.body-content-type="text"' in prefer(get)
