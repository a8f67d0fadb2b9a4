"""Events CRUD through msgraph-sdk: every response parses into the SDK's models with nothing left over."""

from __future__ import annotations

import re

import httpx
import pytest
from emulator_support import ALICE, ALICE_MAIL, leftovers, parse
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.models.attendee import Attendee
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.event import Event
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.location import Location
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.single_value_legacy_extended_property import SingleValueLegacyExtendedProperty
from msgraph.generated.users.item.events.events_request_builder import EventsRequestBuilder
from msgraph.generated.users.item.events.item.event_item_request_builder import EventItemRequestBuilder

from devstack.graph_emulator import GraphEmulator

TAG = "String {66f5a359-4659-4830-9070-00040ec6ac6e} Name SyncOrigin"
UTC_PREFER = 'outlook.timezone="UTC"'
GRAPH_ID = re.compile(r"^[A-Za-z0-9_=-]{40,}$")


def lunch(transaction_id: str | None = None, tagged: bool = True) -> Event:
    return Event(
        subject="Let's go for lunch",
        body=ItemBody(content_type=None, content="Does noon work for you?"),
        start=DateTimeTimeZone(date_time="2030-04-15T12:00:00", time_zone="Pacific Standard Time"),
        end=DateTimeTimeZone(date_time="2030-04-15T14:00:00", time_zone="Pacific Standard Time"),
        location=Location(display_name="Harry's Bar"),
        attendees=[
            Attendee(email_address=EmailAddress(address="samanthab@contoso.com", name="Samantha Booth"))
        ],
        transaction_id=transaction_id,
        single_value_extended_properties=[SingleValueLegacyExtendedProperty(id=TAG, value="crm")]
        if tagged
        else None,
    )


def prefer_utc() -> RequestConfiguration[EventItemRequestBuilder.EventItemRequestBuilderGetQueryParameters]:
    config: RequestConfiguration[EventItemRequestBuilder.EventItemRequestBuilderGetQueryParameters] = (
        RequestConfiguration()
    )
    config.headers.add("Prefer", UTC_PREFER)
    config.headers.add("Prefer", 'IdType="ImmutableId"')
    return config


async def test_created_event_is_a_fully_populated_sdk_event(graph: GraphServiceClient) -> None:
    created = await graph.users.by_user_id(ALICE).events.post(lunch("7E163156-7762-4BEB-A1C6-729EA81755A7"))
    assert created is not None
    assert leftovers(created) == set()
    assert created.id and GRAPH_ID.match(created.id)
    for attribute in (
        "change_key",
        "created_date_time",
        "last_modified_date_time",
        "i_cal_u_id",
        "type",
        "is_organizer",
        "response_status",
        "organizer",
        "attendees",
        "start",
        "end",
        "original_start_time_zone",
        "original_end_time_zone",
        "location",
        "locations",
        "sensitivity",
        "show_as",
        "is_all_day",
        "is_cancelled",
        "is_draft",
        "categories",
        "reminder_minutes_before_start",
        "is_reminder_on",
        "body",
        "body_preview",
        "has_attachments",
        "web_link",
        "transaction_id",
        "importance",
        "online_meeting_provider",
    ):
        assert getattr(created, attribute) is not None, attribute
    assert created.additional_data["@odata.etag"] == f'W/"{created.change_key}"'
    assert created.start.date_time.startswith("2030-04-15T19:00:00")  # stored and returned in UTC
    assert created.start.time_zone == "UTC"
    assert created.original_start_time_zone == "Pacific Standard Time"
    assert created.location.display_name == "Harry's Bar"
    assert [loc.display_name for loc in created.locations] == ["Harry's Bar"]
    assert created.is_organizer is True
    assert created.organizer.email_address.address == ALICE_MAIL


async def test_transaction_id_makes_a_retried_post_return_the_same_event(
    graph: GraphServiceClient, emu: GraphEmulator
) -> None:
    first = await graph.users.by_user_id(ALICE).events.post(lunch("retry-me"))
    second = await graph.users.by_user_id(ALICE_MAIL.upper()).events.post(lunch("retry-me"))
    assert first is not None and second is not None
    assert second.id == first.id
    assert len(emu.dump_events(ALICE)[ALICE]) == 1


async def test_get_by_upn_honours_prefer_utc_and_expands_the_extended_property(
    graph: GraphServiceClient, http: httpx.AsyncClient
) -> None:
    created = await graph.users.by_user_id(ALICE).events.post(lunch())
    assert created is not None and created.id is not None
    config = prefer_utc()
    config.query_parameters = EventItemRequestBuilder.EventItemRequestBuilderGetQueryParameters(
        expand=[f"singleValueExtendedProperties($filter=id eq '{TAG}')"]
    )
    fetched = await graph.users.by_user_id("Alice@Contoso.com").events.by_event_id(created.id).get(config)
    assert fetched is not None and leftovers(fetched) == set()
    assert fetched.id == created.id
    assert [(p.id, p.value) for p in fetched.single_value_extended_properties or []] == [(TAG, "crm")]
    raw = await http.get(f"/users/{ALICE}/events/{created.id}", headers={"Prefer": UTC_PREFER})
    assert raw.headers["Preference-Applied"] == UTC_PREFER


async def test_missing_event_is_404_in_the_graph_error_envelope(
    graph: GraphServiceClient, http: httpx.AsyncClient
) -> None:
    with pytest.raises(ODataError) as caught:
        await graph.users.by_user_id(ALICE).events.by_event_id("AAMkAGI1AAAt9AHjAAA=").get()
    assert caught.value.response_status_code == 404
    assert caught.value.error is not None and caught.value.error.code == "ErrorItemNotFound"
    assert leftovers(caught.value.error, frozenset()) == set()
    raw = await http.get(f"/users/{ALICE}/events/AAMkAGI1AAAt9AHjAAA=")
    error = parse(raw.json(), ODataError)
    assert error.error is not None and error.error.inner_error is not None
    assert leftovers(error) == set()


async def test_requests_without_a_bearer_token_get_401(emu: GraphEmulator) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{emu.base_url}/users/{ALICE}/events")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"


async def test_list_pages_with_next_link(graph: GraphServiceClient) -> None:
    for _ in range(5):
        await graph.users.by_user_id(ALICE).events.post(lunch())
    config: RequestConfiguration[EventsRequestBuilder.EventsRequestBuilderGetQueryParameters] = (
        RequestConfiguration(
            query_parameters=EventsRequestBuilder.EventsRequestBuilderGetQueryParameters(top=2)
        )
    )
    page = await graph.users.by_user_id(ALICE).events.get(config)
    seen: list[str] = []
    pages = 0
    while page is not None:
        pages += 1
        assert leftovers(page, frozenset({"@odata.context"})) == set()
        seen.extend(e.id for e in page.value or [] if e.id)
        if not page.odata_next_link:
            break
        page = await graph.users.by_user_id(ALICE).events.with_url(page.odata_next_link).get()
    assert pages == 3 and len(set(seen)) == 5


async def test_list_filters_on_the_extended_property_tag(graph: GraphServiceClient) -> None:
    await graph.users.by_user_id(ALICE).events.post(lunch())
    await graph.users.by_user_id(ALICE).events.post(lunch(tagged=False))
    query = EventsRequestBuilder.EventsRequestBuilderGetQueryParameters(
        filter=f"singleValueExtendedProperties/Any(ep: ep/id eq '{TAG}' and ep/value eq 'crm')"
    )
    page = await graph.users.by_user_id(ALICE).events.get(RequestConfiguration(query_parameters=query))
    assert page is not None and len(page.value or []) == 1


async def test_patch_changes_only_given_fields_and_bumps_change_key(graph: GraphServiceClient) -> None:
    created = await graph.users.by_user_id(ALICE).events.post(lunch())
    assert created is not None and created.id is not None
    patched = (
        await graph.users.by_user_id(ALICE).events.by_event_id(created.id).patch(Event(subject="Brunch"))
    )
    assert patched is not None and leftovers(patched) == set()
    assert patched.subject == "Brunch"
    assert patched.body.content == created.body.content
    assert patched.start.date_time == created.start.date_time
    assert patched.change_key != created.change_key
    assert patched.last_modified_date_time >= created.last_modified_date_time
    assert patched.id == created.id


async def test_patch_location_keeps_locations_consistent(graph: GraphServiceClient) -> None:
    created = await graph.users.by_user_id(ALICE).events.post(lunch())
    assert created is not None and created.id is not None
    patched = (
        await graph.users.by_user_id(ALICE)
        .events.by_event_id(created.id)
        .patch(Event(location=Location(display_name="Canteen")))
    )
    assert patched is not None
    assert patched.location.display_name == "Canteen"
    assert [loc.display_name for loc in patched.locations] == ["Canteen"]


async def test_delete_answers_204_and_the_event_is_gone(
    graph: GraphServiceClient, http: httpx.AsyncClient
) -> None:
    created = await graph.users.by_user_id(ALICE).events.post(lunch())
    assert created is not None and created.id is not None
    response = await http.delete(f"/users/{ALICE}/events/{created.id}")
    assert response.status_code == 204
    assert (await http.get(f"/users/{ALICE}/events/{created.id}")).status_code == 404


async def test_unknown_user_and_unknown_property_are_graph_errors(http: httpx.AsyncClient) -> None:
    missing = await http.get("/users/nobody@contoso.com/events")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ErrorInvalidUser"
    bad = await http.post(
        f"/users/{ALICE}/events",
        json={
            "subject": "x",
            "colour": "red",
            "start": {"dateTime": "2030-01-01T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2030-01-01T11:00:00", "timeZone": "UTC"},
        },
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "RequestBodyRead"
