"""Subscriptions, the validation handshake, change and lifecycle notifications."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from emulator_support import ALICE, ALICE_MAIL, ChangeNotificationCollection, Sink, leftovers, parse
from msgraph import GraphServiceClient
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.subscription import Subscription

from devstack.graph_emulator import GraphEmulator

NOTIFICATION_KEYS = {
    "id",
    "subscriptionId",
    "subscriptionExpirationDateTime",
    "clientState",
    "changeType",
    "resource",
    "tenantId",
    "resourceData",
}


def in_days(emu: GraphEmulator, days: float) -> datetime:
    return emu.clock.now() + timedelta(days=days)


def subscription(sink: Sink, emu: GraphEmulator, **overrides: Any) -> Subscription:
    values: dict[str, Any] = {
        "change_type": "created,updated,deleted",
        "notification_url": sink.url,
        "lifecycle_notification_url": sink.url,
        "resource": f"/users/{ALICE}/events",
        "expiration_date_time": in_days(emu, 3),
        "client_state": "s3cret",
    }
    values.update(overrides)
    return Subscription(**values)


async def create_event(http: httpx.AsyncClient, subject: str = "Standup") -> dict[str, Any]:
    response = await http.post(
        f"/users/{ALICE_MAIL}/events",
        json={
            "subject": subject,
            "start": {"dateTime": "2030-01-07T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2030-01-07T09:15:00", "timeZone": "UTC"},
        },
    )
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


async def test_create_runs_the_validation_handshake_and_returns_a_full_subscription(
    graph: GraphServiceClient, emu: GraphEmulator, sink: Sink
) -> None:
    created = await graph.subscriptions.post(subscription(sink, emu))
    assert created is not None
    assert leftovers(created, frozenset({"@odata.context", "notificationContentType"})) == set()
    for attribute in (
        "id",
        "resource",
        "application_id",
        "change_type",
        "client_state",
        "notification_url",
        "lifecycle_notification_url",
        "expiration_date_time",
        "creator_id",
        "latest_supported_tls_version",
        "include_resource_data",
    ):
        assert getattr(created, attribute) is not None, attribute
    # Both URLs validated; the function key in the query string survives, the token arrives decoded.
    assert len(sink.validations) == 2
    for validation in sink.validations:
        assert validation["query"]["code"] == "function-key"
        assert validation["token"].startswith("Validation: Testing client application reachability")
        assert validation["content_type"].startswith("text/plain")


@pytest.mark.parametrize("mode", ["wrong_body", "wrong_type", "error"])
async def test_a_wrong_validation_answer_fails_creation_with_400(
    graph: GraphServiceClient, emu: GraphEmulator, sink: Sink, mode: str
) -> None:
    sink.mode = mode
    with pytest.raises(ODataError) as caught:
        await graph.subscriptions.post(subscription(sink, emu))
    assert caught.value.response_status_code == 400
    # Documented: 400 Bad Request (subscription-post-subscriptions.md), code InvalidRequest
    # (tests/emulator/test_documented_behaviour.py cites the sources).
    assert caught.value.error is not None and caught.value.error.code == "InvalidRequest"
    assert emu.subscriptions == []


async def test_expiry_rules_duplicates_and_client_state_length(
    graph: GraphServiceClient, emu: GraphEmulator, sink: Sink
) -> None:
    with pytest.raises(ODataError) as too_long:
        await graph.subscriptions.post(subscription(sink, emu, expiration_date_time=in_days(emu, 7.01)))
    assert too_long.value.response_status_code == 400
    with pytest.raises(ODataError) as state_too_long:
        await graph.subscriptions.post(subscription(sink, emu, client_state="x" * 129))
    assert state_too_long.value.response_status_code == 400
    short = await graph.subscriptions.post(subscription(sink, emu, expiration_date_time=in_days(emu, 0.001)))
    assert short is not None and short.expiration_date_time is not None
    assert short.expiration_date_time >= emu.clock.now() + timedelta(minutes=44)
    with pytest.raises(ODataError) as duplicate:
        await graph.subscriptions.post(subscription(sink, emu))
    assert duplicate.value.response_status_code == 409


async def test_renew_get_list_reauthorize_delete(
    graph: GraphServiceClient, emu: GraphEmulator, sink: Sink, http: httpx.AsyncClient
) -> None:
    created = await graph.subscriptions.post(subscription(sink, emu))
    assert created is not None and created.id is not None
    new_expiry = in_days(emu, 6.9).replace(microsecond=0)
    renewed = await graph.subscriptions.by_subscription_id(created.id).patch(
        Subscription(expiration_date_time=new_expiry)
    )
    assert renewed is not None and renewed.expiration_date_time == new_expiry
    listed = await graph.subscriptions.get()
    assert listed is not None and [s.id for s in listed.value or []] == [created.id]
    assert leftovers(listed.value[0], frozenset({"notificationContentType"})) == set()
    fetched = await graph.subscriptions.by_subscription_id(created.id).get()
    assert fetched is not None and fetched.id == created.id
    assert (await http.post(f"/subscriptions/{created.id}/reauthorize")).status_code == 204
    assert (await http.delete(f"/subscriptions/{created.id}")).status_code == 204
    assert (await http.get(f"/subscriptions/{created.id}")).status_code == 404


async def test_subscriptions_expire_on_the_emulator_clock(
    graph: GraphServiceClient, emu: GraphEmulator, sink: Sink, http: httpx.AsyncClient
) -> None:
    created = await graph.subscriptions.post(subscription(sink, emu, expiration_date_time=in_days(emu, 2)))
    assert created is not None
    advanced = await http.post(f"{emu.admin_url}/clock", json={"advance_seconds": 3 * 86400})
    assert advanced.status_code == 200
    assert (await http.get(f"/subscriptions/{created.id}")).status_code == 404
    await create_event(http)
    with pytest.raises(AssertionError, match=r"waited 0\.3 s"):
        await sink.wait_for(1, within=0.3)


async def test_notifications_for_create_update_delete_have_graphs_shape(
    graph: GraphServiceClient, emu: GraphEmulator, sink: Sink, http: httpx.AsyncClient
) -> None:
    created_sub = await graph.subscriptions.post(subscription(sink, emu))
    assert created_sub is not None
    event = await create_event(http)
    await http.patch(f"/users/{ALICE}/events/{event['id']}", json={"subject": "Moved"})
    await http.delete(f"/users/{ALICE}/events/{event['id']}")
    items = await sink.wait_for(3)
    assert sorted(item["changeType"] for item in items) == ["created", "deleted", "updated"]
    for item in items:
        assert set(item) == NOTIFICATION_KEYS
        assert item["resource"] == f"Users/{ALICE}/Events/{event['id']}"
        assert item["resourceData"]["@odata.type"] == "#Microsoft.Graph.Event"
        assert item["resourceData"]["id"] == event["id"]
        assert item["resourceData"]["@odata.etag"].startswith('W/"')
    for post in sink.posts:
        parsed = parse(post, ChangeNotificationCollection)
        assert parsed.value and leftovers(parsed) == set()
        notification = parsed.value[0]
        assert leftovers(notification) == set() and leftovers(notification.resource_data) == set()
        assert notification.subscription_id == created_sub.id
        assert notification.client_state == "s3cret"
        assert notification.tenant_id and notification.subscription_expiration_date_time
        assert notification.resource_data is not None and notification.resource_data.odata_etag
    # The emulator records a delivery once it has read the answer, just after the sink saw the post.
    sent = await emu.wait_for_notifications(3)
    assert [n["status"] for n in sent] == [202, 202, 202]


@pytest.mark.parametrize("event", ["reauthorizationRequired", "subscriptionRemoved", "missed"])
async def test_lifecycle_notifications_from_the_admin_api(
    graph: GraphServiceClient, emu: GraphEmulator, sink: Sink, http: httpx.AsyncClient, event: str
) -> None:
    created = await graph.subscriptions.post(subscription(sink, emu))
    assert created is not None
    response = await http.post(f"{emu.admin_url}/subscriptions/{created.id}/lifecycle", json={"event": event})
    assert response.json() == {"sent": True}
    items = await sink.wait_for(1)
    assert set(items[0]) == {
        "subscriptionId",
        "subscriptionExpirationDateTime",
        "tenantId",
        "clientState",
        "lifecycleEvent",
    }
    parsed = parse(sink.posts[0], ChangeNotificationCollection)
    assert parsed.value is not None and parsed.value[0].lifecycle_event == event
    assert leftovers(parsed.value[0]) == set()
    still_there = (await http.get(f"/subscriptions/{created.id}")).status_code
    assert still_there == (404 if event == "subscriptionRemoved" else 200)


async def test_the_notification_endpoint_is_never_awaited_by_the_api(
    graph: GraphServiceClient, emu: GraphEmulator, sink: Sink, http: httpx.AsyncClient
) -> None:
    await graph.subscriptions.post(subscription(sink, emu))
    emu.set_faults(mailbox=ALICE, notify_delay_ms=500)
    started = datetime.now(UTC)
    await create_event(http)
    assert datetime.now(UTC) - started < timedelta(milliseconds=400)
    await sink.wait_for(1)
