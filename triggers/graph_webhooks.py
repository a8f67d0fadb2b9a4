"""Microsoft Graph change and lifecycle notifications: validate, enqueue, 202 (facts §2-§5).

Lifecycle work (reauthorize, re-create, resync) is never done here: it is queued for the worker.
sync_core's ingress is imported on the first request, not with function_app (tests/core/test_cold_import.py).
"""

from __future__ import annotations

import functools

import azure.functions as func

from sync_core.adapters.storage.names import BULK_QUEUE
from sync_core.errors import ConfigurationError
from triggers.http import misconfigured, respond

bp = func.Blueprint()


async def _ingest(req: func.HttpRequest) -> func.HttpResponse:
    from sync_core.bootstrap import container
    from sync_core.ingress.graph import handle_notifications, validation_reply

    handshake = validation_reply(req.params)  # needs nothing else, not even valid settings
    if handshake is not None:
        return respond(handshake)
    try:
        c = container()
    except ConfigurationError as exc:
        return misconfigured(exc)
    reply = await handle_notifications(
        req.get_body(),
        c.subscriptions.get,
        c.storage.enqueue,
        c.clock.now(),
        heard=c.heard,
        tenant_id=c.settings.graph_tenant_id,
        bulk=functools.partial(c.storage.enqueue, queue=BULK_QUEUE),  # a bursting mailbox's excess
    )
    return respond(reply)


@bp.route(route="graph/notifications", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def graph_notifications(req: func.HttpRequest) -> func.HttpResponse:
    return await _ingest(req)


@bp.route(route="graph/lifecycle", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def graph_lifecycle(req: func.HttpRequest) -> func.HttpResponse:
    """Lifecycle events arrive in the same envelope; the ingress queues them as subscription work."""
    return await _ingest(req)
