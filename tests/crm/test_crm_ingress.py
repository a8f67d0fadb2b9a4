"""The CRM front door: 202 with one message per event; 401/400/413 with a reason and nothing queued;
a replay of an accepted request refused inside the window (seen requests recorded in Azurite)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables.aio import TableClient

from sync_core.adapters.storage.replays import ReplayGuard, fingerprint, partition
from sync_core.domain.messages import CrmChange, decode
from sync_core.errors import TransientError
from sync_core.ingress.crm import REPLAY_REASON, handle_crm_webhook
from sync_core.ports.crm_webhook import MAX_BODY_BYTES, SIGNATURE_HEADER, sign
from tests.front_door import Queue

SECRET = "current-secret-0123456789abcdef0123"
NEXT_SECRET = "next-secret-fedcba9876543210fedcba98"
NOW = datetime(2026, 5, 28, 20, 30, tzinfo=UTC)


def event(n: int = 1, **changes: Any) -> dict[str, Any]:
    return {
        "id": f"evt-{n}",
        "type": "appointment.updated",
        "appointment_id": f"apt-{n}",
        "version": f"v{n}",
        "occurred_at": "2026-05-28T20:26:40Z",
    } | changes


def body_of(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}).encode()


async def rows(table: TableClient) -> list[dict[str, Any]]:
    return [dict(e) async for e in table.list_entities()]


async def deliver(
    body: bytes,
    headers: dict[str, str],
    queue: Queue,
    table: TableClient,
    now: datetime = NOW,
    secrets: tuple[str, ...] = (SECRET,),
) -> tuple[int, str]:
    reply = await handle_crm_webhook(
        headers, body, secrets=secrets, enqueue=queue.enqueue, replays=ReplayGuard(table), now=now
    )
    return reply.status, json.loads(reply.body).get("error", "")


def signed(body: bytes, at: datetime = NOW, secret: str | list[str] = SECRET) -> dict[str, str]:
    return sign(body, secret, int(at.timestamp()))


async def test_a_valid_webhook_is_202_with_one_message_per_event(seen: TableClient) -> None:
    queue = Queue()
    body = body_of(event(1), event(2, type="appointment.cancelled"), event(3, type="appointment.deleted"))
    assert await deliver(body, signed(body), queue, seen) == (202, "")
    messages = [decode(m) for m in queue.sent]
    assert all(isinstance(m, CrmChange) for m in messages)
    got = sorted((m.crm_id, m.change_type, m.version) for m in messages if isinstance(m, CrmChange))
    assert got == [("apt-1", "updated", "v1"), ("apt-2", "cancelled", "v2"), ("apt-3", "deleted", "v3")]
    assert len(await rows(seen)) == 1


async def test_rotation_either_active_secret_is_accepted(seen: TableClient) -> None:
    queue = Queue()
    for n, secret in enumerate((SECRET, NEXT_SECRET)):
        body = body_of(event(n))
        status = await deliver(body, signed(body, secret=secret), queue, seen, secrets=(SECRET, NEXT_SECRET))
        assert status == (202, "")
    assert len(queue.sent) == 2


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("bad signature", 401, "bad signature"),
        ("another secret", 401, "bad signature"),
        ("stale", 401, "stale timestamp"),
        ("future", 401, "future timestamp"),
        ("unsigned", 401, "missing X-Crm-Signature"),
        ("malformed header", 400, "malformed X-Crm-Signature"),
        ("malformed body", 400, "malformed JSON"),
        ("invalid event", 400, "invalid payload: events.0.type"),
        ("too large", 413, "body larger than"),
    ],
)
async def test_a_refused_webhook_has_a_reason_and_enqueues_and_records_nothing(
    seen: TableClient, case: str, status: int, reason: str
) -> None:
    body = body_of(event())
    headers = signed(body)
    if case == "bad signature":
        headers[SIGNATURE_HEADER] = "v1=" + "0" * 64
    elif case == "another secret":
        headers = signed(body, secret="not-our-secret")
    elif case == "stale":
        headers = signed(body, at=NOW - timedelta(seconds=301))
    elif case == "future":
        headers = signed(body, at=NOW + timedelta(seconds=301))
    elif case == "unsigned":
        headers = {}
    elif case == "malformed header":
        headers[SIGNATURE_HEADER] = "v1=zz"
    elif case == "malformed body":
        body = b'{"events": ['
        headers = signed(body)
    elif case == "invalid event":
        body = body_of(event(type="contact.updated"))
        headers = signed(body)
    elif case == "too large":
        body = b" " * (MAX_BODY_BYTES + 1)
        headers = signed(body)
    queue = Queue()
    got_status, got_reason = await deliver(body, headers, queue, seen)
    assert got_status == status and got_reason.startswith(reason), got_reason
    assert queue.sent == []
    assert await rows(seen) == []


async def test_a_replayed_signed_webhook_is_refused_inside_the_window_and_enqueues_nothing(
    seen: TableClient,
) -> None:
    queue = Queue()
    body = body_of(event())
    headers = signed(body)
    assert await deliver(body, headers, queue, seen) == (202, "")
    later = NOW + timedelta(seconds=120)  # inside the window: only the replay record stops it
    assert await deliver(body, headers, queue, seen, now=later) == (401, REPLAY_REASON)
    # Padding the signature header (reordered, extra schemes) does not make a replay new.
    padded = headers | {SIGNATURE_HEADER: "v9=x," + headers[SIGNATURE_HEADER] + ",v1=" + "a" * 64}
    assert await deliver(body, padded, queue, seen, now=later) == (401, REPLAY_REASON)
    assert len(queue.sent) == 1


async def test_a_replay_after_the_window_is_refused_as_stale(seen: TableClient) -> None:
    queue = Queue()
    body = body_of(event())
    headers = signed(body)
    assert (await deliver(body, headers, queue, seen))[0] == 202
    status, reason = await deliver(body, headers, queue, seen, now=NOW + timedelta(minutes=6))
    assert status == 401 and reason.startswith("stale timestamp")
    assert len(queue.sent) == 1


async def test_a_retry_signed_again_with_a_new_timestamp_is_accepted(seen: TableClient) -> None:
    """The contract's retries carry a fresh timestamp: not a replay (the worker is idempotent)."""
    queue = Queue()
    body = body_of(event())
    assert (await deliver(body, signed(body), queue, seen))[0] == 202
    retry_at = NOW + timedelta(seconds=2)
    assert (await deliver(body, signed(body, at=retry_at), queue, seen, now=retry_at))[0] == 202
    assert len(queue.sent) == 2


async def test_a_webhook_that_could_not_be_queued_is_not_a_replay_when_sent_again(
    seen: TableClient,
) -> None:
    queue = Queue()
    body = body_of(event())
    headers = signed(body)
    queue.fail = True
    with pytest.raises(TransientError):
        await deliver(body, headers, queue, seen)
    assert await rows(seen) == []
    queue.fail = False
    assert await deliver(body, headers, queue, seen) == (202, "")
    assert len(queue.sent) == 1


async def test_two_instances_receiving_the_same_request_at_once_accept_it_once(
    seen: TableClient, storage_connection_string: str
) -> None:
    body = body_of(event())
    headers = signed(body)
    queue = Queue()
    async with TableClient.from_connection_string(storage_connection_string, seen.table_name) as other:
        results = await asyncio.gather(
            deliver(body, headers, queue, seen), deliver(body, headers, queue, other)
        )
    assert sorted(status for status, _ in results) == [202, 401]
    assert len(queue.sent) == 1


async def test_purge_removes_hours_wholly_before_the_window_and_keeps_the_rest(
    seen: TableClient,
) -> None:
    guard = ReplayGuard(seen)
    now_s = int(NOW.timestamp())
    signed_at = [now_s - 3 * 3600, now_s - 2 * 3600, now_s - 300, now_s]
    for ts in signed_at:
        await seen.create_entity(
            {"PartitionKey": partition(ts), "RowKey": fingerprint(ts, b"{}"), "SignedAt": ts}
        )
    await seen.create_entity({"PartitionKey": "other-data", "RowKey": "keep"})
    assert await guard.purge(NOW) == 2
    left = {(r["PartitionKey"], r["RowKey"]) for r in await rows(seen)}
    assert left == {
        ("other-data", "keep"),
        *((partition(ts), fingerprint(ts, b"{}")) for ts in signed_at[2:]),
    }
