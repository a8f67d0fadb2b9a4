"""The operations code at scale, against Azurite, counting the Table requests it sends.

Recent decisions are a key-only, newest-first read of the decision log's hourly time index; status reads
every mailbox row with one partition query; the CRM replay records are purged by the hourly sweep in
batches, never inside a webhook request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from azure.data.tables.aio import TableClient

from devstack.crm_emulator import CrmEmulator
from sync_core.adapters.storage.core import (
    CHANGES_QUEUE,
    DECISIONS_TABLE,
    MAILBOXES_TABLE,
    MAPPINGS_TABLE,
    SUBSCRIPTIONS_TABLE,
    Storage,
)
from sync_core.adapters.storage.decisions import INDEX_RETENTION, DecisionLog, index_partition
from sync_core.adapters.storage.mappings import MappingStore
from sync_core.adapters.storage.purge import delete_range
from sync_core.adapters.storage.replays import ReplayGuard, fingerprint, partition
from sync_core.adapters.storage.subscriptions import SubscriptionStore
from sync_core.bootstrap import Container, policy_from
from sync_core.domain.messages import MailboxResync, decode
from sync_core.domain.policy import load_policy
from sync_core.domain.subscription import SubscriptionRow
from sync_core.ingress.crm import REPLAY_REASON, handle_crm_webhook
from sync_core.ops import operations as ops
from sync_core.ports.crm_webhook import sign
from sync_core.service.reconcile import MailboxState, MailboxStateStore
from sync_core.service.sweeps import run_sweep
from sync_core.settings import load_settings
from tests.clock import ManualClock

NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Requests:
    """Every HTTP request a TableClient sent: (method, decoded URL)."""

    sent: list[tuple[str, str]] = field(default_factory=list)

    def hook(self, request: Any) -> None:
        self.sent.append((request.http_request.method, unquote(request.http_request.url)))

    def take(self) -> list[tuple[str, str]]:
        out, self.sent = self.sent, []
        return out


@pytest.fixture
async def counted(storage: Storage, storage_connection_string: str) -> AsyncIterator[Any]:
    """`counted(table_name)`: a TableClient on the ops Azurite recording its requests in `.requests`."""
    clients: list[TableClient] = []

    def make(name: str) -> tuple[TableClient, Requests]:
        requests = Requests()
        client = TableClient.from_connection_string(
            storage_connection_string, name, raw_request_hook=requests.hook
        )
        clients.append(client)
        return client, requests

    yield make
    for client in clients:
        await client.close()


async def record(log: DecisionLog, item: str, at: datetime, rule: str = "S5", side: str = "crm") -> None:
    await log.record(
        side=side,
        item_id=item,
        at=at,
        meeting_key=None,
        rule=rule,
        reason=f"{rule} on {item}",
        actions=[{"kind": "skip"}],
        correlation_id=f"c-{item}",
        versions={"crm": "v1"},
        outcome="no-op",
    )


# -- 1. recent decisions ------------------------------------------------------------------------------


async def test_E1_a_decision_costs_one_table_write_and_recent_reads_the_newest_hour_with_one_key_query(
    storage: Storage, counted: Any
) -> None:
    table, requests = counted(DECISIONS_TABLE)
    log = DecisionLog(table)
    for n in range(5):
        await record(log, f"crm-{n}", NOW - timedelta(seconds=n))
    writes = requests.take()
    assert [m for m, _ in writes] == ["POST"] * 5, "the item row, nothing else"
    await log.flush()
    (batch,) = requests.take()
    assert batch[0] == "POST" and batch[1].endswith("/$batch"), "the five index rows in one transaction"
    # Decoys outside the index: a newer row in another partition is not what `recent` reads.
    await storage.table(DECISIONS_TABLE).create_entity(
        {"PartitionKey": "zz-not-indexed", "RowKey": "0", "At": (NOW + timedelta(minutes=1)).isoformat()}
    )

    rows = await log.recent(since=NOW - timedelta(hours=24), now=NOW, limit=3)

    assert [r["item_id"] for r in rows] == ["crm-0", "crm-1", "crm-2"]
    assert rows[0]["actions"] == [{"kind": "skip"}] and rows[0]["rule"] == "S5"
    reads = requests.take()
    # The index partition of the hour `now + skew` is read first: it may be the next hour's, empty.
    assert 1 <= len(reads) <= 2 and all(m == "GET" for m, _ in reads)
    for _, url in reads:
        assert "PartitionKey eq 'recent-" in url and "RowKey lt '" in url and "$top=3" in url
        assert " At " not in url, "no filter on a non-key property"
    assert f"PartitionKey eq '{index_partition(NOW)}'" in reads[-1][1]


async def test_E1_recent_is_newest_first_across_hours_stops_at_since_and_skips_empty_hours(
    storage: Storage,
) -> None:
    log = DecisionLog(storage.table(DECISIONS_TABLE))
    # Hours 0, 1, 5 and 30 ago; two decisions in the current hour; hours 2-4 are empty.
    ages = [timedelta(minutes=1), timedelta(minutes=2), timedelta(hours=1), timedelta(hours=5)]
    for n, age in enumerate(ages):
        await record(log, f"crm-{n}", NOW - age)
    await record(log, "crm-old", NOW - timedelta(hours=30))
    await log.flush()  # `ops.recent_decisions` reads with a log of its own

    everything = await ops.recent_decisions(storage, since=NOW - timedelta(hours=24), limit=25, now=NOW)
    two = await ops.recent_decisions(storage, since=NOW - timedelta(hours=24), limit=2, now=NOW)
    since_exact = await ops.recent_decisions(storage, since=NOW - timedelta(hours=1), limit=25, now=NOW)

    assert [r["item_id"] for r in everything] == ["crm-0", "crm-1", "crm-2", "crm-3"]
    assert [r["item_id"] for r in two] == ["crm-0", "crm-1"]
    assert [r["item_id"] for r in since_exact] == ["crm-0", "crm-1", "crm-2"], "`since` is inclusive"


async def test_E1_explain_still_reads_the_item_rows_and_the_index_purge_keeps_them(storage: Storage) -> None:
    log = DecisionLog(storage.table(DECISIONS_TABLE))
    old = NOW - INDEX_RETENTION - timedelta(hours=2)
    for n in range(120):  # two batched deletes for the old hour's index
        await record(log, "crm-7", old + timedelta(seconds=n), rule=f"R{n}")
    await record(log, "crm-7", NOW, rule="D3")

    purged = await log.purge_index(NOW)

    assert purged == 120
    partitions = {e["PartitionKey"] async for e in storage.table(DECISIONS_TABLE).list_entities()}
    assert {pk for pk in partitions if pk.startswith("recent-")} == {index_partition(NOW)}
    mappings = MappingStore(storage.table(MAPPINGS_TABLE))
    explained = await ops.explain(log, mappings, "crm-7")
    assert len(explained) == 50 and explained[0]["rule"] == "D3" and explained[0]["versions"] == {"crm": "v1"}
    assert [r["rule"] for r in await log.recent(since=old, now=NOW)] == ["D3"]


# -- 2. status over many mailboxes --------------------------------------------------------------------

MANY = 1_500


async def test_status_reads_every_mailbox_row_with_one_paged_partition_query(
    storage: Storage, counted: Any
) -> None:
    names = [f"user{n:04d}@contoso.example" for n in range(MANY)]
    policy = load_policy(
        {
            "own_domains": ["contoso.example"],
            "sync_users": [{"email": mb, "crm_user_id": f"u{n}"} for n, mb in enumerate(names)],
        }
    )
    seed_states = MailboxStateStore(storage.table(MAILBOXES_TABLE))
    # The last mailbox was never confirmed; one row is spelled in capitals (the policy's spelling finds it).
    states = [
        MailboxState(mailbox=mb.upper() if n == 7 else mb, last_confirmed=NOW - timedelta(minutes=n % 60))
        for n, mb in enumerate(names[:-1])
    ]
    for start in range(0, len(states), 50):
        await asyncio.gather(*(seed_states.save(s) for s in states[start : start + 50]))
    subs = SubscriptionStore(storage.table(SUBSCRIPTIONS_TABLE))
    await subs.save(SubscriptionRow("sub-7", names[7], "cs", NOW + timedelta(days=2)))
    mailbox_table, requests = counted(MAILBOXES_TABLE)

    report = await ops.status(storage, subs, MailboxStateStore(mailbox_table), policy, NOW)

    sent = requests.take()
    assert len(sent) == 2, "1,500 rows: two pages of one partition query, not one read per mailbox"
    assert all(m == "GET" and "PartitionKey eq 'mailbox'" in url for m, url in sent)
    assert "$select=" in sent[0][1] and "DeltaLink" not in sent[0][1]
    by_mailbox = {m.mailbox: m for m in report.mailboxes}
    assert len(by_mailbox) == MANY
    assert by_mailbox[names[59]].age == timedelta(minutes=59)
    assert by_mailbox[names[7]].age == timedelta(minutes=7)
    assert by_mailbox[names[7]].subscription_id == "sub-7"
    assert by_mailbox[names[-1]].last_confirmed is None and report.stalest is by_mailbox[names[-1]]
    assert f"{names[-1]}: never confirmed in sync" in ops.problems(report)
    await delete_range(storage.table(MAILBOXES_TABLE), "PartitionKey eq 'mailbox'", {}, max_rows=MANY)


# -- 3. the replay-record purge: in the sweep, not in the request ----------------------------------------

SECRET = "ops-secret"


def body_of(n: int) -> bytes:
    event = {
        "id": f"evt-{n}",
        "type": "appointment.updated",
        "appointment_id": f"apt-{n}",
        "version": "v1",
        "occurred_at": NOW.isoformat(),
    }
    return json.dumps({"events": [event]}).encode()


async def seed_seen(table: TableClient, signed_at: int, count: int) -> None:
    pk = partition(signed_at)
    for start in range(0, count, 100):
        ops_ = [
            (
                "create",
                {"PartitionKey": pk, "RowKey": fingerprint(signed_at, b"%d" % n), "SignedAt": signed_at},
            )
            for n in range(start, min(count, start + 100))
        ]
        await table.submit_transaction(ops_)


async def seen_partitions(table: TableClient) -> dict[str, int]:
    out: dict[str, int] = {}
    async for e in table.list_entities(select=["PartitionKey"]):
        if e["PartitionKey"].startswith("crm-webhook-seen-"):
            out[e["PartitionKey"]] = out.get(e["PartitionKey"], 0) + 1
    return out


async def test_a_webhook_request_writes_one_row_and_deletes_nothing_even_with_expired_records(
    storage: Storage, counted: Any
) -> None:
    old = int((NOW - timedelta(hours=3)).timestamp())
    await seed_seen(storage.table(SUBSCRIPTIONS_TABLE), old, 30)
    table, requests = counted(SUBSCRIPTIONS_TABLE)
    sent: list[str] = []

    async def enqueue(text: str) -> None:
        sent.append(text)

    async def deliver(body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        reply = await handle_crm_webhook(
            headers, body, secrets=[SECRET], enqueue=enqueue, replays=ReplayGuard(table), now=NOW
        )
        return reply.status, json.loads(reply.body).get("error", "")

    headers = sign(body_of(1), SECRET, int(NOW.timestamp()))
    assert await deliver(body_of(1), headers) == (202, "")
    assert [m for m, _ in requests.take()] == ["POST"], "one insert; no purge while the CRM waits"
    assert await deliver(body_of(1), headers) == (401, REPLAY_REASON)
    assert (await seen_partitions(table))[partition(old)] == 30
    assert len(sent) == 1


@pytest.fixture
def crm() -> Iterator[CrmEmulator]:
    with CrmEmulator() as emulator:
        yield emulator


@pytest.fixture
async def container(
    app_settings: dict[str, str], crm: CrmEmulator, storage: Storage
) -> AsyncIterator[Container]:
    settings = load_settings(app_settings | {"CRM_BASE_URL": crm.base_url, "CRM_API_TOKEN": crm.token})
    c = Container(settings, policy_from(settings), clock=ManualClock(NOW))
    try:
        yield c
    finally:
        await c.aclose()


async def test_the_hourly_sweep_purges_expired_replay_records_in_batches_and_replays_stay_refused(
    container: Container, storage: Storage
) -> None:
    now_s = int(NOW.timestamp())
    table = storage.table(SUBSCRIPTIONS_TABLE)
    await seed_seen(table, now_s - 3 * 3600, 250)
    await seed_seen(table, now_s - 2 * 3600, 10)
    guard = ReplayGuard(table)
    body = body_of(2)
    assert await guard.first_time(now_s - 60, body, NOW)  # accepted a minute ago: inside the window
    log = DecisionLog(storage.table(DECISIONS_TABLE))
    await record(log, "crm-old", NOW - INDEX_RETENTION - timedelta(hours=3))
    await log.flush()

    report = await run_sweep(container)

    assert report.purged == 250 + 10 + 1 and not report.overlapped
    assert await seen_partitions(table) == {partition(now_s - 60): 1}
    assert not await guard.first_time(now_s - 60, body, NOW), "a replay inside the window is still refused"
    assert await log.for_item("crm", "crm-old"), "the item rows are kept"
    resyncs = [decode(m.content) for m in await storage.queue(CHANGES_QUEUE).peek_messages(max_messages=32)]
    assert report.mailboxes == 2 and all(isinstance(m, MailboxResync) for m in resyncs)
    assert (await run_sweep(container)).purged == 0


async def test_the_purge_is_bounded_per_run_and_the_next_run_catches_up(storage: Storage) -> None:
    now_s = int(NOW.timestamp())
    table = storage.table(SUBSCRIPTIONS_TABLE)
    await seed_seen(table, now_s - 5 * 3600, 150)
    await seed_seen(table, now_s - 4 * 3600, 100)
    guard = ReplayGuard(table)

    assert await guard.purge(NOW, max_rows=180) == 180
    assert sum((await seen_partitions(table)).values()) == 70
    assert await guard.purge(NOW, max_rows=180) == 70
    assert await seen_partitions(table) == {}
