"""Injected faults: 429 with Retry-After, 503, the mailbox concurrency limit, notification faults."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from emulator_support import ALICE, ALICE_MAIL, BOB, Sink
from msgraph import GraphServiceClient

from devstack.graph_emulator import GraphEmulator


async def test_throttle_count_answers_429_with_retry_after(
    http: httpx.AsyncClient, emu: GraphEmulator
) -> None:
    response = await http.post(
        f"{emu.admin_url}/faults", json={"mailbox": ALICE_MAIL, "throttle_count": 2, "retry_after": 2.5}
    )
    assert response.status_code == 200
    first = await http.get(f"/users/{ALICE}/events")
    assert first.status_code == 429 and first.headers["Retry-After"] == "2.5"
    assert first.json()["error"]["code"] == "TooManyRequests"
    assert (await http.get(f"/users/{ALICE}/events")).status_code == 429
    assert (await http.get(f"/users/{ALICE}/events")).status_code == 200
    assert (await http.get(f"/users/{BOB}/events")).status_code == 200


async def test_msgraph_sdk_retries_after_an_injected_429(
    graph: GraphServiceClient, emu: GraphEmulator
) -> None:
    emu.set_faults(mailbox=ALICE, throttle_count=1, retry_after=0.1)
    page = await graph.users.by_user_id(ALICE).events.get()
    assert page is not None
    assert [r["status"] for r in emu.requests] == [429, 200]


async def test_unavailable_rate_and_latency(http: httpx.AsyncClient, emu: GraphEmulator) -> None:
    emu.set_faults(unavailable_rate=1.0, retry_after=1)
    response = await http.get(f"/users/{ALICE}/events")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    emu.clear_faults()
    emu.set_faults(mailbox=ALICE, latency_ms=150)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await http.get(f"/users/{ALICE}/events")).status_code == 200
    assert loop.time() - started >= 0.14


async def test_more_than_four_concurrent_requests_per_mailbox_are_throttled(
    http: httpx.AsyncClient, emu: GraphEmulator
) -> None:
    emu.set_faults(mailbox=ALICE, latency_ms=300)
    responses = await asyncio.gather(*(http.get(f"/users/{ALICE}/events") for _ in range(6)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 200, 200, 429, 429]
    throttled = next(r for r in responses if r.status_code == 429)
    assert throttled.json()["error"]["code"] == "ApplicationThrottled" and "Retry-After" in throttled.headers
    seen = emu.max_concurrency_seen
    assert seen[ALICE] >= 5 and seen[ALICE_MAIL] == seen[ALICE]


async def subscribe(http: httpx.AsyncClient, emu: GraphEmulator, sink: Sink) -> None:
    response = await http.post(
        "/subscriptions",
        json={
            "changeType": "created",
            "notificationUrl": sink.url,
            "resource": f"/users/{ALICE}/events",
            "expirationDateTime": (emu.clock.now() + timedelta(days=1)).isoformat(),
            "clientState": "c",
        },
    )
    assert response.status_code == 201, response.text


async def create(http: httpx.AsyncClient, subject: str) -> dict[str, Any]:
    response = await http.post(
        f"/users/{ALICE}/events",
        json={
            "subject": subject,
            "start": {"dateTime": "2030-05-01T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2030-05-01T11:00:00", "timeZone": "UTC"},
        },
    )
    body: dict[str, Any] = response.json()
    return body


async def test_notifications_can_be_duplicated_dropped_and_reordered(
    http: httpx.AsyncClient, emu: GraphEmulator, sink: Sink
) -> None:
    await subscribe(http, emu, sink)
    emu.set_faults(mailbox=ALICE, notify_duplicate_rate=1.0)
    first = await create(http, "twice")
    items = await sink.wait_for(2)
    assert [i["resourceData"]["id"] for i in items] == [first["id"], first["id"]]
    emu.set_faults(mailbox=ALICE, notify_drop_rate=1.0)
    await create(http, "never")
    await asyncio.sleep(0.2)
    assert len(sink.notifications()) == 2
    assert emu.notifications_sent[-1]["error"] == "dropped by fault"
    emu.set_faults(mailbox=ALICE, notify_reorder_window_ms=150)
    ids = [(await create(http, f"burst {n}"))["id"] for n in range(3)]
    items = await sink.wait_for(5)
    assert [i["resourceData"]["id"] for i in items[2:]] == list(reversed(ids))


async def create_once(http: httpx.AsyncClient, user: str, transaction_id: str) -> httpx.Response:
    return await http.post(
        f"/users/{user}/events",
        json={
            "subject": "Once",
            "transactionId": transaction_id,
            "start": {"dateTime": "2030-05-02T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2030-05-02T11:00:00", "timeZone": "UTC"},
        },
    )


@pytest.mark.parametrize("status", [400, 409])
async def test_duplicate_transaction_status_refuses_a_reused_transaction_id_without_a_second_event(
    http: httpx.AsyncClient, emu: GraphEmulator, status: int
) -> None:
    first = await create_once(http, ALICE, "tx-dup")
    assert first.status_code == 201
    emu.set_faults(mailbox=ALICE_MAIL, duplicate_transaction_status=status)
    again = await create_once(http, ALICE, "tx-dup")
    assert again.status_code == status
    assert again.json()["error"]["code"] == "ErrorDuplicateTransactionId"
    assert (await create_once(http, ALICE, "tx-new")).status_code == 201  # a new transactionId is created
    assert (await create_once(http, BOB, "tx-dup")).status_code == 201  # another mailbox is not affected
    assert sorted(e["transactionId"] for e in emu.dump_events(ALICE)[ALICE]) == ["tx-dup", "tx-new"]
    emu.clear_faults()
    returned = await create_once(http, ALICE, "tx-dup")
    assert returned.status_code == 201 and returned.json()["id"] == first.json()["id"]


async def test_duplicate_transaction_status_accepts_only_the_statuses_graph_answers(
    http: httpx.AsyncClient, emu: GraphEmulator
) -> None:
    refused = await http.post(f"{emu.admin_url}/faults", json={"duplicate_transaction_status": 500})
    assert refused.status_code == 400 and "duplicate_transaction_status" in refused.text
    accepted = await http.post(
        f"{emu.admin_url}/faults", json={"mailbox": ALICE_MAIL, "duplicate_transaction_status": 409}
    )
    assert accepted.status_code == 200
    assert accepted.json()[ALICE]["duplicate_transaction_status"] == 409
