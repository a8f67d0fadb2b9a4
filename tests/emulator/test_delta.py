"""calendarView and calendarView/delta rounds through msgraph-sdk, including @removed and 410 resets."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from emulator_support import ALICE, leftovers
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.item.calendar_view.calendar_view_request_builder import (
    CalendarViewRequestBuilder,
)
from msgraph.generated.users.item.calendar_view.delta.delta_get_response import DeltaGetResponse
from msgraph.generated.users.item.calendar_view.delta.delta_request_builder import DeltaRequestBuilder

from devstack.graph_emulator import GraphEmulator

WINDOW = {"start_date_time": "2030-01-01T00:00:00Z", "end_date_time": "2030-02-01T00:00:00Z"}


async def make(http: httpx.AsyncClient, subject: str, day: int, hour: int = 9) -> dict[str, Any]:
    response = await http.post(
        f"/users/{ALICE}/events",
        json={
            "subject": subject,
            "start": {"dateTime": f"2030-01-{day:02d}T{hour:02d}:00:00", "timeZone": "UTC"},
            "end": {"dateTime": f"2030-01-{day:02d}T{hour:02d}:30:00", "timeZone": "UTC"},
        },
    )
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


def paged(page_size: int) -> RequestConfiguration[DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters]:
    config: RequestConfiguration[DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters] = (
        RequestConfiguration(
            query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(**WINDOW)
        )
    )
    config.headers.add("Prefer", f"odata.maxpagesize={page_size}")
    return config


async def run_round(
    graph: GraphServiceClient, first_url: str | None, page_size: int = 2
) -> tuple[list[DeltaGetResponse], str]:
    builder = graph.users.by_user_id(ALICE).calendar_view.delta
    config = paged(page_size)
    page = await (builder.with_url(first_url).get(config) if first_url else builder.get(config))
    pages: list[DeltaGetResponse] = []
    while page is not None:
        pages.append(page)
        assert not (page.odata_next_link and page.odata_delta_link)
        if page.odata_delta_link:
            return pages, page.odata_delta_link
        assert page.odata_next_link
        page = await builder.with_url(page.odata_next_link).get(config)
    raise AssertionError("round ended without a deltaLink")


async def test_initial_round_pages_with_next_link_then_ends_with_delta_link(
    graph: GraphServiceClient, http: httpx.AsyncClient
) -> None:
    for day in (3, 4, 5):
        await make(http, f"day {day}", day)
    await make(http, "outside the window", 1, hour=0)  # still inside: Jan 1
    pages, delta_link = await run_round(graph, None)
    assert len(pages) == 2
    assert pages[0].odata_next_link and "$skiptoken=" in pages[0].odata_next_link
    assert "$deltatoken=" in delta_link
    events = [event for page in pages for event in page.value or []]
    assert len(events) == 4
    for page in pages:
        assert leftovers(page, frozenset({"@odata.context"})) == set()
    for event in events:
        assert leftovers(event) == set()
        assert event.id and event.change_key and event.start and event.i_cal_u_id


async def test_next_round_returns_only_changes_and_removed_entries(
    graph: GraphServiceClient, http: httpx.AsyncClient
) -> None:
    kept = await make(http, "kept", 3)
    edited = await make(http, "edited", 4)
    deleted = await make(http, "deleted", 5)
    _, delta_link = await run_round(graph, None)
    await http.patch(f"/users/{ALICE}/events/{edited['id']}", json={"subject": "edited again"})
    await http.delete(f"/users/{ALICE}/events/{deleted['id']}")
    added = await make(http, "added", 6)
    raw = await http.get(delta_link, headers={"Prefer": "odata.maxpagesize=10"})
    body = raw.json()
    assert "@odata.deltaLink" in body and "@odata.nextLink" not in body
    removed = [item for item in body["value"] if "@removed" in item]
    assert removed == [
        {"@odata.type": "#microsoft.graph.event", "id": deleted["id"], "@removed": {"reason": "deleted"}}
    ]
    changed = {item["id"]: item for item in body["value"] if "@removed" not in item}
    assert set(changed) == {edited["id"], added["id"]}
    assert kept["id"] not in changed
    pages, _ = await run_round(graph, delta_link, page_size=10)
    parsed = [event for page in pages for event in page.value or []]
    assert {e.id for e in parsed} == {deleted["id"], edited["id"], added["id"]}
    gone = next(e for e in parsed if e.id == deleted["id"])
    assert gone.additional_data.get("@removed") == {"reason": "deleted"}
    assert leftovers(gone, frozenset({"@removed"})) == set()
    quiet = await http.get(body["@odata.deltaLink"])
    assert quiet.json()["value"] == []


async def test_an_invalidated_delta_token_answers_410_sync_state_not_found(
    graph: GraphServiceClient, emu: GraphEmulator, http: httpx.AsyncClient
) -> None:
    await make(http, "one", 3)
    _, delta_link = await run_round(graph, None)
    response = await http.post(f"{emu.admin_url}/delta/invalidate", json={"mailbox": ALICE})
    assert response.status_code == 200
    gone = await http.get(delta_link)
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "syncStateNotFound"
    assert gone.headers["Location"].endswith("$deltatoken=")
    with pytest.raises(ODataError) as caught:
        await graph.users.by_user_id(ALICE).calendar_view.delta.with_url(delta_link).get()
    assert caught.value.response_status_code == 410
    restarted = await http.get(gone.headers["Location"])
    assert restarted.status_code == 200 and len(restarted.json()["value"]) == 1


async def test_calendar_view_pages_and_rejects_a_missing_window(
    graph: GraphServiceClient, http: httpx.AsyncClient
) -> None:
    for day in (3, 4, 5):
        await make(http, f"day {day}", day)
    config = RequestConfiguration(
        query_parameters=CalendarViewRequestBuilder.CalendarViewRequestBuilderGetQueryParameters(
            top=2, **WINDOW
        )
    )
    page = await graph.users.by_user_id(ALICE).calendar_view.get(config)
    assert page is not None and len(page.value or []) == 2 and page.odata_next_link
    rest = await graph.users.by_user_id(ALICE).calendar_view.with_url(page.odata_next_link).get()
    assert rest is not None and len(rest.value or []) == 1 and not rest.odata_next_link
    missing = await http.get(f"/users/{ALICE}/calendarView")
    assert missing.status_code == 400
