"""Fairness and coalescing (issue 20, service/fairness.py): counts, not timings.

- repeated notifications for one item handled together cost one handling (one Graph read), never fewer
  than what at-least-once needs: a failed handling covers nothing, a later message is handled again;
- a mailbox's burst at the ingress is bounded on the live queue (the rest goes to the bulk queue), and
  another mailbox's notifications stay live;
- a resync's items go to the bulk queue, whose retries stay there.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sync_core.domain.messages import GraphChange, decode, encode
from sync_core.domain.subscription import SubscriptionRow, client_state_digest
from sync_core.errors import TransientError
from sync_core.ingress.graph import LIVE_BURST, BurstGate, handle_notifications
from sync_core.service import fairness
from sync_core.service.fairness import COALESCED, Coalescer

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "graph"
SECRET = "s3cret-client-state"


def change(event_id: str = "AAMk-1", mailbox: str = "adele@contoso.example", kind: str = "updated") -> Any:
    return GraphChange(
        correlation_id="c", received_at=NOW, mailbox=mailbox, event_id=event_id, change_type=kind
    )


class Handler:
    def __init__(self, fail_first: int = 0) -> None:
        self.calls: list[str] = []
        self.fail_first = fail_first
        self.in_flight = 0
        self.peak = 0

    async def __call__(self, message: Any) -> str:
        self.calls.append(message.event_id)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.01)  # the Graph read and the rest
            if len(self.calls) <= self.fail_first:
                raise TransientError("Graph 503")
            return "handled"
        finally:
            self.in_flight -= 1


async def test_repeated_notifications_for_one_item_in_one_batch_cost_one_handling() -> None:
    coalescer, handler = Coalescer(), Handler()
    results = await asyncio.gather(*(coalescer.run(change(), handler) for _ in range(16)))
    assert handler.calls == ["AAMk-1"], "one handling (one Graph read) for the 16 notifications"
    assert results.count("handled") == 1 and results.count(COALESCED) == 15
    assert coalescer.coalesced == 15


async def test_a_notification_arriving_during_a_handling_is_handled_once_more_then_the_rest_coalesce() -> (
    None
):
    coalescer, handler = Coalescer(), Handler()
    first = asyncio.create_task(coalescer.run(change(), handler))
    await asyncio.sleep(0.002)  # the first handling has begun its reads
    later = [asyncio.create_task(coalescer.run(change(), handler)) for _ in range(10)]
    await asyncio.gather(first, *later)
    assert len(handler.calls) == 2, "the change may have come after the first read began: read once more"
    assert handler.peak == 1, "one handling of an item at a time per process"


async def test_sequential_messages_for_an_item_are_each_handled() -> None:
    coalescer, handler = Coalescer(), Handler()
    for _ in range(3):
        assert await coalescer.run(change(), handler) == "handled"
    assert len(handler.calls) == 3, "a message arriving after a handling began is never covered by it"


async def test_a_failed_handling_covers_nothing() -> None:
    coalescer, handler = Coalescer(), Handler(fail_first=1)
    results = await asyncio.gather(
        *(coalescer.run(change(), handler) for _ in range(3)), return_exceptions=True
    )
    assert isinstance(results[0], TransientError)
    assert len(handler.calls) == 2 and results[1:] == ["handled", COALESCED]


async def test_different_items_and_change_types_are_not_coalesced_nor_serialized() -> None:
    coalescer, handler = Coalescer(), Handler()
    messages = [change("A"), change("B"), change("A", kind="deleted"), change("A", mailbox="bruno@x.example")]
    assert await asyncio.gather(*(coalescer.run(m, handler) for m in messages)) == ["handled"] * 4
    assert handler.peak == 4


def test_the_burst_gate_keeps_a_mailbox_to_its_burst_then_its_rate() -> None:
    now = [0.0]
    gate = BurstGate(rate=10.0, burst=40, clock=lambda: now[0])
    assert [gate.live("adele@x.example") for _ in range(50)].count(True) == 40
    assert gate.live("bruno@x.example"), "another mailbox has its own bucket"
    now[0] += 1.0
    assert [gate.live("ADELE@x.example") for _ in range(50)].count(True) == 10


def _notifications(count: int, sub_id: str) -> bytes:
    payload = json.loads((FIXTURES / "graph_change_notification_event_created.json").read_text())
    template = payload["value"][0] | {"subscriptionId": sub_id, "clientState": SECRET}
    values = []
    for n in range(count):
        item = json.loads(json.dumps(template))
        item["resourceData"]["id"] = f"AAMk-{n}"
        item["resource"] = f"Users/{sub_id}/Events/AAMk-{n}"
        values.append(item)
    return json.dumps({"value": values}).encode()


async def test_a_mailbox_burst_at_the_ingress_is_bounded_on_the_live_queue_and_others_stay_live() -> None:
    ids = {"adele": "11111111-1111-4111-8111-111111111111", "bruno": "22222222-2222-4222-8222-222222222222"}
    rows = {
        ids[name]: SubscriptionRow(
            ids[name], f"{name}@contoso.example", client_state_digest(SECRET), NOW.replace(day=25)
        )
        for name in ids
    }
    live: list[str] = []
    bulk: list[str] = []

    async def lookup(sub_id: str) -> SubscriptionRow | None:
        return rows.get(sub_id)

    async def to_live(text: str) -> None:
        live.append(text)

    async def to_bulk(text: str) -> None:
        bulk.append(text)

    gate = BurstGate(clock=lambda: 0.0)
    for _ in range(5):
        reply = await handle_notifications(
            _notifications(200, ids["adele"]), lookup, to_live, NOW, bulk=to_bulk, gate=gate
        )
        assert reply.status == 202, reply.body
    reply = await handle_notifications(
        _notifications(3, ids["bruno"]), lookup, to_live, NOW, bulk=to_bulk, gate=gate
    )
    assert reply.status == 202
    mailboxes = [decode(t).mailbox for t in live]  # type: ignore[union-attr]
    assert mailboxes.count("adele@contoso.example") == LIVE_BURST, "the rest of the burst is bulk work"
    assert mailboxes.count("bruno@contoso.example") == 3
    assert len(bulk) == 1000 - LIVE_BURST


@pytest.mark.parametrize("queue", ["sync-changes", "sync-bulk"])
async def test_a_retried_message_goes_back_to_the_queue_it_came_from(queue: str) -> None:
    from sync_core.service.retry import process

    sent: list[tuple[str, str | None]] = []

    class Storage:
        async def enqueue(
            self, text: str, *, queue: str = "sync-changes", visibility_timeout: int | None = None
        ) -> None:
            sent.append((queue, text))

    class Failures:
        async def record(self, **_: Any) -> int:
            return 1

    async def handler(message: Any) -> None:
        raise TransientError("Graph 503")

    body = encode(change())
    ended = await process(
        body,
        message_id="m1",
        dequeue_count=1,
        handler=handler,
        storage=Storage(),  # type: ignore[arg-type]
        failures=Failures(),  # type: ignore[arg-type]
        now=lambda: NOW,
        queue=queue,
    )
    assert ended == "retrying" and sent == [(queue, body)]


async def test_the_coalescer_and_the_bulk_limit_belong_to_the_running_loop() -> None:
    assert fairness.coalescer() is fairness.coalescer()


async def test_bulk_work_waits_while_live_work_is_in_flight_and_takes_at_most_its_places() -> None:
    order: list[str] = []
    live_may_end = asyncio.Event()

    async def live() -> None:
        async with fairness.live_work():
            order.append("live starts")
            await live_may_end.wait()
            order.append("live ends")

    async def bulk(n: int) -> None:
        async with fairness.bulk_slot():
            order.append(f"bulk {n}")
            await asyncio.sleep(0.01)

    live_task = asyncio.create_task(live())
    await asyncio.sleep(0)
    bulks = [asyncio.create_task(bulk(n)) for n in range(3)]
    await asyncio.sleep(0.05)
    assert order == ["live starts"], "no bulk message starts while a live one is in work"
    live_may_end.set()
    await asyncio.gather(live_task, *bulks)
    assert order[:2] == ["live starts", "live ends"] and sorted(order[2:]) == ["bulk 0", "bulk 1", "bulk 2"]
    assert fairness.BULK_CONCURRENCY == 2


async def test_a_run_of_edits_arriving_one_by_one_shares_reads() -> None:
    coalescer, handler = Coalescer(), Handler()

    async def arrive(n: int) -> Any:
        await asyncio.sleep(0.02 * n)  # one notification every 20 ms, each handling 10 ms
        return await coalescer.run(change(), handler)

    results = await asyncio.gather(*(arrive(n) for n in range(10)))
    assert len(handler.calls) <= 3, f"{len(handler.calls)} reads for a run of 10 edits"
    assert results.count("handled") == len(handler.calls) and results[-1] in ("handled", COALESCED)
