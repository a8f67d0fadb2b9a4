"""GraphAdapter.batch against the emulator: 20 at most, per-request translated results, dependsOn, retries."""

from __future__ import annotations

import pytest
from graph_support import ALICE_MAIL, BOB_MAIL, at, meeting

from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.graph.adapter import GraphAdapter
from sync_core.adapters.graph.base import config
from sync_core.adapters.graph.batch import BatchRequest
from sync_core.errors import NotFoundError, UnprocessableError


async def _created(adapter: GraphAdapter, n: int, mailbox: str = ALICE_MAIL) -> list[str]:
    ids = []
    for i in range(n):
        event = await adapter.create_event(
            mailbox, meeting(f"Batch {i}", at(2 + i)), transaction_id=f"tx-{mailbox}-{i}", tag=f"k{i}"
        )
        ids.append(event.event_id)
    return ids


async def test_get_events_batches_and_reports_gone_items_as_none(
    adapter: GraphAdapter, emu: GraphEmulator
) -> None:
    ids = await _created(adapter, 22)
    emu.clear_requests()
    found = await adapter.get_events(ALICE_MAIL, [*ids, "AAMkGone"])
    assert [found[i].appointment.subject for i in ids] == [f"Batch {i}" for i in range(22)]  # type: ignore[union-attr]
    assert found["AAMkGone"] is None
    assert {found[i].written_by_us for i in ids} == {f"k{i}" for i in range(22)}  # type: ignore[union-attr]
    outer = [r for r in emu.requests if r["path"] == "/$batch"]
    items = [r for r in emu.requests if r["batch"]]
    assert len(outer) == 2 and len(items) == 23  # 20 + 3: Graph's limit per batch
    assert max(len(r["json"]["requests"]) for r in outer) == 20


async def test_per_request_results_are_translated_with_mailbox_and_item(
    adapter: GraphAdapter, emu: GraphEmulator
) -> None:
    (event_id,) = await _created(adapter, 1)
    ok = adapter.batch_request(
        adapter.client.users.by_user_id(ALICE_MAIL)
        .events.by_event_id(event_id)
        .to_get_request_information(config()),
        id="a",
        mailbox=ALICE_MAIL,
        item_id=event_id,
    )
    gone = adapter.batch_request(
        adapter.client.users.by_user_id(ALICE_MAIL)
        .events.by_event_id("nope")
        .to_get_request_information(config()),
        id="b",
        mailbox=ALICE_MAIL,
        item_id="nope",
    )
    results = await adapter.batch([ok, gone])
    assert results["a"].ok and results["a"].status == 200
    error = results["b"].error
    assert isinstance(error, NotFoundError) and (error.mailbox, error.item_id) == (ALICE_MAIL, "nope")


async def test_depends_on_runs_in_order_and_a_failed_dependency_is_424(
    adapter: GraphAdapter, emu: GraphEmulator
) -> None:
    (event_id,) = await _created(adapter, 1)
    events = adapter.client.users.by_user_id(ALICE_MAIL).events
    patch = BatchRequest(
        id="1",
        method="PATCH",
        url=f"/users/{ALICE_MAIL}/events/{event_id}",
        mailbox=ALICE_MAIL,
        body={"subject": "Renamed"},
    )
    read = adapter.batch_request(
        events.by_event_id(event_id).to_get_request_information(config()),
        id="2",
        mailbox=ALICE_MAIL,
        depends_on=["1"],
    )
    results = await adapter.batch([patch, read])
    body = results["2"].body
    assert results["1"].status == 200 and body["subject"] == "Renamed"
    broken = BatchRequest(
        id="x", method="PATCH", url=f"/users/{ALICE_MAIL}/events/missing", mailbox=ALICE_MAIL, body={}
    )
    after = BatchRequest(
        id="y",
        method="GET",
        url=f"/users/{ALICE_MAIL}/events/{event_id}",
        mailbox=ALICE_MAIL,
        depends_on=("x",),
    )
    results = await adapter.batch([broken, after])
    assert isinstance(results["x"].error, NotFoundError)
    assert results["y"].status == 424 and results["y"].error is not None
    batches = [r["json"]["requests"] for r in emu.requests if r["path"] == "/$batch"]
    assert batches[-1][1]["dependsOn"] == ["x"]
    assert all('IdType="ImmutableId"' in item["headers"]["Prefer"] for item in batches[-1])


async def test_graph_batch_rules_are_checked_before_sending(
    adapter: GraphAdapter, emu: GraphEmulator
) -> None:
    item = BatchRequest(id="1", method="GET", url="/users/x/events", mailbox=ALICE_MAIL)
    with pytest.raises(UnprocessableError):
        await adapter.batch(
            [
                BatchRequest(id=str(i), method="GET", url="/users/x/events", mailbox=ALICE_MAIL)
                for i in range(21)
            ]
        )
    with pytest.raises(UnprocessableError):
        await adapter.batch([item, BatchRequest(id="1", method="GET", url="/u", mailbox=ALICE_MAIL)])
    with pytest.raises(UnprocessableError):
        await adapter.batch(
            [BatchRequest(id="1", method="GET", url="/u", mailbox=ALICE_MAIL, depends_on=("9",))]
        )
    assert emu.requests == []


async def test_throttled_items_are_sent_again_after_retry_after(
    adapter: GraphAdapter, emu: GraphEmulator
) -> None:
    ids = await _created(adapter, 6) + await _created(adapter, 2, BOB_MAIL)
    emu.set_faults(ALICE_MAIL, throttle_count=3, retry_after=0.2)
    emu.clear_requests()
    alice = await adapter.get_events(ALICE_MAIL, ids[:6])
    assert all(alice[i] is not None for i in ids[:6])
    items = [r for r in emu.requests if r["batch"]]
    assert sum(1 for r in items if r["status"] == 429) == 3
    assert len(items) == 9  # six, then the three throttled ones again
    assert emu.max_concurrency_seen[ALICE_MAIL] <= 4


async def test_every_batch_item_carries_the_prefer_headers(adapter: GraphAdapter, emu: GraphEmulator) -> None:
    ids = await _created(adapter, 3)
    emu.clear_requests()
    await adapter.get_events(ALICE_MAIL, ids)
    for request in emu.requests:
        prefer = ", ".join(v for k, v in request["headers"].items() if k.lower() == "prefer")
        assert 'IdType="ImmutableId"' in prefer and 'outlook.timezone="UTC"' in prefer, request
