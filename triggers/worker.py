"""The queue-triggered worker on `sync-changes`: one message, one decision, applied idempotently."""

from __future__ import annotations

import azure.functions as func

from sync_core.adapters.storage.core import CHANGES_QUEUE
from sync_core.bootstrap import container
from sync_core.service.retry import process

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name=CHANGES_QUEUE, connection="AzureWebJobsStorage")
async def sync_worker(msg: func.QueueMessage) -> None:
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
