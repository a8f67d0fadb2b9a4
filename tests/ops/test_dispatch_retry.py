"""Transient failures are retried with an increasing, jittered delay and reach poison with their last reason.

Against the ops package's own Azurite: the retry is a real re-enqueue with a visibility delay, the round is
counted in the real failures ledger, and a replay starts a new round.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sync_core.adapters.storage.core import CHANGES_QUEUE, FAILURES_TABLE, POISON_QUEUE, Storage
from sync_core.adapters.storage.failures import FailureLedger
from sync_core.domain.messages import AnyMessage, GraphChange, encode
from sync_core.errors import ThrottledError, TransientError
from sync_core.ops import operations as ops
from sync_core.service import retry as dispatch
from tests.ops.conftest import MAILBOX_A

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def body_for(event_id: str) -> str:
    return encode(
        GraphChange(
            correlation_id=f"c-{event_id}",
            received_at=NOW,
            mailbox=MAILBOX_A,
            event_id=event_id,
            change_type="updated",
        )
    )


@pytest.fixture
def failures(storage: Storage) -> FailureLedger:
    return FailureLedger(storage.table(FAILURES_TABLE))


async def run(storage: Storage, failures: FailureLedger, body: str, error: BaseException) -> str:
    async def handler(message: AnyMessage) -> object:
        raise error

    return await dispatch.process(
        body,
        message_id="m-1",
        dequeue_count=1,
        handler=handler,
        storage=storage,
        failures=failures,
        now=lambda: NOW,
    )


async def queued(storage: Storage, queue: str) -> int:
    """Messages in `queue`, invisible ones included (a retry waits invisible for its backoff)."""
    properties = await storage.queue(queue).get_queue_properties()
    return int(properties.approximate_message_count or 0)


def test_transient_attempts_agree_with_host_json_max_dequeue_count() -> None:
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    assert host["extensions"]["queues"]["maxDequeueCount"] == dispatch.TRANSIENT_ATTEMPTS


def test_backoff_doubles_up_to_its_cap_with_jitter_between_half_and_full() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(dispatch.BACKOFF_CAP_SECONDS, dispatch.BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
        draws = {dispatch.backoff_seconds(attempt, rng) for _ in range(200)}
        assert min(draws) >= max(1, ceiling // 2) and max(draws) <= ceiling + 1, (attempt, draws)
        assert len(draws) > 1 or ceiling <= 2, "jittered, so retries of many messages spread out"


async def test_a_transient_failure_is_requeued_invisible_and_its_round_counted(
    storage: Storage, failures: FailureLedger
) -> None:
    body = body_for("ev-flaky")
    assert await run(storage, failures, body, TransientError("CRM answered 503")) == "retrying"

    assert await queued(storage, CHANGES_QUEUE) == 1, "the copy waits in sync-changes"
    assert await storage.queue(CHANGES_QUEUE).peek_messages() == [], "invisible for its backoff"
    row = await failures.for_body(body)
    assert row is not None and row["RetryAttempts"] == 1 and row["ErrorClass"] == "TransientError"


async def test_the_last_allowed_failure_sends_the_message_to_poison_with_its_last_reason(
    storage: Storage, failures: FailureLedger
) -> None:
    body = body_for("ev-down")
    outcomes = [
        await run(storage, failures, body, TransientError(f"CRM down, try {n}"))
        for n in range(1, dispatch.TRANSIENT_ATTEMPTS + 1)
    ]

    assert outcomes == ["retrying"] * (dispatch.TRANSIENT_ATTEMPTS - 1) + ["poisoned"]
    [item] = await ops.list_poison(storage, failures, now=NOW)
    assert item.body == body and item.reason == f"CRM down, try {dispatch.TRANSIENT_ATTEMPTS}"


async def test_a_bug_is_retried_like_a_transient_failure_and_named_in_the_ledger(
    storage: Storage, failures: FailureLedger
) -> None:
    body = body_for("ev-bug")
    assert await run(storage, failures, body, KeyError("organizer")) == "retrying"
    row = await failures.for_body(body)
    assert row is not None and "unexpected KeyError" in row["Error"]


async def test_a_replayed_message_starts_a_new_round_of_retries(
    storage: Storage, failures: FailureLedger
) -> None:
    body = body_for("ev-replayed")
    for n in range(dispatch.TRANSIENT_ATTEMPTS):
        await run(storage, failures, body, TransientError(f"down {n}"))
    await storage.queue(CHANGES_QUEUE).clear_messages()  # the retry copies; the poison copy stays

    report = await ops.replay(storage, failures, now=NOW)
    assert len(report.moved) == 1

    assert await run(storage, failures, body, TransientError("still flaky")) == "retrying"
    row = await failures.for_body(body)
    assert row is not None and row["RetryAttempts"] == 1
    assert row["Attempts"] == dispatch.TRANSIENT_ATTEMPTS + 1, "the history is kept"
    assert await queued(storage, POISON_QUEUE) == 0


async def test_a_message_throttled_again_and_again_reaches_poison_with_its_reason_instead_of_looping(
    storage: Storage, failures: FailureLedger
) -> None:
    body = body_for("ev-throttled")
    outcomes = [
        await run(storage, failures, body, ThrottledError(f"Graph 429 #{n}", retry_after=1, side="graph"))
        for n in range(1, dispatch.MAX_THROTTLE_ROUNDS + 1)
    ]

    assert outcomes == ["requeued"] * (dispatch.MAX_THROTTLE_ROUNDS - 1) + ["poisoned"]
    [item] = await ops.list_poison(storage, failures, now=NOW)
    assert (
        item.reason == f"Graph 429 #{dispatch.MAX_THROTTLE_ROUNDS}" and item.error_class == "ThrottledError"
    )
    row = await failures.for_body(body)
    assert row is not None and row["RetryAttempts"] == 0, "throttling does not spend the transient retries"


async def test_throttling_and_transient_failures_keep_separate_rounds(
    storage: Storage, failures: FailureLedger
) -> None:
    body = body_for("ev-both")
    assert await run(storage, failures, body, ThrottledError("429", retry_after=1)) == "requeued"
    assert await run(storage, failures, body, TransientError("503")) == "retrying"
    assert await run(storage, failures, body, ThrottledError("429", retry_after=1)) == "requeued"
    row = await failures.for_body(body)
    assert row is not None and (row["ThrottleRounds"], row["RetryAttempts"], row["Attempts"]) == (2, 1, 3)
