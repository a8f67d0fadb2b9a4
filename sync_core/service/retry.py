"""What happens to a queue message when processing fails: the one map from error class to retry policy. I/O
side.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from sync_core.adapters import telemetry
from sync_core.adapters.graph import limits as graph_limits
from sync_core.adapters.storage.core import CHANGES_QUEUE, POISON_QUEUE, Storage
from sync_core.adapters.storage.failures import FailureLedger
from sync_core.domain.actions import Action
from sync_core.domain.messages import AnyMessage, decode
from sync_core.errors import PermanentError, SyncError, ThrottledError, TransientError
from sync_core.service import fairness

log = logging.getLogger("sync_core.dispatch")

MAX_THROTTLE_DELAY_SECONDS = 15 * 60
MAX_THROTTLE_ROUNDS = 50  # throttled this many times since its last replay: poison, with the reason
TRANSIENT_ATTEMPTS = 5  # as host.json maxDequeueCount (tests/ops/test_dispatch_retry.py checks they agree)
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 120.0
INVOCATION_SECONDS = graph_limits.FUNCTION_TIMEOUT_SECONDS - graph_limits.DEADLINE_MARGIN_SECONDS


def backoff_ceiling(attempt: int) -> float:
    """The longest delay before retry `attempt` (1-based): base * 2^(attempt-1), capped."""
    return min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (attempt - 1))


def backoff_seconds(attempt: int, rng: random.Random | None = None) -> int:
    """Delay before retry `attempt` (1-based): its ceiling, with jitter in [half, full]."""
    ceiling = backoff_ceiling(attempt)
    draw = rng.random() if rng is not None else random.random()
    return max(1, math.ceil(ceiling * (0.5 + 0.5 * draw)))


Handler = Callable[[AnyMessage], Awaitable[object]]
SIDES = {"graph_change": "m365", "crm_change": "crm"}


def _correlation_of(body: str) -> str:
    """The message's correlation id even when it does not decode as a sync message (for the logs)."""
    try:
        value = json.loads(body).get("correlation_id")
    except (ValueError, AttributeError):
        return telemetry.NO_CORRELATION
    return value if isinstance(value, str) and value else telemetry.NO_CORRELATION


@runtime_checkable
class Handled(Protocol):
    """What a handler returns when it decided something (`service.worker.Outcome`)."""

    @property
    def actions(self) -> Sequence[Action]: ...

    @property
    def writes(self) -> Sequence[str]: ...


def observe(message: AnyMessage, result: object, now: datetime) -> None:
    """Metrics of one handled message: each action by rule and kind; the latency when it wrote something."""
    if not isinstance(result, Handled):
        return
    for action in result.actions:
        telemetry.action_decided(action.rule, action.kind)
    side = SIDES.get(message.type)
    if result.writes and side is not None:
        telemetry.synced(side, message.received_at, now)


async def process(
    body: str,
    *,
    message_id: str,
    dequeue_count: int,
    handler: Handler,
    storage: Storage,
    failures: FailureLedger,
    now: Callable[[], datetime],
    queue: str = CHANGES_QUEUE,
) -> str:
    """Run one queue message through `handler`; returns how it ended (for logs and tests). A retry goes back
    to `queue`, the queue the message came from. A change already covered by a handling of the same item that
    began after it arrived is acknowledged without handling (`fairness.Coalescer`): "coalesced"."""
    with telemetry.correlation(_correlation_of(body)):
        if queue != CHANGES_QUEUE:
            return await _process(body, message_id, dequeue_count, handler, storage, failures, now, queue)
        async with fairness.live_work():
            return await _process(body, message_id, dequeue_count, handler, storage, failures, now, queue)


async def _process(
    body: str,
    message_id: str,
    dequeue_count: int,
    handler: Handler,
    storage: Storage,
    failures: FailureLedger,
    now: Callable[[], datetime],
    queue: str,
) -> str:
    step = "decode"

    async def record(error: SyncError, *, permanent: bool, throttled: bool = False) -> int:
        attempt = await failures.record(
            body=body,
            message_id=message_id,
            dequeue_count=dequeue_count,
            error=error,
            step=step,
            permanent=permanent,
            at=now(),
            throttled=throttled,
        )
        telemetry.failure(error.error_class, step=step, permanent=permanent)
        return attempt

    async def retry_later(error: SyncError) -> str:
        attempt = await record(error, permanent=False)
        if attempt >= TRANSIENT_ATTEMPTS:
            await storage.enqueue(body, queue=POISON_QUEUE)
            log.error("message %s failed %d times, sent to %s: %s", message_id, attempt, POISON_QUEUE, error)
            return "poisoned"
        delay = backoff_seconds(attempt)
        await storage.enqueue(body, queue=queue, visibility_timeout=delay)
        log.warning(
            "transient failure of message %s (attempt %d), retry in %d s: %s",
            message_id,
            attempt,
            delay,
            error,
        )
        return "retrying"

    try:
        message = decode(body)
        step = message.type
        log.info("handling %s (attempt %d, message %s)", step, dequeue_count, message_id)
        with graph_limits.time_limit(INVOCATION_SECONDS):
            result = await fairness.coalescer().run(message, handler)
        if result is fairness.COALESCED:
            log.debug("message %s coalesced with a later handling of the same item", message_id)
            return "coalesced"
        observe(message, result, now())
        return "done"
    except ThrottledError as exc:
        rounds = await record(exc, permanent=False, throttled=True)
        if rounds >= MAX_THROTTLE_ROUNDS:
            await storage.enqueue(body, queue=POISON_QUEUE)
            log.error(
                "message %s throttled %d times, sent to %s: %s",
                message_id,
                rounds,
                POISON_QUEUE,
                exc,
            )
            return "poisoned"
        delay = min(max(math.ceil(exc.retry_after), 1), MAX_THROTTLE_DELAY_SECONDS)
        await storage.enqueue(body, queue=queue, visibility_timeout=delay)
        log.warning("throttled (%s); message %s requeued for %d s", exc, message_id, delay)
        return "requeued"
    except PermanentError as exc:
        await record(exc, permanent=True)
        await storage.enqueue(body, queue=POISON_QUEUE)
        log.error("permanent failure, message %s sent to %s: %s", message_id, POISON_QUEUE, exc)
        return "poisoned"
    except SyncError as exc:
        return await retry_later(exc)
    except Exception as exc:
        # A bug, not a side's answer: retried like a transient failure, so it reaches poison with its reason.
        log.exception("unexpected error handling message %s", message_id)
        return await retry_later(TransientError(f"unexpected {type(exc).__name__}: {exc}"))
