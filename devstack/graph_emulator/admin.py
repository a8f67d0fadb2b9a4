"""The /_emulator/ control surface: mailboxes, reset, logs, faults, clock, lifecycle and delta triggers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from devstack.graph_emulator.notifier import LIFECYCLE_EVENTS
from devstack.graph_emulator.timezones import format_instant, parse_instant

if TYPE_CHECKING:
    from devstack.graph_emulator.emulator import GraphEmulator


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data, default=str), content_type="application/json")


def _problem(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"invalid JSON: {exc}"})) from exc
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "expected a JSON object"}))
    return data


def admin_routes(emu: GraphEmulator) -> list[web.RouteDef]:
    """Routes for the emulator's admin API; each is the HTTP twin of a GraphEmulator method."""

    async def health(_: web.Request) -> web.Response:
        return _json({"status": "ok", "base_url": emu.base_url})

    async def add_mailbox(request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            mailbox = emu.add_mailbox(
                body["id"],
                body["mail"],
                body.get("display_name") or body.get("displayName") or body["mail"],
                kind=body.get("kind", "user"),
                room_mode=body.get("room_mode"),
                time_zone=body.get("time_zone", "UTC"),
            )
        except KeyError as exc:
            return _problem(400, f"missing field {exc}")
        except ValueError as exc:
            return _problem(400, str(exc))
        return _json(mailbox, 201)

    async def list_mailboxes(_: web.Request) -> web.Response:
        return _json(emu.mailboxes)

    async def reset(request: web.Request) -> web.Response:
        body = await _body(request)
        emu.reset(keep_mailboxes=bool(body.get("keep_mailboxes", False)))
        return _json({"status": "reset"})

    async def requests(request: web.Request) -> web.Response:
        return _json(emu.requests)

    async def clear_requests(_: web.Request) -> web.Response:
        emu.clear_requests()
        return web.Response(status=204)

    async def notifications(_: web.Request) -> web.Response:
        return _json(emu.notifications_sent)

    async def set_faults(request: web.Request) -> web.Response:
        body = await _body(request)
        mailbox = body.pop("mailbox", None)
        seed = body.pop("seed", None)
        try:
            emu.set_faults(mailbox=mailbox, seed=seed, **body)
        except (TypeError, ValueError) as exc:
            return _problem(400, str(exc))
        return _json(emu.faults.snapshot())

    async def get_faults(_: web.Request) -> web.Response:
        return _json(emu.faults.snapshot())

    async def clear_faults(request: web.Request) -> web.Response:
        mailbox = request.query.get("mailbox")
        emu.clear_faults(mailbox)
        return web.Response(status=204)

    async def clock(request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await _body(request)
            if "advance_seconds" in body:
                emu.advance_clock(float(body["advance_seconds"]))
            elif "set" in body:
                emu.clock.set(parse_instant(str(body["set"])))
                emu.notifier.purge_expired()
            else:
                return _problem(400, "send advance_seconds or set")
        return _json({"now": format_instant(emu.clock.now())})

    async def subscriptions(_: web.Request) -> web.Response:
        return _json(emu.subscriptions)

    async def lifecycle(request: web.Request) -> web.Response:
        body = await _body(request)
        event = body.get("event") or body.get("lifecycleEvent")
        if event not in LIFECYCLE_EVENTS:
            return _problem(400, f"event must be one of {LIFECYCLE_EVENTS}")
        try:
            sent = emu.send_lifecycle_notification(request.match_info["sub"], event)
        except KeyError:
            return _problem(404, "no such subscription")
        return _json({"sent": sent})

    async def invalidate_delta(request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            emu.invalidate_delta_tokens(body.get("mailbox"))
        except KeyError:
            return _problem(404, "no such mailbox")
        return _json({"status": "invalidated"})

    async def mail(_: web.Request) -> web.Response:
        return _json(emu.sent_mail)

    async def concurrency(_: web.Request) -> web.Response:
        return _json(emu.max_concurrency_seen)

    async def reset_concurrency(_: web.Request) -> web.Response:
        emu.reset_concurrency()
        return web.Response(status=204)

    async def events(request: web.Request) -> web.Response:
        try:
            return _json(emu.dump_events(request.query.get("mailbox")))
        except KeyError:
            return _problem(404, "no such mailbox")

    return [
        web.get("/_emulator/health", health),
        web.post("/_emulator/mailboxes", add_mailbox),
        web.get("/_emulator/mailboxes", list_mailboxes),
        web.post("/_emulator/reset", reset),
        web.get("/_emulator/requests", requests),
        web.delete("/_emulator/requests", clear_requests),
        web.get("/_emulator/notifications", notifications),
        web.post("/_emulator/faults", set_faults),
        web.get("/_emulator/faults", get_faults),
        web.delete("/_emulator/faults", clear_faults),
        web.get("/_emulator/clock", clock),
        web.post("/_emulator/clock", clock),
        web.get("/_emulator/subscriptions", subscriptions),
        web.post("/_emulator/subscriptions/{sub}/lifecycle", lifecycle),
        web.post("/_emulator/delta/invalidate", invalidate_delta),
        web.get("/_emulator/mail", mail),
        web.get("/_emulator/concurrency", concurrency),
        web.delete("/_emulator/concurrency", reset_concurrency),
        web.get("/_emulator/events", events),
    ]
