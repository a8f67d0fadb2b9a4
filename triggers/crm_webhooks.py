"""CRM webhooks: HMAC-signed, replay-protected, enqueued (docs/crm-contract.openapi.yaml)."""

from __future__ import annotations

import azure.functions as func

from sync_core.bootstrap import container
from sync_core.errors import ConfigurationError
from sync_core.ingress.crm import handle_crm_webhook
from triggers.http import misconfigured, respond

bp = func.Blueprint()


@bp.route(route="crm/webhook", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def crm_webhook(req: func.HttpRequest) -> func.HttpResponse:
    try:
        c = container()
    except ConfigurationError as exc:
        return misconfigured(exc)
    reply = await handle_crm_webhook(
        dict(req.headers),
        req.get_body(),
        secrets=c.settings.crm_secrets,
        enqueue=c.storage.enqueue,
        replays=c.replays,
        now=c.clock.now(),
    )
    return respond(reply)
