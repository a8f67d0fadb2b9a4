"""SalesforceEmulator: a Salesforce org's REST API subset on loopback, on its own thread and loop.

I/O side. The connector talks to it over HTTP; tests (and the dev stack) arrange "CRM user" edits and the
directory through methods. Its clock can be moved forward (replication windows, cursors that age).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web

from devstack.salesforce_emulator.admin import admin_routes
from devstack.salesforce_emulator.api import Faults, Recorded, SalesforceApi
from devstack.salesforce_emulator.outbound import OutboundSender
from devstack.salesforce_emulator.store import ORG_ID, Store, wire
from devstack.threaded_server import START_TIMEOUT_S, ThreadedServer
from sync_core.domain.model import Appointment

CLIENT_ID = "dev-salesforce-client"  # the connector's SALESFORCE_AUTH_MODE=emulator credentials
CLIENT_SECRET = "dev-salesforce-secret"
INTEGRATION_USER_ID = "005000000000INTAAA"
API_VERSION = "v62.0"
T = TypeVar("T")


class SalesforceEmulator(ThreadedServer):
    """Serves `/services/oauth2/token` and `/services/data/vXX.X/` on `base_url`; use as a context manager."""

    label = "Salesforce emulator"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, outbound_url: str | None = None) -> None:
        self.host, self.port = host, port
        self.client_id, self.client_secret = CLIENT_ID, CLIENT_SECRET
        self._offset = timedelta()
        self.store = Store(self._now, INTEGRATION_USER_ID)
        # The outbound message on Event (outbound.py): posted to `outbound_url` on every create and edit.
        self.outbound = OutboundSender(
            ORG_ID, lambda record_id: self.store.find("Event", record_id), base_url=lambda: self.base_url
        )
        self.outbound.endpoint = outbound_url
        self.store.on_change = self.outbound.submit
        self._api = SalesforceApi(
            self.store,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            base_url=lambda: self.base_url,
            now=self._now,
        )
        self._init_server()
        self._seed_integration_user()

    def _now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def data_url(self) -> str:
        return f"{self.base_url}/services/data/{API_VERSION}"

    # -- lifecycle ------------------------------------------------------------------------------------

    async def _serve(self, sock: socket.socket) -> None:
        await self.outbound.open()
        self._runner = web.AppRunner(self._api.app(admin_routes(self)), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def _shutdown(self) -> None:
        await self.outbound.close()
        await super()._shutdown()

    def _call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the emulator's loop (the store is confined to it), or here when not started."""
        if self._loop is None:
            return fn()
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(START_TIMEOUT_S)

    # -- test controls ----------------------------------------------------------------------------------

    def _seed_integration_user(self) -> None:
        stamp = wire(self._now())
        self.store.objects["User"][INTEGRATION_USER_ID] = {
            "Id": INTEGRATION_USER_ID,
            "Name": "M365 Calendar Sync Integration",
            "Email": "calendar-sync@integration.invalid",
            "IsActive": True,
            "FederationIdentifier": None,
            "UserType": "Standard",
            "IsDeleted": False,
            "SystemModstamp": stamp,
        }

    def reset(self) -> None:
        def run() -> None:
            self.store.reset()
            self._seed_integration_user()
            self._api.faults = Faults()
            self._api.requests.clear()
            self._api.used = 0
            self.outbound.clear()
            self.outbound.duplicate = False

        self._call(run)
        self._offset = timedelta()

    def advance(self, delta: timedelta) -> None:
        """Move the emulator's clock forward."""
        self._offset += delta

    def set_faults(self, **faults: Any) -> None:
        self._api.faults = Faults(**faults)

    def expire_sessions(self) -> None:
        """Invalidate every access token: the next request answers 401 INVALID_SESSION_ID."""
        self._call(self._api.expire_sessions)

    def purge_recycle_bin(self) -> None:
        self._call(self.store.purge)

    @property
    def requests(self) -> list[Recorded]:
        return list(self._api.requests)

    def seed(
        self,
        *,
        users: Iterable[Mapping[str, Any]] = (),
        contacts: Iterable[Mapping[str, Any]] = (),
        spaces: Iterable[Mapping[str, Any]] = (),
        leads: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """Users `{id, email, name, mailbox}` (a mailbox makes an Entra single-sign-on user: it must be the
        email), contacts `{id, email, name, **other fields}`, leads `{id, email, name}`, spaces `{id, name,
        room_mailbox, management_mode}`; an id not given is made."""

        def put(obj: str, key: str | None, row: dict[str, Any]) -> None:
            record_id = key or self.store.new_id(obj)
            self.store.objects[obj][record_id] = {"Id": record_id, "IsDeleted": False} | row

        def run() -> None:
            for u in users:
                if u.get("mailbox") and str(u["mailbox"]).lower() != str(u["email"]).lower():
                    raise ValueError(
                        "a Salesforce user's mailbox is their Email (single sign-on through Entra)"
                    )
                put(
                    "User",
                    u.get("id"),
                    {
                        "Name": u.get("name", ""),
                        "Email": u["email"],
                        "IsActive": True,
                        "UserType": "Standard",
                        "FederationIdentifier": u["email"] if u.get("mailbox") else None,
                    },
                )
            for c in contacts:
                extra = {k: v for k, v in c.items() if k not in ("id", "email", "name")}
                put("Contact", c.get("id"), {"Name": c.get("name", ""), "Email": c.get("email")} | extra)
            for lead in leads:
                put(
                    "Lead",
                    lead.get("id"),
                    {"Name": lead.get("name", ""), "Email": lead["email"], "IsConverted": False},
                )
            for s in spaces:
                put(
                    "msync_Space__c",
                    s.get("id"),
                    {
                        "Name": s["name"],
                        "msync_RoomMailbox__c": s.get("room_mailbox"),
                        "msync_ManagementMode__c": s.get("management_mode"),
                    },
                )

        self._call(run)

    def _user(self, email: str | None) -> str:
        """The Id of the user with this email, created (a single-sign-on user) when unknown."""
        if email is None:
            return INTEGRATION_USER_ID
        for row in self.store.objects["User"].values():
            if str(row.get("Email") or "").lower() == email.lower():
                return str(row["Id"])
        record_id = self.store.new_id("User")
        self.store.objects["User"][record_id] = {
            "Id": record_id,
            "IsDeleted": False,
            "Name": email.split("@")[0].title(),
            "Email": email,
            "IsActive": True,
            "UserType": "Standard",
            "FederationIdentifier": email,
        }
        return record_id

    def user_create(
        self, appointment: Appointment, *, created_by: str | None = None, external_ref: str | None = None
    ) -> dict[str, Any]:
        """An event made in Salesforce by a CRM user: native fields only (no msync_SyncData__c)."""

        def run() -> dict[str, Any]:
            caller = self._user(created_by)
            body: dict[str, Any] = {
                "Subject": appointment.subject,
                "Description": appointment.body,
                "StartDateTime": appointment.start.isoformat(),
                "EndDateTime": appointment.end.isoformat(),
                "IsAllDayEvent": appointment.is_all_day,
                "Location": "; ".join(loc.display_name for loc in appointment.locations) or None,
                "OwnerId": self._user(appointment.organizer.email) if appointment.organizer else caller,
            }
            if external_ref is not None:
                body["msync_ExternalRef__c"] = external_ref
            row = self.store.create("Event", body, caller=caller)
            for a in appointment.attendees:
                self.store.create(
                    "EventRelation", {"EventId": row["Id"], "RelationId": self._user(a.email)}, caller=caller
                )
            return {"id": row["Id"]} | dict(row)

        return self._call(run)

    def user_update(self, crm_id: str, *, updated_by: str | None = None, **fields: Any) -> dict[str, Any]:
        """Edit fields as a CRM user would (our names subject/body/start/end/location are translated)."""
        names = {
            "subject": "Subject",
            "body": "Description",
            "start": "StartDateTime",
            "end": "EndDateTime",
            "location": "Location",
        }

        def run() -> dict[str, Any]:
            body = {
                names.get(k, k): (v.isoformat() if isinstance(v, datetime) else v) for k, v in fields.items()
            }
            return dict(self.store.update("Event", crm_id, body, caller=self._user(updated_by)))

        return self._call(run)

    def user_delete(self, crm_id: str) -> None:
        self._call(lambda: self.store.delete("Event", crm_id, caller=INTEGRATION_USER_ID))

    def events(self) -> list[dict[str, Any]]:
        return self._call(
            lambda: [dict(r) for r in self.store.objects["Event"].values() if not r.get("IsDeleted")]
        )

    def relations(self, event_id: str) -> list[dict[str, Any]]:
        return self._call(
            lambda: [
                dict(r)
                for r in self.store.objects["EventRelation"].values()
                if r.get("EventId") == event_id and not r.get("IsDeleted")
            ]
        )
