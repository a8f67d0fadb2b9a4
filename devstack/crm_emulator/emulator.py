"""CrmEmulator: the in-memory CRM of the local stack and the tests, on its own thread and event loop.

I/O side: serves the contract on loopback and POSTs signed webhooks; tests drive it through methods.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from aiohttp import web

from devstack.crm_emulator.api import ADMIN_PREFIX, CrmApi, Faults, RecordedRequest, json_object
from devstack.crm_emulator.store import ChangeEvent, CrmStore
from devstack.crm_emulator.webhooks import Delivery, WebhookSender
from devstack.threaded_server import ThreadedServer
from sync_core.domain.model import Appointment

DEFAULT_WEBHOOK_SECRET = "dev-crm-webhook-secret"
DEFAULT_TOKEN = "dev-crm-token"


class CrmEmulator(ThreadedServer):
    """A CRM implementing docs/crm-contract.openapi.yaml in memory. Thread-safe; use as a context manager.

    Contract requests need `Authorization: Bearer <token>` or `<api_key_header>: <token>` (default
    `X-Api-Key`, as CRM_AUTH_SCHEME=api_key with CRM_API_KEY_HEADER sends it); `/_emulator/*`
    (seed, faults, reset, snapshots, "CRM user" edits) needs nothing: it is a loopback test tool.
    """

    label = "CRM emulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_url: str | None = None,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        token: str = DEFAULT_TOKEN,
        *,
        webhook_attempts: int = 4,
        webhook_backoff_s: float = 0.5,
        api_key_header: str = "X-Api-Key",
    ) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.store = CrmStore()
        self._sender = WebhookSender(
            [webhook_secret], url=webhook_url, attempts=webhook_attempts, backoff_s=webhook_backoff_s
        )
        self._api = CrmApi(self.store, token=token, emit=self._emit, api_key_header=api_key_header)
        self._init_server()

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"{self.base_url}{ADMIN_PREFIX}"

    async def _serve(self, sock: socket.socket) -> None:
        await self._sender.open()
        self._runner = web.AppRunner(
            self._api.app(self._admin_routes()), access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def _shutdown(self) -> None:
        await self._sender.close()
        await super()._shutdown()

    # -- test controls --------------------------------------------------------------------------

    def _emit(self, events: Sequence[ChangeEvent]) -> None:
        self._sender.submit(events, duplicate_rate=self._api.faults.duplicate_webhooks, rng=self._api.rng)

    def seed(
        self,
        *,
        users: Iterable[Mapping[str, Any]] = (),
        contacts: Iterable[Mapping[str, Any]] = (),
        spaces: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """Add users `{id?, email, name, mailbox}`, contacts `{id?, email, name}` and spaces
        `{id?, name, room_mailbox, management_mode}`."""
        self.store.seed(users=users, contacts=contacts, spaces=spaces)

    @property
    def faults(self) -> Faults:
        return self._api.faults

    def set_faults(self, *, seed: int | None = None, **faults: Any) -> Faults:
        """Replace the faults (unnamed ones go back to none); `seed` makes the dice repeatable."""
        self._api.faults = Faults.from_json(faults)
        if seed is not None:
            self._api.rng.seed(seed)
        return self._api.faults

    def set_webhook_url(self, url: str | None) -> None:
        self._sender.url = url

    def set_webhook_secrets(self, *secrets: str) -> None:
        """Sign with every one of `secrets` (one `v1=` each): the sender side of a rotation."""
        self._sender.secrets = tuple(secrets)

    def reset(self) -> None:
        """Forget appointments, directory, faults, request log and delivery log (webhook URL stays)."""
        self.store.reset()
        self._api.faults = Faults()
        self._api.clear_requests()
        self._sender.clear()

    def appointments(self) -> list[dict[str, Any]]:
        """Every live appointment in wire form (cancelled ones included)."""
        return list(self.store.snapshot()["appointments"])

    def attachments(self, crm_id: str) -> list[dict[str, Any]]:
        """F5: an appointment's attachments as stored, each file with its `content_base64` when it has one."""
        return self.store.attachments(crm_id)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Contract requests received so far (admin requests are not logged)."""
        return self._api.requests

    def clear_requests(self) -> None:
        self._api.clear_requests()

    @property
    def webhook_deliveries(self) -> list[Delivery]:
        return self._sender.deliveries

    def wait_for_webhooks(self, timeout: float = 5.0) -> bool:
        """Block until every webhook so far was delivered or given up; False on timeout."""
        return self._sender.wait_idle(timeout)

    # -- changes "as a CRM user would" make them: version bump and webhook ------------------------

    def user_create(
        self,
        appointment: Appointment | Mapping[str, Any],
        *,
        created_by: str | None = None,
        external_ref: str | None = None,
    ) -> dict[str, Any]:
        """Create a record in the CRM UI; origin is `crm` unless the appointment says otherwise."""
        if isinstance(appointment, Appointment):
            data = appointment.model_dump(mode="json", exclude_unset=False)
            if "origin" not in appointment.model_fields_set:
                data["origin"] = "crm"
        else:
            data = {"origin": "crm", **appointment}
        if external_ref is not None:
            data["external_ref"] = external_ref
        record, _, events = self.store.create(data, idempotency_key=None, created_by=created_by)
        self._emit(events)
        return record

    def user_update(self, crm_id: str, *, updated_by: str | None = None, **fields: Any) -> dict[str, Any]:
        """Edit fields (wire names; datetimes and models are accepted) as CRM user `updated_by` would."""
        patch = {k: v.model_dump(mode="json") if hasattr(v, "model_dump") else v for k, v in fields.items()}
        record, events = self.store.update(crm_id, patch, if_match=None, updated_by=updated_by)
        self._emit(events)
        return record

    def user_cancel(self, crm_id: str) -> dict[str, Any]:
        record, events = self.store.cancel(crm_id, if_match=None)
        self._emit(events)
        return record

    def user_delete(self, crm_id: str) -> None:
        self._emit(self.store.delete(crm_id, if_match=None))

    # -- /_emulator routes ----------------------------------------------------------------------

    def _admin_routes(self) -> list[web.RouteDef]:
        p = ADMIN_PREFIX

        async def seed(request: web.Request) -> web.Response:
            body = await json_object(request)
            self.seed(
                users=body.get("users", ()), contacts=body.get("contacts", ()), spaces=body.get("spaces", ())
            )
            counts = {"users": self.store.users, "contacts": self.store.contacts, "spaces": self.store.spaces}
            return web.json_response({k: len(v) for k, v in counts.items()})

        async def faults(request: web.Request) -> web.Response:
            if request.method == "POST":
                body = await json_object(request)
                seed_value = body.pop("seed", None)
                self.set_faults(seed=seed_value, **body)
            return web.json_response(self._api.faults_json())

        async def appointments(request: web.Request) -> web.Response:
            return web.json_response(self.store.snapshot())

        async def attachments(request: web.Request) -> web.Response:
            return web.json_response(self.attachments(request.match_info["id"]))

        async def reset(request: web.Request) -> web.Response:
            self.reset()
            return web.Response(status=204)

        async def requests(request: web.Request) -> web.Response:
            return web.json_response([asdict(r) for r in self.requests])

        async def webhook(request: web.Request) -> web.Response:
            body = await json_object(request)
            self.set_webhook_url(body.get("url"))
            if "secrets" in body:
                self.set_webhook_secrets(*body["secrets"])
            return web.json_response({"url": self._sender.url})

        async def user_create(request: web.Request) -> web.Response:
            body = await json_object(request)
            created_by = body.pop("created_by", None)
            return web.json_response(self.user_create(body, created_by=created_by), status=201)

        async def user_update(request: web.Request) -> web.Response:
            body = await json_object(request)
            updated_by = body.pop("updated_by", None)
            return web.json_response(
                self.user_update(request.match_info["id"], updated_by=updated_by, **body)
            )

        async def user_cancel(request: web.Request) -> web.Response:
            return web.json_response(self.user_cancel(request.match_info["id"]))

        async def user_delete(request: web.Request) -> web.Response:
            self.user_delete(request.match_info["id"])
            return web.Response(status=204)

        return [
            web.post(f"{p}/seed", seed),
            web.get(f"{p}/faults", faults),
            web.post(f"{p}/faults", faults),
            web.get(f"{p}/appointments", appointments),
            web.get(f"{p}/appointments/{{id}}/attachments", attachments),
            web.post(f"{p}/reset", reset),
            web.get(f"{p}/requests", requests),
            web.post(f"{p}/webhook", webhook),
            web.post(f"{p}/user/appointments", user_create),
            web.patch(f"{p}/user/appointments/{{id}}", user_update),
            web.post(f"{p}/user/appointments/{{id}}/cancel", user_cancel),
            web.delete(f"{p}/user/appointments/{{id}}", user_delete),
        ]
