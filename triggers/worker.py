"""The queue-triggered worker on `sync-changes`: one message, one decision, applied idempotently.

sync_core's service is imported on the first message, not with function_app (tests/core/test_cold_import.py).
"""

from __future__ import annotations

import azure.functions as func

from sync_core.adapters.storage.names import BULK_QUEUE, CHANGES_QUEUE

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name=CHANGES_QUEUE, connection="AzureWebJobsStorage")
async def sync_worker(msg: func.QueueMessage) -> None:
    from sync_core.bootstrap import container
    from sync_core.service.retry import process

    c = container()
    await process(
        msg.get_body().decode("utf-8", errors="replace"),
        message_id=msg.id or "",
        dequeue_count=int(getattr(msg, "dequeue_count", None) or 1),
        handler=c.handle,
        storage=c.storage,
        failures=c.failures,
        now=c.clock.now,
    )


@bp.queue_trigger(arg_name="msg", queue_name=BULK_QUEUE, connection="AzureWebJobsStorage")
async def sync_bulk_worker(msg: func.QueueMessage) -> None:
    """Bulk work (service/fairness.py): the same handling, a few messages at a time per process."""
    from sync_core.bootstrap import container
    from sync_core.service.fairness import bulk_slot
    from sync_core.service.retry import process

    c = container()
    async with bulk_slot():
        await process(
            msg.get_body().decode("utf-8", errors="replace"),
            message_id=msg.id or "",
            dequeue_count=int(getattr(msg, "dequeue_count", None) or 1),
            handler=c.handle,
            storage=c.storage,
            failures=c.failures,
            now=c.clock.now,
            queue=BULK_QUEUE,
        )
