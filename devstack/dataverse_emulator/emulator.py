"""DataverseEmulator: a Dataverse organization's Web API subset on loopback, on its own thread and loop.

I/O side. The connector talks to it over HTTP; tests (and the dev stack) arrange "CRM user" edits and the
directory through methods. Its clock can be moved forward, which is how delta tokens expire.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web

from devstack.dataverse_emulator.api import API, DataverseApi, Faults, Recorded
from devstack.dataverse_emulator.store import Store
from sync_core.domain.model import Appointment, AttendeeType

DEFAULT_TOKEN = "dev-dataverse-token"  # the connector's DATAVERSE_AUTH_MODE=emulator token
APP_USER_ID = "6b0f3b7e-0000-4000-8000-00000000a991"  # the application user the connector acts as
_START_TIMEOUT_S = 10.0
T = TypeVar("T")


class DataverseEmulator:
    """Serves `/api/data/v9.2/` on `base_url`; use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, token: str = DEFAULT_TOKEN) -> None:
        self.host, self.port, self.token = host, port, token
        self._offset = timedelta()
        self.store = Store(self._now, APP_USER_ID)
        self._api = DataverseApi(self.store, token=token, base_url=lambda: self.base_url)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
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

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("DataverseEmulator is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(sock))
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"dataverse-emulator-{self.port}", daemon=True)
        self._thread.start()
        if not ready.wait(_START_TIMEOUT_S) or failure:
            self._thread = None
            raise RuntimeError(f"Dataverse emulator did not start: {failure[0] if failure else 'timeout'}")

    async def _serve(self, sock: socket.socket) -> None:
        self._runner = web.AppRunner(self._api.app([]), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_START_TIMEOUT_S)
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

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
        return future.result(_START_TIMEOUT_S)

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
        def run() -> None:
            self.store.reset()
            self._seed_app_user()
            self._api.faults = Faults()
            self._api.requests.clear()

        self._call(run)
        self._offset = timedelta()

    def advance(self, delta: timedelta) -> None:
        """Move the emulator's clock (delta tokens older than 7 days expire)."""
        self._offset += delta

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

    def user_delete(self, crm_id: str) -> None:
        self._call(lambda: self.store.delete("appointments", crm_id, if_match=None))

    def appointments(self) -> list[dict[str, Any]]:
        return self._call(lambda: [dict(r) for r in self.store.tables["appointments"].values()])
