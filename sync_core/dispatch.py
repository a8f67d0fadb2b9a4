"""What happens to a queue message when processing fails: the one map from error class to retry policy.

UnprocessableError / PermanentError -> recorded, sent to `sync-changes-poison` now (no wasted retries)
ThrottledError                      -> re-enqueued, invisible for Retry-After; this copy completes
TransientError                      -> recorded, raised: the host retries, then poisons after maxDequeueCount

Every log record while a message is handled carries its correlation id (`telemetry.correlation`), and the
outcome feeds the metrics: actions by rule, end-to-end latency of writes, failures by error class.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import datetime

from sync_core import telemetry
from sync_core.errors import PermanentError, SyncError, ThrottledError, TransientError
from sync_core.failures import FailureLedger
from sync_core.messages import AnyMessage, decode
from sync_core.storage import POISON_QUEUE, Storage
from sync_core.worker import Outcome

log = logging.getLogger("sync_core.dispatch")

MAX_THROTTLE_DELAY_SECONDS = 15 * 60

Handler = Callable[[AnyMessage], Awaitable[object]]
SIDES = {"graph_change": "m365", "crm_change": "crm"}


def _correlation_of(body: str) -> str:
    """The message's correlation id even when it does not decode as a sync message (for the logs)."""
    try:
        value = json.loads(body).get("correlation_id")
    except (ValueError, AttributeError):
        return telemetry.NO_CORRELATION
    return value if isinstance(value, str) and value else telemetry.NO_CORRELATION


def observe(message: AnyMessage, result: object, now: datetime) -> None:
    """Metrics of one handled message: each action by rule and kind; the latency when it wrote something."""
    if not isinstance(result, Outcome):
        return
    for action in result.decision.actions:
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
) -> str:
    """Run one queue message through `handler`; returns how it ended (for logs and tests)."""
    with telemetry.correlation(_correlation_of(body)):
        return await _process(body, message_id, dequeue_count, handler, storage, failures, now)


async def _process(
    body: str,
    message_id: str,
    dequeue_count: int,
    handler: Handler,
    storage: Storage,
    failures: FailureLedger,
    now: Callable[[], datetime],
) -> str:
    step = "decode"

    async def record(error: SyncError, *, permanent: bool) -> None:
        await failures.record(
            body=body,
            message_id=message_id,
            dequeue_count=dequeue_count,
            error=error,
            step=step,
            permanent=permanent,
            at=now(),
        )
        telemetry.failure(error.error_class, step=step, permanent=permanent)

    try:
        message = decode(body)
        step = message.type
        log.info("handling %s (attempt %d, message %s)", step, dequeue_count, message_id)
        result = await handler(message)
        observe(message, result, now())
        return "done"
    except ThrottledError as exc:
        delay = min(max(math.ceil(exc.retry_after), 1), MAX_THROTTLE_DELAY_SECONDS)
        await storage.enqueue(body, visibility_timeout=delay)
        telemetry.failure(exc.error_class, step=step, permanent=False)  # counted, not in the ledger
        log.warning("throttled (%s); message %s requeued for %d s", exc, message_id, delay)
        return "requeued"
    except PermanentError as exc:
        await record(exc, permanent=True)
        await storage.enqueue(body, queue=POISON_QUEUE)
        log.error("permanent failure, message %s sent to %s: %s", message_id, POISON_QUEUE, exc)
        return "poisoned"
    except SyncError as exc:
        await record(exc, permanent=False)
        log.warning("transient failure of message %s (attempt %d): %s", message_id, dequeue_count, exc)
        raise
    except Exception as exc:
        # A bug, not a side's answer: record it as transient so the host retries and then poisons it.
        await record(TransientError(f"unexpected {type(exc).__name__}: {exc}"), permanent=False)
        raise
