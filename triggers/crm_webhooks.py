"""CRM webhooks: HMAC-signed, replay-protected, enqueued (docs/crm-contract.openapi.yaml); Dataverse webhooks
(docs/connectors/dataverse.md): keyed, de-duplicated, enqueued; Salesforce outbound messages
(docs/connectors/salesforce.md): organization checked, de-duplicated, enqueued, acknowledged.

sync_core's ingress is imported on the first request, not with function_app (tests/core/test_cold_import.py).
"""

from __future__ import annotations

import azure.functions as func

from sync_core.errors import ConfigurationError
from triggers.http import misconfigured, respond

bp = func.Blueprint()


@bp.route(route="crm/webhook", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def crm_webhook(req: func.HttpRequest) -> func.HttpResponse:
    from sync_core.bootstrap import container
    from sync_core.ingress.crm import handle_crm_webhook

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


@bp.route(route="crm/dataverse/webhook", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def dataverse_webhook(req: func.HttpRequest) -> func.HttpResponse:
    from sync_core.bootstrap import container
    from sync_core.ingress.dataverse import handle_dataverse_webhook

    try:
        c = container()
    except ConfigurationError as exc:
        return misconfigured(exc)
    reply = await handle_dataverse_webhook(
        dict(req.headers),
        req.get_body(),
        connector=c.settings.crm_connector_name,
        secrets=c.settings.crm_secrets,
        enqueue=c.storage.enqueue,
        replays=c.replays,
        now=c.clock.now(),
    )
    return respond(reply)


@bp.route(route="crm/salesforce/webhook", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def salesforce_webhook(req: func.HttpRequest) -> func.HttpResponse:
    from sync_core.bootstrap import container
    from sync_core.ingress.salesforce import handle_salesforce_outbound

    try:
        c = container()
    except ConfigurationError as exc:
        return misconfigured(exc)
    reply = await handle_salesforce_outbound(
        req.get_body(),
        connector=c.settings.crm_connector_name,
        org_id=c.settings.salesforce_org_id,
        enqueue=c.storage.enqueue,
        replays=c.replays,
        now=c.clock.now(),
    )
    return respond(reply)
