"""The whole local stack on free loopback ports, for end-to-end tests and benchmarks.

Azurite (in memory unless given), both emulators seeded with the demo directory, and the development host
serving function_app with settings that point at them. `make run` is the same on fixed ports. With
`connector="dataverse"` the CRM side is the Dataverse emulator (`dataverse`, its webhook registered to
`/api/crm/dataverse/webhook`) instead of the CRM emulator (`crm`); with `connector="salesforce"` the
Salesforce emulator (`salesforce`, its outbound message posting to `/api/crm/salesforce/webhook`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devstack.azurite import Azurite
from devstack.crm_emulator import CrmEmulator
from devstack.dataverse_emulator import DataverseEmulator
from devstack.graph_emulator import GraphEmulator
from devstack.host import DevHost
from devstack.run import (
    dataverse_settings,
    dataverse_webhook,
    salesforce_outbound_url,
    salesforce_settings,
    seed_crm,
    seed_dataverse,
    seed_graph,
    seed_salesforce,
    webhook_key_settings,
)
from devstack.salesforce_emulator import SalesforceEmulator

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_KEY = "stack-function-key"  # host-level: opens every FUNCTION-level route
GRAPH_KEY = "stack-graph-key"  # graph_notifications and graph_lifecycle only; Graph is told it
CRM_KEY = "stack-crm-key"  # the CRM doors only (crm_webhook, dataverse_webhook, salesforce_webhook)
MASTER_KEY = "stack-master-key"
CRM_SECRET = "stack-crm-secret"
CRM_TOKEN = "stack-crm-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalStack:
    """Start with `start()`, stop with `stop()`; sets the app's settings in os.environ while it runs."""

    azurite: Azurite | None = None
    polling_interval: str = "00:00:00.100"
    policy_file: Path = ROOT / "devstack" / "demo-policy.json"
    listen: bool = True  # False: the host polls no queue and runs no timer (DevHost's `listen`)
    connector: str = "rest"  # CRM_CONNECTOR: `rest` (the CRM emulator), `dataverse` or `salesforce`
    graph: GraphEmulator = field(init=False)
    crm: CrmEmulator = field(init=False)
    dataverse: DataverseEmulator = field(init=False)
    salesforce: SalesforceEmulator = field(init=False)
    host: DevHost = field(init=False)
    settings: dict[str, str] = field(init=False)
    _own_azurite: bool = field(init=False, default=False)
    _saved_env: dict[str, str] = field(init=False, default_factory=dict)

    def start(self) -> LocalStack:
        """Start everything; if any part fails, stop what already runs (no orphan Azurite) and re-raise."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> LocalStack:
        from sync_core.bootstrap import close_container, configuration

        if self.azurite is None:
            self.azurite = Azurite()
            self.azurite.start()
            self._own_azurite = True
        host_port = free_port()
        self.graph = GraphEmulator()
        self.graph.start()
        seed_graph(self.graph)
        if self.connector == "dataverse":
            url, headers = dataverse_webhook(f"http://127.0.0.1:{host_port}", CRM_KEY, CRM_SECRET)
            self.dataverse = DataverseEmulator(webhook_url=url, webhook_headers=headers)
            self.dataverse.start()
            seed_dataverse(self.dataverse)
            crm_settings = dataverse_settings(self.dataverse.base_url)
        elif self.connector == "salesforce":
            outbound = salesforce_outbound_url(f"http://127.0.0.1:{host_port}", CRM_KEY)
            self.salesforce = SalesforceEmulator(outbound_url=outbound)
            self.salesforce.start()
            seed_salesforce(self.salesforce)
            crm_settings = salesforce_settings(self.salesforce.base_url)
        else:
            self.crm = CrmEmulator(
                webhook_url=f"http://127.0.0.1:{host_port}/api/crm/webhook?code={CRM_KEY}",
                webhook_secret=CRM_SECRET,
                token=CRM_TOKEN,
            )
            self.crm.start()
            seed_crm(self.crm)
            crm_settings = {"CRM_BASE_URL": self.crm.base_url, "CRM_API_TOKEN": CRM_TOKEN}
        self.settings = {
            "AzureWebJobsStorage": self.azurite.connection_string,
            "GRAPH_BASE_URL": self.graph.base_url,
            "GRAPH_AUTH_MODE": "emulator",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{host_port}",
            **webhook_key_settings(GRAPH_KEY, CRM_KEY),
            **crm_settings,
            "CRM_WEBHOOK_SECRETS": CRM_SECRET,
            "SYNC_POLICY_FILE": str(self.policy_file),
            "DEVHOST_FUNCTION_KEY": FUNCTION_KEY,
            "DEVHOST_MASTER_KEY": MASTER_KEY,
        }
        self._saved_env = dict(os.environ)
        os.environ.update(self.settings)
        configuration.cache_clear()
        host_json = json.loads((ROOT / "host.json").read_text())
        host_json["extensions"]["queues"]["maxPollingInterval"] = self.polling_interval

        asyncio.run(self._reset_storage())

        import function_app

        self.host = DevHost(
            function_app.app,
            self.settings,
            host_json,
            port=host_port,
            on_stop=(close_container,),
            listen=self.listen,
        )
        self.host.start()
        asyncio.run(self._prepare())
        return self

    async def _reset_storage(self) -> None:
        """Empty the app's queues and tables before the host starts polling: a stack on a shared Azurite
        must not inherit another stack's messages, mappings or delta links (which name that stack's ports)."""
        from azure.core.exceptions import ResourceNotFoundError
        from azure.data.tables.aio import TableServiceClient
        from azure.storage.queue.aio import QueueServiceClient

        from sync_core.adapters.storage.core import QUEUES, TABLES

        connection = self.settings["AzureWebJobsStorage"]
        async with QueueServiceClient.from_connection_string(connection) as queues:
            for name in QUEUES:
                with contextlib.suppress(ResourceNotFoundError):
                    await queues.get_queue_client(name).clear_messages()
        async with TableServiceClient.from_connection_string(connection) as tables:
            for name in TABLES:
                await tables.delete_table(name)  # no error when absent; the host and _prepare re-create it

    async def _prepare(self) -> None:
        from sync_core.bootstrap import opened

        async with opened() as c:
            await c.storage.ensure()
            subscriptions = (
                c.subscription_manager()
            )  # a newly subscribed mailbox gets its backfill (I5), run by the host
            for user in c.policy.sync_users:
                await subscriptions.ensure(user.primary_mailbox or user.email)

    def stop(self) -> None:
        from sync_core.bootstrap import configuration

        # Whatever was started (a failed start may have stopped part way), in reverse order.
        for part in ("host", "crm", "dataverse", "salesforce", "graph"):
            if hasattr(self, part):
                getattr(self, part).stop()
        if self._own_azurite and self.azurite is not None:
            self.azurite.stop()
        if self._saved_env:
            os.environ.clear()
            os.environ.update(self._saved_env)
        configuration.cache_clear()

    def graph_http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.graph.base_url, headers={"Authorization": "Bearer stack"}, timeout=10
        )

    def crm_appointments(self) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.crm.admin_url}/appointments", timeout=10)
        r.raise_for_status()
        body = r.json()
        return list(body["appointments"] if isinstance(body, dict) else body)

    def post_to_ingress(
        self, route: str, body: bytes, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST to a front door with the key its caller holds: Graph's for graph/..., the CRM's for crm/..."""
        key = (
            GRAPH_KEY if route.startswith("graph/") else CRM_KEY if route.startswith("crm/") else FUNCTION_KEY
        )
        return httpx.post(
            f"{self.host.base_url}/api/{route}?code={key}",
            content=body,
            headers=headers or {},
            timeout=10,
        )
