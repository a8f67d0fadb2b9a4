"""The Dataverse emulator's own routes under `/_emulator/` (not Dataverse's Web API), a loopback test tool
with no token: the rows, a CRM user's edits of appointments and series, the webhook and its deliveries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from devstack.dataverse_emulator.store import ApiError
from devstack.dataverse_emulator.webhooks import Endpoint

if TYPE_CHECKING:
    from devstack.dataverse_emulator.emulator import DataverseEmulator

ADMIN = "/_emulator"
APPOINTMENTS, MASTERS = "appointments", "recurringappointmentmasters"
Handler = Callable[[web.Request], Awaitable[web.Response]]


def admin_routes(emulator: DataverseEmulator) -> list[web.RouteDef]:
    """Handlers run on the emulator's loop, where the store lives: they call the store directly."""

    async def body_of(request: web.Request) -> dict[str, Any]:
        try:
            data = await request.json() if request.can_read_body else {}
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="expected a JSON object")
        return data

    def answer(work: Callable[[], Any], status: int = 200) -> web.Response:
        try:
            result = work()
        except ApiError as err:
            return web.json_response(err.body(), status=err.status)
        return web.Response(status=204) if result is None else web.json_response(result, status=status)

    async def masters(request: web.Request) -> web.Response:
        rows = emulator.store.tables["recurringappointmentmasters"].values()
        return web.json_response([dict(r) for r in rows])

    async def appointments(request: web.Request) -> web.Response:
        rows = emulator.store.tables["appointments"].values()
        return web.json_response(
            [dict(r) | {"parties": emulator.store.parties_of(r["activityid"])} for r in rows]
        )

    def user_create(entity_set: str) -> Handler:
        async def create(request: web.Request) -> web.Response:
            body = await body_of(request)
            by = body.pop("created_by", None)
            return answer(
                lambda: dict(emulator.store.create(entity_set, body, key=None, caller=emulator._user(by))),
                201,
            )

        return create

    def user_update(entity_set: str) -> Handler:
        async def update(request: web.Request) -> web.Response:
            body = await body_of(request)
            by = body.pop("updated_by", None)
            key = request.match_info["id"]
            return answer(
                lambda: dict(
                    emulator.store.update(entity_set, key, body, if_match=None, caller=emulator._user(by))
                )
            )

        return update

    def user_delete(entity_set: str) -> Handler:
        async def delete(request: web.Request) -> web.Response:
            key, by = request.match_info["id"], request.query.get("deleted_by")
            return answer(
                lambda: emulator.store.delete(entity_set, key, if_match=None, caller=emulator._user(by))
            )

        return delete

    async def user_cancel(request: web.Request) -> web.Response:
        body = await body_of(request)
        key, by = request.match_info["id"], body.get("updated_by")
        cancel = {"statecode": 2, "statuscode": 4}
        return answer(
            lambda: dict(
                emulator.store.update("appointments", key, cancel, if_match=None, caller=emulator._user(by))
            )
        )

    async def webhook(request: web.Request) -> web.Response:
        body = await body_of(request)
        url = body.get("url")
        emulator._sender.endpoint = Endpoint(str(url), dict(body.get("headers") or {})) if url else None
        return web.json_response({"url": url})

    async def deliveries(request: web.Request) -> web.Response:
        return web.json_response([d.__dict__ for d in emulator._sender.deliveries])

    p = ADMIN
    return [
        web.get(f"{p}/appointments", appointments),
        web.get(f"{p}/recurringappointmentmasters", masters),
        web.post(f"{p}/user/appointments", user_create(APPOINTMENTS)),
        web.patch(f"{p}/user/appointments/{{id}}", user_update(APPOINTMENTS)),
        web.post(f"{p}/user/appointments/{{id}}/cancel", user_cancel),
        web.post(f"{p}/user/recurringappointmentmasters", user_create(MASTERS)),
        web.patch(f"{p}/user/recurringappointmentmasters/{{id}}", user_update(MASTERS)),
        web.delete(f"{p}/user/recurringappointmentmasters/{{id}}", user_delete(MASTERS)),
        web.delete(f"{p}/user/appointments/{{id}}", user_delete(APPOINTMENTS)),
        web.post(f"{p}/webhook", webhook),
        web.get(f"{p}/webhook/deliveries", deliveries),
    ]
