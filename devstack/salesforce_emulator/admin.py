"""The Salesforce emulator's own routes under `/_emulator/` (not Salesforce's API), offered over curl by
`make run`: a CRM user's edit of an Event, and the outbound message's endpoint and deliveries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from devstack.salesforce_emulator.store import ApiError

if TYPE_CHECKING:
    from devstack.salesforce_emulator.emulator import SalesforceEmulator

PREFIX = "/_emulator"


def admin_routes(emulator: SalesforceEmulator) -> list[web.RouteDef]:
    """Handlers run on the emulator's loop, where the store lives: they call the store directly."""

    async def events(_: web.Request) -> web.Response:
        rows = [dict(r) for r in emulator.store.objects["Event"].values() if not r.get("IsDeleted")]
        return web.json_response(rows)

    async def user_update(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json() if request.can_read_body else {}
        by = body.pop("updated_by", None)
        try:
            row = emulator.store.update("Event", request.match_info["id"], body, caller=emulator._user(by))
        except ApiError as exc:
            return web.json_response(exc.body(), status=exc.status)
        return web.json_response(dict(row))

    async def user_delete(request: web.Request) -> web.Response:
        try:
            emulator.store.delete("Event", request.match_info["id"], caller=emulator._user(None))
        except ApiError as exc:
            return web.json_response(exc.body(), status=exc.status)
        return web.Response(status=204)

    async def register(request: web.Request) -> web.Response:
        body = await request.json()
        emulator.outbound.endpoint = body.get("url") or None
        return web.json_response({"url": emulator.outbound.endpoint})

    async def deliveries(_: web.Request) -> web.Response:
        return web.json_response([d.__dict__ for d in emulator.outbound.deliveries])

    return [
        web.get(f"{PREFIX}/events", events),
        web.patch(f"{PREFIX}/user/events/{{id}}", user_update),
        web.delete(f"{PREFIX}/user/events/{{id}}", user_delete),
        web.post(f"{PREFIX}/outbound", register),
        web.get(f"{PREFIX}/outbound/deliveries", deliveries),
    ]
