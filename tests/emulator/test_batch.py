"""JSON batching: per-request status, dependsOn, 424, limits; bodies parse into SDK models."""

from __future__ import annotations

from typing import Any

import httpx
from emulator_support import ALICE, leftovers, parse
from msgraph.generated.models.event import Event
from msgraph.generated.models.event_collection_response import EventCollectionResponse
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

NEW_EVENT = {
    "subject": "Batched",
    "start": {"dateTime": "2030-05-01T10:00:00", "timeZone": "UTC"},
    "end": {"dateTime": "2030-05-01T11:00:00", "timeZone": "UTC"},
}


def item(
    request_id: str, method: str, url: str, body: Any = None, depends: list[str] | None = None
) -> dict[str, Any]:
    request: dict[str, Any] = {"id": request_id, "method": method, "url": url}
    if body is not None:
        request["body"] = body
        request["headers"] = {"Content-Type": "application/json"}
    if depends:
        request["dependsOn"] = depends
    return request


async def test_batch_responses_carry_status_headers_and_sdk_parsable_bodies(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/$batch",
        json={
            "requests": [
                item("1", "POST", f"/users/{ALICE}/events", NEW_EVENT),
                item("2", "GET", f"/users/{ALICE}/events?$top=5", depends=["1"]),
                item("3", "GET", f"/users/{ALICE}/events/AAMkAGI1AAAt9AHjAAA=", depends=["2"]),
                item("4", "GET", f"users/{ALICE}/events", depends=["3"]),
            ]
        },
    )
    assert response.status_code == 200
    by_id = {r["id"]: r for r in response.json()["responses"]}
    assert [by_id[k]["status"] for k in "1234"] == [201, 200, 404, 424]
    created = parse(by_id["1"]["body"], Event)
    assert leftovers(created) == set() and created.subject == "Batched"
    listed = parse(by_id["2"]["body"], EventCollectionResponse)
    assert leftovers(listed, frozenset({"@odata.context"})) == set() and len(listed.value or []) == 1
    missing = parse(by_id["3"]["body"], ODataError)
    assert missing.error is not None and missing.error.code == "ErrorItemNotFound"
    failed = parse(by_id["4"]["body"], ODataError)
    assert failed.error is not None and failed.error.code == "FailedDependency"
    assert all("Content-Type" in r["headers"] for r in by_id.values())


async def test_batch_limits_are_400(http: httpx.AsyncClient) -> None:
    too_many = await http.post(
        "/$batch", json={"requests": [item(str(i), "GET", "/subscriptions") for i in range(21)]}
    )
    assert too_many.status_code == 400
    duplicated = await http.post(
        "/$batch", json={"requests": [item("a", "GET", "/subscriptions"), item("A", "GET", "/subscriptions")]}
    )
    assert duplicated.status_code == 400
    unknown_dep = await http.post(
        "/$batch", json={"requests": [item("a", "GET", "/subscriptions", depends=["b"])]}
    )
    assert unknown_dep.status_code == 400
