"""SalesforceConnector: the CrmConnector port over the Salesforce REST API, composed of salesforce_http,
_directory, _records, _changes and _writes; its settings. I/O side (httpx). The why (API economy, create
once, concurrency, the change feed): docs/connectors/salesforce.md, "Guarantees and how they are met"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

import httpx

from sync_core.adapters.crm.salesforce_changes import SalesforceChanges
from sync_core.adapters.crm.salesforce_http import Session
from sync_core.adapters.crm.salesforce_wire import CAPABILITIES, FieldProfile
from sync_core.adapters.crm.salesforce_writes import SalesforceWrites, create_key
from sync_core.clock import SystemClock
from sync_core.errors import ConfigurationError
from sync_core.ports.crm import CrmCapabilities
from sync_core.settings import Settings

__all__ = ["EMULATOR_CLIENT_ID", "EMULATOR_CLIENT_SECRET", "SalesforceConnector", "create_key"]

EMULATOR_CLIENT_ID = "dev-salesforce-client"
EMULATOR_CLIENT_SECRET = "dev-salesforce-secret"
DEFAULT_DIRECTORY_TTL_S = 300.0


class SalesforceConnector(SalesforceWrites, SalesforceChanges):
    """CrmConnector over the Salesforce REST API, one per process. Directory answers (users, contacts) are
    cached for `directory_ttl_s`."""

    capabilities: CrmCapabilities = CAPABILITIES

    def __init__(
        self,
        instance_url: str,
        *,
        client_id: str,
        client_secret: str,
        api_version: str = "v62.0",
        profile: FieldProfile | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        directory_ttl_s: float = DEFAULT_DIRECTORY_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        problems = []
        if not instance_url.startswith(("https://", "http://")):
            problems.append(f"SALESFORCE_INSTANCE_URL must be an absolute http(s) URL, got {instance_url!r}")
        if not client_id or not client_secret:
            problems.append("the Salesforce connector needs a client id and a client secret")
        if problems:
            raise ConfigurationError(problems)
        self.instance_url = instance_url.rstrip("/")
        self.data_path = f"/services/data/{api_version}"
        self.profile = profile or FieldProfile()
        self._client = httpx.AsyncClient(
            base_url=self.instance_url,
            headers={"Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )
        self._session = Session(
            self._client, f"{self.instance_url}/services/oauth2/token", client_id, client_secret
        )
        self._ttl, self._clock, self._now = directory_ttl_s, clock, wall_clock or SystemClock().now
        self._people: dict[str, tuple[str | None, float]] = {}  # lower-case email -> User/Contact/Lead id
        self._lock = asyncio.Lock()
        self.api_usage: tuple[int, int] | None = None  # the last Sforce-Limit-Info: (used, allocation)
        self.calls = 0  # requests sent, for `bench economy`

    @classmethod
    def from_settings(
        cls, settings: Settings, wall_clock: Callable[[], datetime] | None = None
    ) -> SalesforceConnector:
        """SALESFORCE_INSTANCE_URL with the External Client App's client credentials, or the emulator's with
        SALESFORCE_AUTH_MODE=emulator; `wall_clock` dates the change-feed cursor (the container's clock)."""
        emulator = settings.salesforce_auth_mode.strip().lower() == "emulator"
        profile = FieldProfile.of(
            settings.salesforce_field_profile.strip().lower(),
            settings.salesforce_email_fields,
            (settings.salesforce_external_id_field or "").strip() or None,
            status_field=settings.salesforce_status_field.strip(),
            statuses=settings.salesforce_statuses,
            cancel_by_delete=settings.salesforce_cancel.strip().lower() == "delete",
        )
        return cls(
            (settings.salesforce_instance_url or "").strip(),
            client_id=EMULATOR_CLIENT_ID if emulator else settings.salesforce_client_id or "",
            client_secret=EMULATOR_CLIENT_SECRET if emulator else settings.salesforce_client_secret or "",
            api_version=settings.salesforce_api_version.strip(),
            profile=profile,
            wall_clock=wall_clock,
        )
