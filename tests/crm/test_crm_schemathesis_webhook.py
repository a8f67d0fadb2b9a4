"""Schemathesis against our POST /api/crm/webhook, served by the dev host on Azurite, driven by the
contract's `webhooks.crmAppointmentChanged` (docs/crm-contract.openapi.yaml).

Each generated request (schema-valid and schema-violating, bounded to 60 per run) is sent twice:
  1. as generated: its signature cannot be right, so it must be refused with 400/401/413 and a reason,
     never a 5xx, and nothing may be queued;
  2. with its body signed by a hook (our secret, the current time): a body the contract accepts must get
     202 and one queued message per event (or 401 when that exact signed body was already accepted, a
     replay), a body the contract refuses must get 400 and queue nothing.
The oracle for "the contract accepts" is the contract's JSON Schema, with formats checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import jsonschema_rs
import pytest
import requests
import schemathesis
import yaml
from azure.storage.queue import QueueClient
from schemathesis.specs.openapi.checks import positive_data_acceptance, unsupported_method

from devstack.azurite import Azurite
from devstack.host import DevHost
from sync_core.adapters.storage.core import CHANGES_QUEUE
from sync_core.ports.crm_webhook import sign
from triggers import crm_webhooks

SPEC = Path(__file__).resolve().parents[2] / "docs" / "crm-contract.openapi.yaml"
ROUTE = "/api/crm/webhook"
SECRET = "schemathesis-webhook-secret-0123456789"
FUNCTION_KEY = "schemathesis-function-key"
CONTRACT = yaml.safe_load(SPEC.read_text(encoding="utf-8"))

# The webhook is under `webhooks` (sent by the CRM), which schemathesis does not test: serve it as the
# one path of a schema otherwise made of the contract's own components.
HOST_SCHEMA = {
    "openapi": CONTRACT["openapi"],
    "info": {"title": "Our CRM webhook endpoint", "version": CONTRACT["info"]["version"]},
    "paths": {ROUTE: CONTRACT["webhooks"]["crmAppointmentChanged"]},
    "components": CONTRACT["components"],
}
PAYLOAD = jsonschema_rs.Draft202012Validator(
    {"$ref": "#/components/schemas/WebhookPayload", "components": CONTRACT["components"]},
    validate_formats=True,
)
# Refusing a schema-violating request includes 413 (the contract's limit of 256 KiB): a body with more
# than 500 events is usually larger than that too.
REFUSING_STATUSES = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
REFUSING_STATUSES += ["5xx"]
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            "mode": "all",
            "max-examples": 60,
            "database": "none",
            "allow-extra-parameters": False,
        },
        "checks": {"negative_data_rejection": {"expected-statuses": REFUSING_STATUSES}},
    }
)
schema = schemathesis.openapi.from_dict(HOST_SCHEMA, config=CONFIG)


class Endpoint:
    def __init__(self, host: DevHost, queue: QueueClient) -> None:
        self.url = f"{host.base_url}{ROUTE}"
        self.queue = queue
        self.accepted: set[str] = set()  # signed content already accepted: sending it again is a replay

    def depth(self) -> int:
        return int(self.queue.get_queue_properties().approximate_message_count)


@pytest.fixture(scope="module")
def endpoint(azurite: Azurite) -> Iterator[Endpoint]:
    from sync_core.adapters.storage.core import Storage
    from sync_core.bootstrap import configuration
    from sync_core.settings import load_settings

    settings = {
        "AzureWebJobsStorage": azurite.connection_string,
        "GRAPH_AUTH_MODE": "emulator",
        "GRAPH_BASE_URL": "http://127.0.0.1:9",  # never called: the webhook only verifies and queues
        "PUBLIC_BASE_URL": "http://127.0.0.1:9",
        "CRM_BASE_URL": "http://127.0.0.1:9",
        "CRM_API_TOKEN": "unused",
        "CRM_WEBHOOK_SECRETS": SECRET,
    }
    app = func.FunctionApp()
    app.register_functions(crm_webhooks.bp)  # the webhook alone: no worker drains the queue meanwhile
    with pytest.MonkeyPatch.context() as env:
        for name in ("SYNC_POLICY", "SYNC_POLICY_FILE"):
            env.delenv(name, raising=False)
        for name, value in settings.items():
            env.setenv(name, value)
        configuration.cache_clear()
        asyncio.run(_ensure(Storage(load_settings())))
        host = DevHost(app, {"DEVHOST_FUNCTION_KEY": FUNCTION_KEY}, {}, port=0, drain_seconds=5)
        host.start()
        try:
            with QueueClient.from_connection_string(azurite.connection_string, CHANGES_QUEUE) as queue:
                ep = Endpoint(host, queue)
                yield ep
                # Some generated payloads must have reached the 202 path, or the run proved little.
                assert ep.accepted, "no signed, contract-valid payload was generated"

        finally:
            host.stop()
            configuration.cache_clear()


async def _ensure(storage: Any) -> None:
    try:
        await storage.ensure()
    finally:
        await storage.aclose()


def post(endpoint: Endpoint, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(
        endpoint.url,
        params={"code": FUNCTION_KEY},
        data=body,
        headers={"Content-Type": "application/json", **headers},
        timeout=10,
    )


def assert_refused(response: requests.Response, statuses: set[int], body: bytes) -> None:
    assert response.status_code in statuses, (response.status_code, response.text, body[:500])
    reason = response.json().get("error")
    assert isinstance(reason, str) and reason, response.text


@schema.parametrize()
def test_our_webhook_endpoint_honours_the_contract(case: schemathesis.Case, endpoint: Endpoint) -> None:
    base_url = endpoint.url.removesuffix(ROUTE)
    if case.method.upper() != "POST":
        # Schemathesis also tries other methods and wants 405; the Functions host answers a method a
        # route does not take with 404 (the dev host does the same), so that check is left out here.
        before = endpoint.depth()
        response = case.call(base_url=base_url, params={"code": FUNCTION_KEY})
        assert response.status_code == 404, response.status_code
        case.validate_response(response, excluded_checks=[unsupported_method, positive_data_acceptance])
        assert endpoint.depth() == before
        return
    # 1. As generated: unsigned in effect. Refused with a reason, nothing queued.
    before = endpoint.depth()
    response = case.call(base_url=base_url, params={"code": FUNCTION_KEY})
    assert response.status_code in (400, 401, 413), (response.status_code, response.text)
    case.validate_response(response, excluded_checks=[positive_data_acceptance])
    assert isinstance(response.json().get("error"), str) and response.json()["error"]
    assert endpoint.depth() == before

    # 2. The same body, signed as the CRM would sign it.
    body = case.body
    if not isinstance(body, (dict, list, str, int, float, bool)) and body is not None:
        return  # not JSON (schemathesis may generate other media types for negative cases)
    raw = json.dumps(body).encode()
    now = int(time.time())
    before = endpoint.depth()
    response = post(endpoint, raw, sign(raw, SECRET, now))
    if not PAYLOAD.is_valid(body):
        assert_refused(response, {400, 413}, raw)
        assert endpoint.depth() == before
        return
    seen = hashlib.sha256(f"{now}.".encode() + raw).hexdigest()
    if seen in endpoint.accepted:
        assert_refused(response, {401}, raw)
        assert "replayed" in response.json()["error"]
        assert endpoint.depth() == before
        return
    assert response.status_code == 202, (response.status_code, response.text)
    endpoint.accepted.add(seen)
    assert response.json() == {"accepted": len(body["events"])}
    assert endpoint.depth() == before + len(body["events"])
