"""What happens to a queue message when processing fails: the one map from error class to retry policy.

UnprocessableError / PermanentError -> recorded, sent to `sync-changes-poison` now (no wasted retries)
ThrottledError                      -> re-enqueued, invisible for Retry-After; this copy completes
TransientError                      -> recorded, raised: the host retries, then poisons after maxDequeueCount
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from datetime import datetime

from sync_core.errors import PermanentError, SyncError, ThrottledError, TransientError
from sync_core.failures import FailureLedger
from sync_core.messages import CrmChange, GraphChange, MailboxResync, decode
from sync_core.storage import POISON_QUEUE, Storage

log = logging.getLogger("sync_core.dispatch")

MAX_THROTTLE_DELAY_SECONDS = 15 * 60

Handler = Callable[[GraphChange | CrmChange | MailboxResync], Awaitable[object]]


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

    try:
        message = decode(body)
        step = message.type
        await handler(message)
        return "done"
    except ThrottledError as exc:
        delay = min(max(math.ceil(exc.retry_after), 1), MAX_THROTTLE_DELAY_SECONDS)
        await storage.enqueue(body, visibility_timeout=delay)
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
