"""Recurring series: expansion in calendarView, instances, exceptions and cancelled occurrences."""

from __future__ import annotations

from typing import Any

import httpx
from emulator_support import ALICE, leftovers
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.users.item.events.item.event_item_request_builder import EventItemRequestBuilder

WINDOW = {"startDateTime": "2030-01-01T00:00:00Z", "endDateTime": "2030-02-01T00:00:00Z"}


def series(pattern: dict[str, Any], rng: dict[str, Any]) -> dict[str, Any]:
    return {
        "subject": "Weekly sync",
        "start": {"dateTime": "2030-01-07T09:00:00", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2030-01-07T09:30:00", "timeZone": "W. Europe Standard Time"},
        "recurrence": {"pattern": pattern, "range": rng},
    }


async def create(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(f"/users/{ALICE}/events", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def view(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await http.get(f"/users/{ALICE}/calendarView", params={**WINDOW, "$top": "50"})
    values: list[dict[str, Any]] = response.json()["value"]
    return values


async def test_weekly_series_expands_into_occurrences(http: httpx.AsyncClient) -> None:
    master = await create(
        http,
        series(
            {"type": "weekly", "interval": 1, "daysOfWeek": ["monday", "wednesday"]},
            {"type": "numbered", "startDate": "2030-01-07", "numberOfOccurrences": 5},
        ),
    )
    assert master["type"] == "seriesMaster"
    occurrences = await view(http)
    assert [o["start"]["dateTime"][:16] for o in occurrences] == [
        "2030-01-07T08:00",
        "2030-01-09T08:00",
        "2030-01-14T08:00",
        "2030-01-16T08:00",
        "2030-01-21T08:00",
    ]
    assert {o["type"] for o in occurrences} == {"occurrence"}
    assert {o["seriesMasterId"] for o in occurrences} == {master["id"]}
    assert len({o["id"] for o in occurrences}) == 5
    assert all(o["originalStart"].startswith(o["start"]["dateTime"][:16]) for o in occurrences)
    assert len({o["iCalUId"] for o in occurrences}) == 5  # per occurrence, as Graph documents


async def test_monthly_yearly_and_daily_patterns(http: httpx.AsyncClient) -> None:
    await create(
        http,
        series(
            {"type": "daily", "interval": 10},
            {"type": "endDate", "startDate": "2030-01-07", "endDate": "2030-01-27"},
        ),
    )
    await create(
        http,
        series(
            {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["friday"], "index": "last"},
            {"type": "noEnd", "startDate": "2030-01-07"},
        ),
    )
    await create(
        http,
        series(
            {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 31},
            {"type": "noEnd", "startDate": "2030-01-07"},
        ),
    )
    await create(
        http,
        series(
            {"type": "absoluteYearly", "interval": 1, "month": 1, "dayOfMonth": 20},
            {"type": "noEnd", "startDate": "2030-01-07"},
        ),
    )
    days = sorted(o["start"]["dateTime"][:10] for o in await view(http))
    assert days == ["2030-01-07", "2030-01-17", "2030-01-20", "2030-01-25", "2030-01-27", "2030-01-31"]


async def test_instances_exceptions_and_cancelled_occurrences(
    http: httpx.AsyncClient, graph: GraphServiceClient
) -> None:
    master = await create(
        http,
        series(
            {"type": "daily", "interval": 1},
            {"type": "numbered", "startDate": "2030-01-07", "numberOfOccurrences": 3},
        ),
    )
    instances = (await http.get(f"/users/{ALICE}/events/{master['id']}/instances", params=WINDOW)).json()[
        "value"
    ]
    assert len(instances) == 3
    moved = await http.patch(
        f"/users/{ALICE}/events/{instances[1]['id']}",
        json={
            "subject": "Moved",
            "start": {"dateTime": "2030-01-08T15:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2030-01-08T15:30:00", "timeZone": "UTC"},
        },
    )
    assert moved.status_code == 200 and moved.json()["type"] == "exception"
    assert (await http.delete(f"/users/{ALICE}/events/{instances[2]['id']}")).status_code == 204
    assert (await http.get(f"/users/{ALICE}/events/{instances[2]['id']}")).status_code == 404
    occurrences = await view(http)
    assert [(o["type"], o["subject"]) for o in occurrences] == [
        ("occurrence", "Weekly sync"),
        ("exception", "Moved"),
    ]
    config = RequestConfiguration(
        query_parameters=EventItemRequestBuilder.EventItemRequestBuilderGetQueryParameters(
            select=["subject", "cancelledOccurrences", "exceptionOccurrences"]
        )
    )
    fetched = await graph.users.by_user_id(ALICE).events.by_event_id(master["id"]).get(config)
    assert fetched is not None and leftovers(fetched) == set()
    assert fetched.cancelled_occurrences == [f"OID.{master['id']}.2030-01-09"]
    assert [e.subject for e in fetched.exception_occurrences or []] == ["Moved"]


async def test_delta_expands_series_and_reports_cancelled_occurrences(http: httpx.AsyncClient) -> None:
    master = await create(
        http,
        series(
            {"type": "daily", "interval": 1},
            {"type": "numbered", "startDate": "2030-01-07", "numberOfOccurrences": 3},
        ),
    )
    first = (await http.get(f"/users/{ALICE}/calendarView/delta", params=WINDOW)).json()
    assert [e["type"] for e in first["value"]] == ["occurrence"] * 3
    await http.delete(f"/users/{ALICE}/events/{first['value'][0]['id']}")
    second = (await http.get(first["@odata.deltaLink"])).json()
    removed = [e["id"] for e in second["value"] if "@removed" in e]
    assert removed == [first["value"][0]["id"]]
    await http.delete(f"/users/{ALICE}/events/{master['id']}")
    third = (await http.get(second["@odata.deltaLink"])).json()
    assert sorted(e["id"] for e in third["value"] if "@removed" in e) == sorted(
        e["id"] for e in first["value"][1:]
    )
