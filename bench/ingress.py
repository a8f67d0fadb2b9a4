"""Ingress: Graph notifications per second through the real HTTP path, beside raw Azurite enqueues.

The development host runs in its own process serving only the webhook functions (no worker draining the
queue), on the stack's Azurite. Each request is one valid notification (a known subscription and its
clientState) and enqueues one message. The raw rate is `Storage.enqueue` from this process at the same
concurrency, in the same run, warmed up like the HTTP path and timed before and after it (mean time),
so a load swing on a shared machine does not land on one side only. Then a paced run at a fixed rate gives
the acknowledgement latencies.

The load is sent with aiohttp, the HTTP stack the raw baseline's Storage client runs on, with the same
concurrency. The load generator shares the machine's cores with the host and Azurite; httpx costs
about 1.3 ms of CPU per request here against 0.2 ms for aiohttp, which charged the HTTP side with work
that is not the ingress (Graph sends the notifications, not us).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aiohttp

from bench.common import latency_summary, subprocess_host
from devstack.stack import FUNCTION_KEY, LocalStack, free_port

_TIMEOUT = aiohttp.ClientTimeout(total=30)


async def _subscriptions(stack: LocalStack) -> list[tuple[Any, str]]:
    """Our live subscriptions, each with its clientState as Graph holds it (we keep only its digest)."""
    from sync_core.bootstrap import opened

    async with opened() as c:
        rows = [r for r in await c.subscriptions.all() if r.status == "active"]
    return [(r, stack.graph.state.subscriptions[r.subscription_id].client_state) for r in rows]


def _payload(subscription: tuple[Any, str], i: int) -> bytes:
    row, client_state = subscription
    event_id = f"AAMk-bench-{i}-{uuid.uuid4().hex[:8]}"
    return json.dumps(
        {
            "value": [
                {
                    "subscriptionId": row.subscription_id,
                    "clientState": client_state,
                    "changeType": "updated",
                    "resource": f"Users/{row.mailbox}/Events/{event_id}",
                    "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "id": event_id},
                }
            ]
        }
    ).encode()


async def _burst(url: str, rows: list[Any], count: int, concurrency: int) -> tuple[float, int]:
    """`count` requests with `concurrency` in flight; (seconds, accepted)."""
    accepted = 0
    queue = list(range(count))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT) as client:

        async def one_worker() -> None:
            nonlocal accepted
            while queue:
                i = queue.pop()
                async with client.post(url, data=_payload(rows[i % len(rows)], i)) as r:
                    body = await r.json(content_type=None)
                accepted += r.status == 202 and body.get("accepted") == 1

        start = time.perf_counter()
        await asyncio.gather(*(one_worker() for _ in range(concurrency)))
        return time.perf_counter() - start, accepted


async def _raw(count: int, concurrency: int) -> float:
    from sync_core.adapters.storage.core import Storage
    from sync_core.bootstrap import configuration
    from sync_core.domain.messages import GraphChange, encode

    storage = Storage(configuration()[0])
    body = encode(  # the size of the message the host enqueues for one of _payload's notifications
        GraphChange(
            correlation_id=uuid.uuid4().hex,
            received_at=time.time(),  # type: ignore[arg-type]
            mailbox="adele@contoso.example",
            event_id=f"AAMk-bench-0-{uuid.uuid4().hex[:8]}",
            change_type="updated",
            subscription_id=str(uuid.uuid4()),
        )
    )
    try:

        async def burst(n: int) -> float:
            queue = list(range(n))

            async def one_worker() -> None:
                while queue:
                    queue.pop()
                    await storage.enqueue(body)

            start = time.perf_counter()
            await asyncio.gather(*(one_worker() for _ in range(concurrency)))
            return time.perf_counter() - start

        await burst(min(100, count))  # warm up (connections), as the HTTP path is
        return await burst(count)
    finally:
        await storage.aclose()


async def _paced(url: str, rows: list[Any], rate: float, count: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT) as client:

        async def one(i: int) -> None:
            body = _payload(rows[i % len(rows)], i)
            t0 = time.perf_counter()
            async with client.post(url, data=body) as r:
                await r.read()
            latencies.append(time.perf_counter() - t0)
            statuses[r.status] = statuses.get(r.status, 0) + 1

        start = time.perf_counter()
        tasks = []
        for i in range(count):
            wait = start + i / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {
        "sent": count,
        "achieved_per_s": count / elapsed,
        "statuses": statuses,
        **latency_summary(latencies),
    }


def run(
    count: int, concurrency: int = 16, paced_rate: float = 200.0, paced_count: int = 1000
) -> dict[str, Any]:
    stack = LocalStack().start()
    try:
        stack.host.stop()  # no in-process worker: the ingress host below is the only consumer of cores
        rows = asyncio.run(_subscriptions(stack))
        port = free_port()
        with subprocess_host("bench.host_process", stack.settings, port, "--ingress-only"):
            url = f"http://127.0.0.1:{port}/api/graph/notifications?code={FUNCTION_KEY}"
            asyncio.run(_burst(url, rows, min(100, count), concurrency))  # warm up (caches, connections)
            raw_before = asyncio.run(_raw(count, concurrency))
            http_s, accepted = asyncio.run(_burst(url, rows, count, concurrency))
            raw_s = (raw_before + asyncio.run(_raw(count, concurrency))) / 2
            paced = asyncio.run(_paced(url, rows, paced_rate, paced_count))
        http_rate, raw_rate = count / http_s, count / raw_s
        return {
            "requests": count,
            "concurrency": concurrency,
            "accepted": accepted,
            "ingress_per_s": http_rate,
            "raw_enqueue_per_s": raw_rate,
            "ratio": http_rate / raw_rate,
            "paced_rate": paced_rate,
            "paced": paced,
        }
    finally:
        stack.stop()
