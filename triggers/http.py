"""Shared shape of our HTTP replies, and the configuration-error reply every trigger gives."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import azure.functions as func

from sync_core.errors import ConfigurationError

if TYPE_CHECKING:
    from sync_core.ingress.graph import Reply

log = logging.getLogger("triggers")


def respond(reply: Reply) -> func.HttpResponse:
    return func.HttpResponse(reply.body, status_code=reply.status, mimetype=reply.content_type)


def misconfigured(exc: ConfigurationError) -> func.HttpResponse:
    """503 with every problem: the app cannot work until an admin fixes its settings."""
    log.error("%s", exc)
    return func.HttpResponse(
        json.dumps({"error": "configuration", "problems": exc.problems}),
        status_code=503,
        mimetype="application/json",
    )
