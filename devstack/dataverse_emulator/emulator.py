"""DataverseEmulator: a Dataverse organization's Web API subset on loopback, on its own thread and loop.

I/O side. The connector talks to it over HTTP; tests (and the dev stack) arrange "CRM user" edits and the
directory through methods, or over HTTP under `/_emulator/` (a loopback test tool: no token). Its clock can
be moved forward, which is how delta tokens expire. With a webhook registered (`register_webhook`), every
appointment Create, Update and Delete, the app's and the users', is posted as a RemoteExecutionContext
(webhooks.py).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web

from devstack.dataverse_emulator.admin import admin_routes
from devstack.dataverse_emulator.api import API, DataverseApi, Faults, Recorded
from devstack.dataverse_emulator.series import SeriesStore
from devstack.dataverse_emulator.webhooks import Change, Delivery, Endpoint, Organization, WebhookSender
from devstack.threaded_server import START_TIMEOUT_S, ThreadedServer
from sync_core.domain.model import Appointment, AttendeeType

DEFAULT_TOKEN = "dev-dataverse-token"  # the connector's DATAVERSE_AUTH_MODE=emulator token
APP_USER_ID = "6b0f3b7e-0000-4000-8000-00000000a991"  # the application user the connector acts as
ORGANIZATION = Organization(
    organization_id="00000000-0000-0000-0000-0000000000a1",  # WhoAmI's
    business_unit_id="00000000-0000-0000-0000-0000000000b1",
    name="msyncemulator",
    domain="msyncemulator.crm.dynamics.com",
)
T = TypeVar("T")


class DataverseEmulator(ThreadedServer):
    """Serves `/api/data/v9.2/` on `base_url`; use as a context manager."""

    label = "Dataverse emulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str = DEFAULT_TOKEN,
        webhook_url: str | None = None,
        webhook_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.host, self.port, self.token = host, port, token
        self._offset = timedelta()
        self.store = SeriesStore(self._now, APP_USER_ID)
        self.store.on_change = self._changed
        self._sender = WebhookSender(ORGANIZATION)
        if webhook_url is not None:
            self._sender.endpoint = Endpoint(webhook_url, dict(webhook_headers or {}))
        self._api = DataverseApi(self.store, token=token, base_url=lambda: self.base_url)
        self._init_server()
        self._seed_app_user()

    def _now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}{API}/"

    # -- lifecycle ------------------------------------------------------------------------------------

    async def _serve(self, sock: socket.socket) -> None:
        await self._sender.open()
        self._runner = web.AppRunner(self._api.app(admin_routes(self)), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def _shutdown(self) -> None:
        await self._sender.close()
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

    def _seed_app_user(self) -> None:
        self.store.tables["systemusers"][APP_USER_ID] = {
            "systemuserid": APP_USER_ID,
            "fullname": "# m365 calendar sync",
            "internalemailaddress": "calendar-sync@app.invalid",
            "azureactivedirectoryobjectid": None,
            "applicationid": "00000000-0000-0000-0000-00000000a991",
            "isdisabled": False,
            "@odata.etag": 'W/"1"',
        }

    def reset(self) -> None:
        """Forget rows, faults, the request log and the webhook deliveries (the registration stays)."""

        def run() -> None:
            self.store.reset()
            self._seed_app_user()
            self._api.faults = Faults()
            self._api.requests.clear()
            self._sender.clear()
            self._sender.duplicate = False

        self._call(run)
        self._offset = timedelta()

    # -- the webhook ---------------------------------------------------------------------------------

    def _changed(self, message: str, row: dict[str, Any], written: dict[str, Any], caller: str) -> None:
        """The store's hook (on the loop): the registered steps run after each appointment operation."""
        entity_id = str(row["activityid"])
        attributes = {"activityid": entity_id, **written}
        if message != "Delete":
            attributes |= {"modifiedon": row.get("modifiedon"), "_modifiedby_value": caller}
        self._sender.submit(Change(message, entity_id, attributes, row.get("subject"), caller, self._now()))

    def register_webhook(self, url: str | None, headers: Mapping[str, str] | None = None) -> None:
        """A service endpoint with HttpHeader authentication (`headers`: its key/value pairs), and steps on
        appointment Create, Update and Delete; None removes it."""
        endpoint = Endpoint(url, dict(headers or {})) if url else None
        self._call(lambda: setattr(self._sender, "endpoint", endpoint))

    def duplicate_webhooks(self, on: bool = True) -> None:
        """Deliver every context twice, as when Dataverse's answer was lost and the job ran again."""
        self._call(lambda: setattr(self._sender, "duplicate", on))

    @property
    def webhook_deliveries(self) -> list[Delivery]:
        return self._sender.deliveries

    @property
    def webhook_contexts(self) -> list[dict[str, Any]]:
        """Every RemoteExecutionContext posted so far (once each, however often it was delivered)."""
        return self._call(lambda: list(self._sender.sent))

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Block until every webhook so far was answered or given up; False on timeout."""
        return self._sender.wait_idle(timeout)

    def advance(self, delta: timedelta) -> None:
        """Move the emulator's clock (delta tokens older than 7 days expire)."""
        self._offset += delta

    def track_changes(self, entity_set: str, on: bool = True) -> None:
        """Switch change tracking of a table (appointments, recurringappointmentmasters) on or off."""
        self._call(lambda: (self.store.tracked.add if on else self.store.tracked.discard)(entity_set))

    def set_faults(self, **faults: Any) -> None:
        self._api.faults = Faults(**faults)

    @property
    def requests(self) -> list[Recorded]:
        return list(self._api.requests)

    def seed(
        self,
        *,
        users: Iterable[Mapping[str, Any]] = (),
        contacts: Iterable[Mapping[str, Any]] = (),
        spaces: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """Users `{id, email, name, mailbox}` (a mailbox makes an Entra user: it must be the email),
        contacts `{id, email, name}` and spaces `{id, name, room_mailbox, management_mode}`; ids are GUIDs."""

        def run() -> None:
            for u in users:
                if u.get("mailbox") and str(u["mailbox"]).lower() != str(u["email"]).lower():
                    raise ValueError("a Dataverse user's mailbox is their internalemailaddress")
                body = {
                    "fullname": u.get("name", ""),
                    "internalemailaddress": u["email"],
                    "azureactivedirectoryobjectid": str(uuid.uuid4()) if u.get("mailbox") else None,
                    "isdisabled": False,
                    "applicationid": None,
                }
                self.store.create("systemusers", body, key=u.get("id"), caller=APP_USER_ID)
            for c in contacts:
                body = {"fullname": c.get("name", ""), "emailaddress1": c["email"]}
                self.store.create("contacts", body, key=c.get("id"), caller=APP_USER_ID)
            for s in spaces:
                body = {
                    "name": s["name"],
                    "emailaddress": s.get("room_mailbox"),
                    "msync_managementmode": s.get("management_mode"),
                }
                self.store.create("equipments", body, key=s.get("id"), caller=APP_USER_ID)

        self._call(run)

    def _user(self, email: str | None) -> str:
        """The systemuserid of the user with this email, created (an Entra user) when unknown."""
        if email is None:
            return APP_USER_ID
        for row in self.store.tables["systemusers"].values():
            if str(row.get("internalemailaddress") or "").lower() == email.lower():
                return str(row["systemuserid"])
        body = {
            "fullname": email.split("@")[0].title(),
            "internalemailaddress": email,
            "azureactivedirectoryobjectid": str(uuid.uuid4()),
            "isdisabled": False,
            "applicationid": None,
        }
        return str(self.store.create("systemusers", body, key=None, caller=APP_USER_ID)["systemuserid"])

    def _parties(self, appointment: Appointment) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if appointment.organizer is not None:
            organizer = self._user(appointment.organizer.email)
            out.append(
                {"partyid_systemuser@odata.bind": f"/systemusers({organizer})", "participationtypemask": 7}
            )
        for a in appointment.attendees:
            out.append(
                {"addressused": a.email, "participationtypemask": 6 if a.type is AttendeeType.OPTIONAL else 5}
            )
        return out

    def user_create(
        self, appointment: Appointment, *, created_by: str | None = None, external_ref: str | None = None
    ) -> dict[str, Any]:
        """An appointment made in Dynamics by a CRM user: native columns only (no msync_syncdata)."""

        def run() -> dict[str, Any]:
            caller = self._user(created_by)
            body: dict[str, Any] = {
                "subject": appointment.subject,
                "description": appointment.body,
                "scheduledstart": appointment.start.isoformat(),
                "scheduledend": appointment.end.isoformat(),
                "isalldayevent": appointment.is_all_day,
                "location": "; ".join(loc.display_name for loc in appointment.locations) or None,
                "appointment_activity_parties": self._parties(appointment),
            }
            if external_ref is not None:
                body["msync_externalref"] = external_ref
            row = self.store.create("appointments", body, key=None, caller=caller)
            return {"id": row["activityid"]} | dict(row)

        return self._call(run)

    def user_update(self, crm_id: str, *, updated_by: str | None = None, **fields: Any) -> dict[str, Any]:
        """Edit columns as a CRM user would (our field names subject/body/start/end are translated)."""
        names = {"body": "description", "start": "scheduledstart", "end": "scheduledend"}

        def run() -> dict[str, Any]:
            body = {
                names.get(k, k): (v.isoformat() if isinstance(v, datetime) else v) for k, v in fields.items()
            }
            return dict(
                self.store.update("appointments", crm_id, body, if_match=None, caller=self._user(updated_by))
            )

        return self._call(run)

    def user_cancel(self, crm_id: str) -> dict[str, Any]:
        return self.user_update(crm_id, statecode=2, statuscode=4)

    def user_delete(self, crm_id: str, *, deleted_by: str | None = None) -> None:
        self._call(
            lambda: self.store.delete("appointments", crm_id, if_match=None, caller=self._user(deleted_by))
        )

    def user_create_series(
        self, columns: Mapping[str, Any], *, created_by: str | None = None
    ) -> dict[str, Any]:
        """A recurring appointment series a CRM user makes: Dataverse columns (no msync_syncdata)."""
        return self._call(
            lambda: dict(
                self.store.create(
                    "recurringappointmentmasters", columns, key=None, caller=self._user(created_by)
                )
            )
        )

    def user_delete_series(self, crm_id: str, *, deleted_by: str | None = None) -> None:
        """A CRM user deletes a whole series (its instances go with it)."""
        self._call(
            lambda: self.store.delete(
                "recurringappointmentmasters", crm_id, if_match=None, caller=self._user(deleted_by)
            )
        )

    def appointments(self) -> list[dict[str, Any]]:
        return self._call(lambda: [dict(r) for r in self.store.tables["appointments"].values()])

    def parties(self, crm_id: str) -> list[dict[str, Any]]:
        """The activity parties of one appointment, as stored."""
        return self._call(lambda: [dict(p) for p in self.store.parties_of(crm_id.lower())])

    # -- /_emulator routes: what a Dataverse user does in the app, over HTTP (`make run`, curl) -----------
