"""calendarView and calendarView/delta: windows, paging links, delta tokens and `@removed` entries."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from devstack.graph_emulator import ids, recurrence
from devstack.graph_emulator.errors import GraphError
from devstack.graph_emulator.http import GraphRequest, GraphResponse
from devstack.graph_emulator.query import compile_filter
from devstack.graph_emulator.rendering import RenderContext, ext_values, render_event
from devstack.graph_emulator.service import GraphService
from devstack.graph_emulator.state import EventRecord, SeriesShape
from devstack.graph_emulator.timezones import format_instant, parse_instant

SYSTEM_OPTIONS = {
    "top",
    "skip",
    "filter",
    "select",
    "expand",
    "orderby",
    "skiptoken",
    "deltatoken",
    "count",
    "search",
}
# Query keys arrive lowercased (http.normalize_query); links are written with the documented names
# (api/user-list-calendarview.md, api/event-delta.md: startDateTime, endDateTime).
DOCUMENTED_NAMES = {"startdatetime": "startDateTime", "enddatetime": "endDateTime"}
MAX_WINDOW_DAYS = 1825
EVENT_TYPE = "#microsoft.graph.event"


def parse_window(req: GraphRequest) -> tuple[datetime, datetime]:
    start_text, end_text = req.param("startDateTime"), req.param("endDateTime")
    if not start_text or not end_text:
        raise GraphError(
            400,
            "ErrorInvalidParameter",
            "This request requires a time window specified by the query string parameters StartDateTime and "
            "EndDateTime.",
        )
    start, end = parse_instant(start_text), parse_instant(end_text)
    if end <= start:
        raise GraphError(400, "ErrorInvalidParameter", "EndDateTime must be later than StartDateTime.")
    if end - start > timedelta(days=MAX_WINDOW_DAYS):
        raise GraphError(
            400,
            "ErrorInvalidRequest",
            f"The time window is too large. Maximum number of days: {MAX_WINDOW_DAYS}",
        )
    return start, end


def page_size(req: GraphRequest, default: int) -> int:
    for raw in (req.param("$top"), req.prefer.get("odata.maxpagesize")):
        if raw:
            try:
                value = int(raw)
            except ValueError as exc:
                raise GraphError(400, "BadRequest", f"Invalid page size '{raw}'.") from exc
            if value < 1:
                raise GraphError(400, "BadRequest", f"Invalid page size '{raw}'.")
            return min(value, 1000)
    return default


def page_links(svc: GraphService, req: GraphRequest, overrides: dict[str, str], keep: bool = True) -> str:
    query: dict[str, str] = {}
    if keep:
        for key, value in req.query.items():
            query[f"${key}" if key in SYSTEM_OPTIONS else DOCUMENTED_NAMES.get(key, key)] = value
    query.update(overrides)
    path = req.path.removesuffix("()")
    return f"{svc.base_url}{path}?" + urlencode(query, quote_via=quote, safe="$'(),:")


def _encode(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(token: str) -> dict[str, Any]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise GraphError(400, "BadRequest", "The delta or skip token is not valid.") from exc
    if not isinstance(payload, dict):
        raise GraphError(400, "BadRequest", "The delta or skip token is not valid.")
    return payload


def _instances(
    record: EventRecord, shape: SeriesShape | None, start: datetime, end: datetime
) -> list[tuple[str, str | None, datetime, datetime]]:
    """(event id, occurrence key, start, end) of what `shape` puts in the window (calendarView semantics)."""
    if shape is None:
        return []
    if shape.recurrence is not None:
        return [
            (ids.occurrence_id(record.id, datetime.fromisoformat(key).date()), key, s, e)
            for key, s, e, _ in recurrence.instances(shape, start, end)
        ]
    if recurrence.overlaps(shape.start, shape.end, start, end):
        return [(record.id, None, shape.start, shape.end)]
    return []


def _render_instances(
    record: EventRecord, ctx: RenderContext, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    return [
        render_event(record, ctx, occurrence_key=key, occurrence_times=(s, e) if key else None)
        for _, key, s, e in _instances(record, record.shape(), start, end)
    ]


def _removed(event_id: str) -> dict[str, Any]:
    return {"@odata.type": EVENT_TYPE, "id": event_id, "@removed": {"reason": "deleted"}}


class CalendarViewApi:
    def __init__(self, svc: GraphService) -> None:
        self.svc = svc
        self.state = svc.state
        for prefix in ("/users/{user}/calendarView", "/users/{user}/calendar/calendarView"):
            svc.router.add("GET", prefix, self.view)
            svc.router.add("GET", prefix + "/delta", self.delta)
            svc.router.add("GET", prefix + "/delta()", self.delta)  # msgraph-sdk's function-call form

    async def view(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        mailbox = self.state.mailbox(params["user"])
        start, end = parse_window(req)
        ctx, headers = self.svc.render_context(req)
        matches = compile_filter(req.param("$filter"))
        with self.state.lock:
            values: list[dict[str, Any]] = []
            for record in self.state.events[mailbox.id].values():
                ext = ext_values(record)
                values.extend(ev for ev in _render_instances(record, ctx, start, end) if matches(ev, ext))
        values.sort(key=lambda ev: (ev["start"]["dateTime"], ev["id"]))
        top = page_size(req, default=10)
        skip = int(req.param("$skip") or 0)
        body: dict[str, Any] = {
            "@odata.context": f"{self.svc.base_url}/$metadata#users('{mailbox.id}')/calendarView"
        }
        if skip + top < len(values):
            body["@odata.nextLink"] = page_links(self.svc, req, {"$skip": str(skip + top), "$top": str(top)})
        body["value"] = values[skip : skip + top]
        return GraphResponse(200, body, headers)

    def _gone(self, req: GraphRequest, start: str | None, end: str | None) -> GraphError:
        location = f"{self.svc.base_url}{req.path.removesuffix('()')}?"
        if start and end:
            location += urlencode({"startDateTime": start, "endDateTime": end}, safe=":") + "&"
        return GraphError(
            410,
            "syncStateNotFound",
            "The sync state for this request was not found or has expired. "
            "Restart the sync without a delta token.",
            {"Location": location + "$deltatoken="},
        )

    async def delta(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        mailbox = self.state.mailbox(params["user"])
        ctx, headers = self.svc.render_context(req)
        ctx.expansion = RenderContext(base_url=ctx.base_url).expansion  # delta ignores $select/$expand
        size = page_size(req, default=10)
        if size != 10 or "odata.maxpagesize" in req.prefer:
            headers["Preference-Applied"] = ", ".join(
                filter(None, [headers.get("Preference-Applied"), f"odata.maxpagesize={size}"])
            )
        skiptoken, deltatoken = req.param("$skiptoken"), req.param("$deltatoken")
        with self.state.lock:
            epoch = self.state.delta_epoch[mailbox.id]
            if skiptoken:
                payload = _decode(skiptoken)
                pages = self.state.delta_pages.get(str(payload.get("p")))
                if pages is None or payload.get("g") != epoch:
                    raise self._gone(req, payload.get("s"), payload.get("e"))
                return self._page(req, headers, payload, pages, int(payload.get("o", 0)), size)
            if deltatoken:
                token = _decode(deltatoken)
                if token.get("m") != mailbox.id:
                    raise GraphError(400, "BadRequest", "The delta token belongs to another mailbox.")
                if token.get("g") != epoch:
                    raise self._gone(req, token.get("s"), token.get("e"))
                start, end, since = parse_instant(token["s"]), parse_instant(token["e"]), int(token["q"])
                items = self._changes(mailbox.id, ctx, start, end, since)
            else:
                start, end = parse_window(req)
                items = []
                for record in self.state.events[mailbox.id].values():
                    items.extend(
                        {"@odata.type": EVENT_TYPE, **ev} for ev in _render_instances(record, ctx, start, end)
                    )
                items.sort(key=lambda ev: (ev["start"]["dateTime"], ev["id"]))
            page_id = ids.opaque_token()
            self.state.delta_pages[page_id] = items
            payload = {
                "p": page_id,
                "m": mailbox.id,
                "s": format_instant(start),
                "e": format_instant(end),
                "q": self.state.seq,
                "g": epoch,
            }
            return self._page(req, headers, payload, items, 0, size)

    def _page(
        self,
        req: GraphRequest,
        headers: dict[str, str],
        payload: dict[str, Any],
        items: list[dict[str, Any]],
        offset: int,
        size: int,
    ) -> GraphResponse:
        body: dict[str, Any] = {"@odata.context": f"{self.svc.base_url}/$metadata#Collection(event)"}
        if offset + size < len(items):
            body["@odata.nextLink"] = page_links(
                self.svc, req, {"$skiptoken": _encode({**payload, "o": offset + size})}, keep=False
            )
        else:
            self.state.delta_pages.pop(str(payload["p"]), None)
            token = {k: v for k, v in payload.items() if k in ("m", "s", "e", "q", "g")}
            body["@odata.deltaLink"] = page_links(self.svc, req, {"$deltatoken": _encode(token)}, keep=False)
        body["value"] = items[offset : offset + size]
        return GraphResponse(200, body, headers)

    def _changes(
        self, mailbox_id: str, ctx: RenderContext, start: datetime, end: datetime, since: int
    ) -> list[dict[str, Any]]:
        """Everything that changed after sequence `since`, for a later delta round."""
        items: list[dict[str, Any]] = []
        removed: list[str] = []
        for record in self.state.events[mailbox_id].values():
            if record.changed_seq <= since:
                continue
            current = _instances(record, record.shape(), start, end)
            current_ids = {event_id for event_id, _, _, _ in current}
            items.extend(
                {"@odata.type": EVENT_TYPE, **ev} for ev in _render_instances(record, ctx, start, end)
            )
            old_ids = {
                event_id for event_id, _, _, _ in _instances(record, record.shape_at(since), start, end)
            }
            removed.extend(sorted(old_ids - current_ids))
            if not record.is_series and not current_ids and record.id not in old_ids:
                # Documented: changes to events outside the window also come back under @removed.
                removed.append(record.id)
        for tombstone in self.state.tombstones[mailbox_id]:
            if tombstone.seq <= since:
                continue
            record = tombstone.record
            gone = {event_id for event_id, _, _, _ in _instances(record, record.shape(), start, end)}
            gone |= {event_id for event_id, _, _, _ in _instances(record, record.shape_at(since), start, end)}
            removed.extend(sorted(gone) if record.is_series else [record.id])
        return [_removed(event_id) for event_id in dict.fromkeys(removed)] + items
