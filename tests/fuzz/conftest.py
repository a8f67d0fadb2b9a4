"""The front doors for fuzzing: the webhook functions on the development host, over real HTTP, on the
session's Azurite, with no queue worker (so what the ingress enqueued stays in the queue to be checked).

`fuzz_settings`: ~60 examples per test in `make test`, 5,000 with `--chaos-size=large` (`make chaos`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, settings

from devstack.azurite import Azurite
from devstack.host import DevHost
from devstack.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
FUNCTION_KEY = "fuzz-function-key"
CRM_SECRET = "fuzz-crm-secret"
MAILBOX = "adele@contoso.example"
EXAMPLES = {"small": 60, "large": 5000}


@pytest.fixture(scope="session")
def fuzz_settings(request: pytest.FixtureRequest) -> settings:
    return settings(
        max_examples=EXAMPLES[str(request.config.getoption("--chaos-size"))],
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@dataclass
class FrontDoor:
    base_url: str
    subscription_id: str
    client_state: str
    connection_string: str

    def url(self, route: str) -> str:
        return f"{self.base_url}/api/{route}?code={FUNCTION_KEY}"

    def drain(self) -> list[str]:
        """Every message the ingress enqueued since the last drain (read, then deleted), on the live queue
        or, for a mailbox past its burst, the bulk queue (service/fairness.py)."""
        from azure.storage.queue import QueueClient, TextBase64DecodePolicy

        out: list[str] = []
        for queue in ("sync-changes", "sync-bulk"):
            client = QueueClient.from_connection_string(
                self.connection_string, queue, message_decode_policy=TextBase64DecodePolicy()
            )
            with client:
                while batch := list(client.receive_messages(messages_per_page=32, max_messages=32)):
                    for m in batch:
                        out.append(str(m.content))
                        client.delete_message(m)
        return out


@pytest.fixture(scope="module")
def front_door(azurite: Azurite) -> Iterator[FrontDoor]:
    from sync_core.adapters.storage.subscriptions import SubscriptionRow, new_client_state
    from sync_core.bootstrap import configuration, opened
    from sync_core.domain.subscription import client_state_digest
    from triggers import crm_webhooks, graph_webhooks

    values = {
        "AzureWebJobsStorage": azurite.connection_string,
        "GRAPH_BASE_URL": "http://127.0.0.1:9/v1.0",  # never called by the front doors
        "GRAPH_AUTH_MODE": "emulator",
        "PUBLIC_BASE_URL": "http://127.0.0.1:9",
        "WEBHOOK_FUNCTION_KEY": FUNCTION_KEY,
        "CRM_BASE_URL": "http://127.0.0.1:9",
        "CRM_API_TOKEN": "fuzz-token",
        "CRM_WEBHOOK_SECRETS": CRM_SECRET,
        "SYNC_POLICY_FILE": str(ROOT / "devstack" / "demo-policy.json"),
        "DEVHOST_FUNCTION_KEY": FUNCTION_KEY,
        "DEVHOST_MASTER_KEY": "fuzz-master-key",
    }
    client_state = new_client_state()  # Graph sends it; we keep only its digest
    row = SubscriptionRow(
        subscription_id=str(uuid.uuid4()),  # Graph's ids are GUIDs; the ingress refuses anything else
        mailbox=MAILBOX,
        client_state_hash=client_state_digest(client_state),
        expires_at=datetime.now(UTC) + timedelta(days=3),
    )
    with pytest.MonkeyPatch.context() as mp:
        for k, v in values.items():
            mp.setenv(k, v)
        mp.delenv("SYNC_POLICY", raising=False)
        configuration.cache_clear()

        async def prepare() -> None:
            async with opened() as c:
                await c.storage.ensure()
                await c.subscriptions.save(row)

        asyncio.run(prepare())
        app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
        app.register_functions(graph_webhooks.bp)
        app.register_functions(crm_webhooks.bp)
        host_json: dict[str, Any] = json.loads((ROOT / "host.json").read_text())
        host = DevHost(app, values, host_json, port=free_port())
        host.start()
        door = FrontDoor(host.base_url, row.subscription_id, client_state, azurite.connection_string)
        door.drain()  # whatever earlier suites left behind
        try:
            yield door
        finally:
            host.stop()
            door.drain()
            configuration.cache_clear()
