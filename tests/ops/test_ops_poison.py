"""The poison queue against Azurite: listed with reasons, filtered, replayed send-first, never lost."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from sync_core.adapters.storage.core import CHANGES_QUEUE, FAILURES_TABLE, POISON_QUEUE, Storage
from sync_core.adapters.storage.failures import FailureLedger
from sync_core.domain.messages import CrmChange, GraphChange, encode
from sync_core.errors import NotFoundError, TransientError, UnprocessableError
from sync_core.ops import operations as ops
from tests.ops.conftest import MAILBOX_A, MAILBOX_B


def now() -> datetime:
    """The system clock: Azurite stamps each message's insertion with it, and ages are measured on it."""
    return datetime.now(UTC)


def graph_body(mailbox: str, event_id: str) -> str:
    return encode(
        GraphChange(
            correlation_id=f"c-{event_id}",
            received_at=now(),
            mailbox=mailbox,
            event_id=event_id,
            change_type="updated",
        )
    )


def crm_body(crm_id: str) -> str:
    return encode(
        CrmChange(correlation_id=f"c-{crm_id}", received_at=now(), crm_id=crm_id, change_type="updated")
    )


async def poison(storage: Storage, body: str) -> None:
    await storage.enqueue(body, queue=POISON_QUEUE)


async def bodies(storage: Storage, queue: str) -> list[str]:
    return [str(m.content) for m in await storage.queue(queue).peek_messages(max_messages=32)]


@pytest.fixture
def failures(storage: Storage) -> FailureLedger:
    return FailureLedger(storage.table(FAILURES_TABLE))


async def test_a_poison_message_is_listed_with_the_reason_its_ledger_row_recorded(
    storage: Storage, failures: FailureLedger
) -> None:
    body, at = graph_body(MAILBOX_A, "AAMk/gone=="), now()
    error = NotFoundError("the event is gone", side="graph", mailbox=MAILBOX_A, item_id="AAMk/gone==")
    await failures.record(
        body=body, message_id="m1", dequeue_count=1, error=error, step="graph_change", permanent=True, at=at
    )
    await poison(storage, body)

    [item] = await ops.list_poison(storage, failures, now=now())

    assert (item.reason, item.error_class, item.step, item.permanent) == (
        "the event is gone",
        "NotFoundError",
        "graph_change",
        True,
    )
    assert (item.mailbox, item.item_id, item.kind, item.dequeue_count, item.attempts) == (
        MAILBOX_A,
        "AAMk/gone==",
        "graph_change",
        1,
        1,
    )
    assert item.first_failed_at == item.last_failed_at == at.isoformat()
    assert await bodies(storage, POISON_QUEUE) == [body], "listing leaves the message visible in poison"


async def test_a_message_the_host_moved_without_a_ledger_row_says_so(
    storage: Storage, failures: FailureLedger
) -> None:
    await poison(storage, crm_body("crm-1"))
    await poison(storage, "not json at all")

    items = await ops.list_poison(storage, failures, now=now())

    assert {i.reason for i in items} == {ops.NO_REASON}
    assert {(i.kind, i.item_id, i.error_class) for i in items} == {
        ("crm_change", "crm-1", ops.UNRECORDED),
        ("unreadable", "", ops.UNRECORDED),
    }


async def test_filters_choose_by_mailbox_error_class_age_and_message_id(
    storage: Storage, failures: FailureLedger
) -> None:
    a, b, at = graph_body(MAILBOX_A, "ev-a"), graph_body(MAILBOX_B, "ev-b"), now()
    await failures.record(
        body=a,
        message_id="x",
        dequeue_count=5,
        error=TransientError("Graph 503"),
        step="graph_change",
        permanent=False,
        at=at,
    )
    for body in (a, b, crm_body("crm-2")):
        await poison(storage, body)
    everything = await ops.list_poison(storage, failures, now=now())
    later = now() + timedelta(hours=3)

    assert [
        i.item_id
        for i in await ops.list_poison(
            storage, failures, ops.PoisonFilter(mailbox=MAILBOX_B.upper()), now=now()
        )
    ] == ["ev-b"]
    assert [
        i.item_id
        for i in await ops.list_poison(
            storage, failures, ops.PoisonFilter(error_class="transienterror"), now=now()
        )
    ] == ["ev-a"]
    assert (
        len(await ops.list_poison(storage, failures, ops.PoisonFilter(error_class=ops.UNRECORDED), now=now()))
        == 2
    )
    assert (
        await ops.list_poison(storage, failures, ops.PoisonFilter(older_than=timedelta(hours=2)), now=now())
        == []
    )
    assert (
        len(
            await ops.list_poison(
                storage, failures, ops.PoisonFilter(older_than=timedelta(hours=2)), now=later
            )
        )
        == 3
    )
    one = everything[1].message_id
    assert [
        i.message_id
        for i in await ops.list_poison(storage, failures, ops.PoisonFilter(message_id=one), now=now())
    ] == [one]
    assert len(await ops.list_poison(storage, failures, now=now(), limit=2)) == 2
    assert len(await bodies(storage, POISON_QUEUE)) == 3, "filtered-out messages are visible again"


async def test_a_dry_run_lists_what_would_move_and_moves_nothing(
    storage: Storage, failures: FailureLedger
) -> None:
    body = graph_body(MAILBOX_A, "ev-dry")
    await poison(storage, body)

    report = await ops.replay(storage, failures, now=now(), dry_run=True)

    assert [i.body for i in report.chosen] == [body] and report.moved == [] and report.ok
    assert await bodies(storage, POISON_QUEUE) == [body], "visible again at once, not after the hold"
    assert await bodies(storage, CHANGES_QUEUE) == []


async def test_replay_moves_the_chosen_messages_to_sync_changes_and_out_of_poison(
    storage: Storage, failures: FailureLedger
) -> None:
    a, b = graph_body(MAILBOX_A, "ev-1"), graph_body(MAILBOX_B, "ev-2")
    await poison(storage, a)
    await poison(storage, b)
    progress: list[tuple[int, int]] = []

    report = await ops.replay(
        storage,
        failures,
        ops.PoisonFilter(mailbox=MAILBOX_A),
        now=now(),
        on_progress=lambda d, t: progress.append((d, t)),
    )

    assert len(report.moved) == 1 and report.ok and progress == [(1, 1)]
    assert await bodies(storage, CHANGES_QUEUE) == [a]
    assert await bodies(storage, POISON_QUEUE) == [b], "the unchosen one stays, visible"


async def test_more_than_32_poison_messages_are_all_listed_and_a_limit_is_honoured(
    storage: Storage, failures: FailureLedger
) -> None:
    for n in range(40):
        await poison(storage, crm_body(f"crm-{n}"))

    assert len(await ops.list_poison(storage, failures, now=now())) == 40  # peek alone would stop at 32
    assert len(await ops.list_poison(storage, failures, now=now(), peek=True)) == 32
    report = await ops.replay(storage, failures, now=now(), limit=35)

    assert len(report.moved) == 35
    assert await storage.queue_depth(CHANGES_QUEUE) == 35
    assert len(await ops.list_poison(storage, failures, now=now())) == 5


class Crash(BaseException):
    """The process dies: nothing below it catches this."""


async def test_a_crash_between_send_and_delete_leaves_the_message_in_both_queues_never_in_neither(
    storage: Storage, failures: FailureLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = graph_body(MAILBOX_A, "ev-crash")
    await poison(storage, body)

    async def crash(*args: object, **kwargs: object) -> None:
        raise Crash

    monkeypatch.setattr(storage.queue(POISON_QUEUE), "delete_message", crash)
    with pytest.raises(Crash):
        await ops.replay(storage, failures, now=now(), hold_seconds=1)

    assert await bodies(storage, CHANGES_QUEUE) == [body], "sent first"
    await asyncio.sleep(1.5)  # the hold lapses, as it would after a real crash
    assert await bodies(storage, POISON_QUEUE) == [body], "and still in poison: a harmless duplicate"


def test_durations_read_like_the_cli_options() -> None:
    assert ops.parse_duration("2h") == timedelta(hours=2)
    assert ops.parse_duration("1h30m") == timedelta(minutes=90)
    assert ops.parse_duration("7d") == timedelta(days=7)
    for bad in ("", "2", "h", "2x", "-1h", "2h junk"):
        with pytest.raises(UnprocessableError):
            ops.parse_duration(bad)
