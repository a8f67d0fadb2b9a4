"""The requests of a synced change (issue 20: read, create, update, find our create, cancel, delete,
respond) reach the transport as msgraph-sdk's own request builders, models and default middleware chain
send them: method, URL, headers and body, for the golden ids and
generated ones. Only client-request-id differs (a new GUID per request, by design)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from kiota_http.middleware.options import RetryHandlerOption
from msgraph.generated.users.item.events.events_request_builder import EventsRequestBuilder
from msgraph.generated.users.item.events.item.accept.accept_post_request_body import AcceptPostRequestBody
from msgraph.generated.users.item.events.item.cancel.cancel_post_request_body import CancelPostRequestBody
from msgraph.generated.users.item.events.item.decline.decline_post_request_body import DeclinePostRequestBody
from msgraph.generated.users.item.events.item.event_item_request_builder import EventItemRequestBuilder
from msgraph.generated.users.item.events.item.tentatively_accept.tentatively_accept_post_request_body import (
    TentativelyAcceptPostRequestBody,
)
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory

from sync_core.adapters.graph.adapter import GraphAdapter
from sync_core.adapters.graph.base import GraphBase, _auth_provider, build_client, config
from sync_core.adapters.graph.convert import EVENT_PROPERTIES, appointment_to_event
from sync_core.adapters.graph.create import FIND_CREATED_PAGE, odata_text, tag_filter
from sync_core.adapters.graph.limits import MailboxLimiter
from sync_core.domain import identity
from sync_core.domain.model import Appointment, Attendee, Person
from sync_core.settings import Settings

GRAPH = "https://graph.microsoft.com/v1.0"  # Graph's own host: the telemetry headers are sent too
PROP = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name SyncTag"
SECRETS = ["a-secret-of-sufficient-length-0123456789"]
EVENT = json.loads(
    (Path(__file__).parent.parent / "fixtures" / "graph" / "graph_event_get_response.json").read_text()
)
APPT = Appointment(
    subject="Review é",
    body="Agenda",
    start=datetime(2030, 1, 3, 9, tzinfo=UTC),
    end=datetime(2030, 1, 3, 10, tzinfo=UTC),
    time_zone="Europe/Berlin",
    organizer=Person(email="alice@contoso.com"),
    attendees=(Attendee(email="bob@contoso.com", name="Bob"),),
)


def _capture() -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET" and request.url.path.endswith("/events"):
            return httpx.Response(200, json={"value": []})
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.method == "POST" and not request.url.path.endswith("/events"):
            return httpx.Response(202)  # cancel, accept, tentativelyAccept, decline
        return httpx.Response(200, json=EVENT)

    return httpx.MockTransport(answer), seen


def _settings() -> Settings:
    return Settings.model_validate({"GRAPH_BASE_URL": GRAPH, "GRAPH_AUTH_MODE": "emulator"})


def _sdk_client(transport: httpx.AsyncBaseTransport) -> GraphServiceClient:
    """The client as it was built before the trimmed chain: msgraph-core's default middleware."""
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(transport=transport),
        options={
            RetryHandlerOption.RETRY_HANDLER_OPTION_KEY: RetryHandlerOption(max_retries=0, should_retry=False)
        },
    )
    adapter = GraphRequestAdapter(_auth_provider(_settings()), client=http)
    adapter.base_url = GRAPH
    return GraphServiceClient(request_adapter=adapter)


def _wire(request: httpx.Request) -> tuple[str, str, dict[str, Any], bytes]:
    headers: dict[str, Any] = {k: v for k, v in request.headers.items() if k != "client-request-id"}
    # kiota keeps a header's values in a set: their order on the wire is the set's, either way
    headers["prefer"] = sorted(v.strip() for v in headers["prefer"].split(","))
    assert "client-request-id" in request.headers and "sdkversion" in request.headers
    return request.method, str(request.url), headers, request.read()


async def _both(
    ours: Callable[[GraphAdapter], Awaitable[Any]], sdk: Callable[[GraphBase], Awaitable[Any]]
) -> None:
    """Run `ours` on our adapter and `sdk` (the builders' way) on one with the default chain; compare."""
    transport, seen = _capture()
    new = GraphAdapter(
        build_client(_settings(), transport=transport),
        extended_property_id=PROP,
        tag_secrets=SECRETS,
        limiter=MailboxLimiter(),
    )
    old = GraphBase(
        _sdk_client(transport), extended_property_id=PROP, tag_secrets=SECRETS, limiter=MailboxLimiter()
    )
    await ours(new)
    await sdk(old)
    assert len(seen) == 2
    assert _wire(seen[0]) == _wire(seen[1])


async def _get_event(mailbox: str, event_id: str) -> None:
    async def sdk(old: GraphBase) -> None:
        query = EventItemRequestBuilder.EventItemRequestBuilderGetQueryParameters(
            select=[*EVENT_PROPERTIES, "cancelledOccurrences", "exceptionOccurrences"],
            expand=[f"singleValueExtendedProperties($filter=id eq '{PROP}')"],
        )
        builder = old.client.users.by_user_id(mailbox).events.by_event_id(event_id)
        await old.send_json(builder.to_get_request_information(config(query)))

    await _both(lambda new: new.get_event(mailbox, event_id), sdk)


async def _create(mailbox: str, tag: str) -> None:
    async def sdk(old: GraphBase) -> None:
        body = appointment_to_event(
            APPT, extended_property=(PROP, old.signed_tag(tag, mailbox)), transaction_id="t-1"
        )
        builder = old.client.users.by_user_id(mailbox).events
        await old.send_json(builder.to_post_request_information(body, config()))

    await _both(lambda new: new.create_event(mailbox, APPT, transaction_id="t-1", tag=tag), sdk)


async def _update(mailbox: str, event_id: str, fields: list[str]) -> None:
    async def sdk(old: GraphBase) -> None:
        body = appointment_to_event(
            APPT, fields=fields, extended_property=(PROP, old.signed_tag("k", mailbox))
        )
        builder = old.client.users.by_user_id(mailbox).events.by_event_id(event_id)
        await old.send_json(builder.to_patch_request_information(body, config()))

    await _both(lambda new: new.update_event(mailbox, event_id, APPT, fields=fields, tag="k"), sdk)


async def _find_created(mailbox: str, tag: str) -> None:
    async def sdk(old: GraphBase) -> None:
        query = EventsRequestBuilder.EventsRequestBuilderGetQueryParameters(
            filter=tag_filter(PROP, old.signed_tag(tag, mailbox)),
            expand=[f"singleValueExtendedProperties($filter=id eq '{odata_text(PROP)}')"],
            top=FIND_CREATED_PAGE,
        )
        builder = old.client.users.by_user_id(mailbox).events
        await old.send_json(builder.to_get_request_information(config(query)))

    await _both(lambda new: new.find_created(mailbox, tag=tag, transaction_id="t-1"), sdk)


async def _cancel(mailbox: str, event_id: str, comment: str) -> None:
    async def sdk(old: GraphBase) -> None:
        item = old.client.users.by_user_id(mailbox).events.by_event_id(event_id)
        await item.cancel.post(CancelPostRequestBody(comment=comment), config())

    await _both(lambda new: new.cancel_event(mailbox, event_id, comment), sdk)


async def _delete(mailbox: str, event_id: str) -> None:
    async def sdk(old: GraphBase) -> None:
        await old.client.users.by_user_id(mailbox).events.by_event_id(event_id).delete(config())

    await _both(lambda new: new.delete_event(mailbox, event_id), sdk)


async def _respond(mailbox: str, event_id: str, response: str, comment: str) -> None:
    async def sdk(old: GraphBase) -> None:
        item = old.client.users.by_user_id(mailbox).events.by_event_id(event_id)
        if response == "accept":
            await item.accept.post(AcceptPostRequestBody(comment=comment, send_response=True), config())
        elif response == "tentativelyAccept":
            body = TentativelyAcceptPostRequestBody(comment=comment, send_response=True)
            await item.tentatively_accept.post(body, config())
        else:
            await item.decline.post(DeclinePostRequestBody(comment=comment, send_response=True), config())

    await _both(lambda new: new.respond(mailbox, event_id, response, comment), sdk)


IDS = [
    ("alice@contoso.com", "AAMkAGI1AAAt9AHjAAA="),
    ("Alice.O'Neil+cal@Contoso.com", "AAMk/odd+id==%2F?#&"),
    ("cd209b0b-3f83-4c35-82d2-d88a61820480", "AQMkADAwATM0MDAAMS1iNTcwLWI2NTEtMDACLTAwCgBGAAAD~é 空"),
]


async def test_I4_a_read_by_id_goes_out_as_the_sdk_sends_it() -> None:
    for mailbox, event_id in IDS:
        await _get_event(mailbox, event_id)


async def test_I3_a_create_goes_out_as_the_sdk_sends_it() -> None:
    for mailbox, _ in IDS:
        await _create(mailbox, "ical:X'1 & 2")


async def test_W4_an_update_goes_out_as_the_sdk_sends_it() -> None:
    for mailbox, event_id in IDS:
        await _update(mailbox, event_id, ["subject", "start", "attendees"])
        await _update(mailbox, event_id, ["recurrence"])


async def test_L3_a_cancellation_and_a_deletion_go_out_as_the_sdk_sends_them() -> None:
    for mailbox, event_id in IDS:
        await _cancel(mailbox, event_id, "")
        await _cancel(mailbox, event_id, 'Moved "online" é')
        await _delete(mailbox, event_id)


async def test_M4_a_response_goes_out_as_the_sdk_sends_it() -> None:
    for mailbox, event_id in IDS:
        for response in ("accept", "tentativelyAccept", "decline"):
            await _respond(mailbox, event_id, response, "Booked by the sync")


async def test_I3_the_lookup_of_our_create_goes_out_as_the_sdk_sends_it() -> None:
    for mailbox, _ in IDS:
        await _find_created(mailbox, "crm:42'x")


ids = st.text(
    st.characters(min_codepoint=0x20, exclude_categories=("Cs", "Cc")), min_size=1, max_size=30
).filter(lambda v: identity.unsafe_id(v) is None)


@settings(max_examples=40, deadline=None)
@given(mailbox=ids, event_id=ids, tag=st.text(min_size=1, max_size=20))
async def test_requests_with_any_ids_go_out_as_the_sdk_sends_them(
    mailbox: str, event_id: str, tag: str
) -> None:
    await _get_event(mailbox, event_id)
    await _update(mailbox, event_id, ["body"])
    await _find_created(mailbox, tag)
    await _cancel(mailbox, event_id, tag)
    await _respond(mailbox, event_id, "decline", tag)
