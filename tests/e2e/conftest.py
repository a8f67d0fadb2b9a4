"""The local stack for end-to-end tests: Azurite, both emulators and the development host, on loopback.

Started once per session, like `make run` but on free ports and with in-memory Azurite.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.azurite import Azurite
from devstack.crm_emulator import CrmEmulator
from devstack.graph_emulator import GraphEmulator
from devstack.host import DevHost
from devstack.run import seed_crm, seed_graph

ROOT = Path(__file__).resolve().parents[2]
FUNCTION_KEY = "e2e-function-key"
MASTER_KEY = "e2e-master-key"
CRM_SECRET = "e2e-crm-secret"
CRM_TOKEN = "e2e-crm-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    graph: GraphEmulator
    crm: CrmEmulator
    host: DevHost
    azurite: Azurite
    settings: dict[str, str]

    def graph_http(self) -> httpx.Client:
        return httpx.Client(base_url=self.graph.base_url, headers={"Authorization": "Bearer e2e"}, timeout=10)

    def crm_appointments(self) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.crm.admin_url}/appointments", timeout=10)
        r.raise_for_status()
        body = r.json()
        return list(body["appointments"] if isinstance(body, dict) else body)

    def post_to_ingress(
        self, route: str, body: bytes, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return httpx.post(
            f"{self.host.base_url}/api/{route}?code={FUNCTION_KEY}",
            content=body,
            headers=headers or {},
            timeout=10,
        )


def wait_for(predicate: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until `predicate` returns something truthy; fail with the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last value: {last!r})")


@pytest.fixture(scope="session")
def stack(azurite: Azurite) -> Iterator[Stack]:
    from sync_core.bootstrap import Container, configuration, utcnow
    from sync_core.subscription_manager import SubscriptionManager

    host_port = _free_port()
    graph = GraphEmulator()
    graph.start()
    seed_graph(graph)
    crm = CrmEmulator(
        webhook_url=f"http://127.0.0.1:{host_port}/api/crm/webhook?code={FUNCTION_KEY}",
        webhook_secret=CRM_SECRET,
        token=CRM_TOKEN,
    )
    crm.start()
    seed_crm(crm)
    settings = {
        "AzureWebJobsStorage": azurite.connection_string,
        "GRAPH_BASE_URL": graph.base_url,
        "GRAPH_AUTH_MODE": "emulator",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{host_port}",
        "WEBHOOK_FUNCTION_KEY": FUNCTION_KEY,
        "CRM_BASE_URL": crm.base_url,
        "CRM_API_TOKEN": CRM_TOKEN,
        "CRM_WEBHOOK_SECRETS": CRM_SECRET,
        "SYNC_POLICY_FILE": str(ROOT / "devstack" / "demo-policy.json"),
        "DEVHOST_FUNCTION_KEY": FUNCTION_KEY,
        "DEVHOST_MASTER_KEY": MASTER_KEY,
    }
    saved = dict(os.environ)
    os.environ.update(settings)
    configuration.cache_clear()
    host_json = json.loads((ROOT / "host.json").read_text())
    host_json["extensions"]["queues"]["maxPollingInterval"] = "00:00:00.100"

    import function_app

    host = DevHost(function_app.app, settings, host_json, port=host_port)
    host.start()

    async def prepare() -> None:
        c = Container(*configuration())
        try:
            await c.storage.ensure()
            manager = SubscriptionManager(
                graph=c.graph, store=c.subscriptions, settings=c.settings, clock=utcnow
            )
            for user in c.policy.sync_users:
                await manager.ensure(user.primary_mailbox or user.email)
        finally:
            await c.aclose()

    asyncio.run(prepare())
    try:
        yield Stack(graph, crm, host, azurite, settings)
    finally:
        host.stop()
        crm.stop()
        graph.stop()
        os.environ.clear()
        os.environ.update(saved)
        configuration.cache_clear()
