"""Event resources' JSON: an event or occurrence as Graph renders it for one request (its `$select`,
`$expand`, time zone and body type), bodies as HTML or text, and the extended properties' values.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

from devstack.graph_emulator import ids
from devstack.graph_emulator.events import original_times
from devstack.graph_emulator.query import Expansion
from devstack.graph_emulator.state import EventRecord
from devstack.graph_emulator.timezones import format_instant, format_local

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


@dataclass
class RenderContext:
    """How to shape event JSON for one request."""

    base_url: str
    tz: str = "UTC"
    expansion: Expansion = field(default_factory=Expansion)
    # `Prefer: outlook.body-content-type`; without it Graph answers with HTML bodies (api/event-get.md).
    body_type: str = "html"


class _HtmlText(HTMLParser):
    """The text of an HTML body: head, style and script dropped, line breaks where blocks break."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("head", "style", "script", "title"):
            self._hidden += 1
        elif tag in ("br", "p", "div", "li", "tr"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "style", "script", "title"):
            self._hidden = max(0, self._hidden - 1)

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data.replace("\r", "").replace("\n", " "))


def html_to_text(content: str) -> str:
    """An HTML body as text, for `Prefer: outlook.body-content-type="text"`."""
    parser = _HtmlText()
    parser.feed(content)
    parser.close()
    lines = "".join(parser.parts).replace("\xa0", " ").split("\n")
    return "\n".join(_SPACE.sub(" ", line).strip() for line in lines).strip()


def text_to_html(content: str) -> str:
    """A text body as Exchange serves it in HTML: escaped, line breaks as <br>, in an HTML document."""
    if not content:
        return ""
    escaped = html.escape(content, quote=False).replace("\r\n", "\n").replace("\n", "<br>")
    return (
        '<html>\r\n<head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\r\n'
        f"</head>\r\n<body>\r\n{escaped}\r\n</body>\r\n</html>\r\n"
    )


def render_body(body: dict[str, Any], wanted: str) -> dict[str, str]:
    """The stored body in the format the request asked for (HTML unless `outlook.body-content-type`)."""
    content = str(body.get("content") or "")
    if body.get("contentType") == wanted:
        return {"contentType": wanted, "content": content}
    converted = text_to_html(content) if wanted == "html" else html_to_text(content)
    return {"contentType": wanted, "content": converted}


def body_preview(body: dict[str, Any]) -> str:
    content = body.get("content") or ""
    if body.get("contentType") == "html":
        content = html.unescape(_TAG.sub(" ", content))
    return _SPACE.sub(" ", content).strip()[:255]


def _when(instant: datetime, original_tz: str, ctx: RenderContext, all_day: bool) -> dict[str, str]:
    if all_day:
        # Outlook keeps all-day events on their calendar day whatever zone the caller asks for.
        local = format_local(instant, original_tz)
        return {"dateTime": local["dateTime"], "timeZone": ctx.tz}
    return format_local(instant, ctx.tz)


def render_event(
    record: EventRecord,
    ctx: RenderContext,
    *,
    occurrence_key: str | None = None,
    occurrence_times: tuple[datetime, datetime] | None = None,
) -> dict[str, Any]:
    """The event's Graph JSON; with `occurrence_key`, one occurrence or exception of the series."""
    exception = record.exceptions.get(occurrence_key) if occurrence_key else None
    fields = {**record.fields, **(exception.fields if exception else {})}
    start, end = occurrence_times or (record.start, record.end)
    change_key = exception.change_key if exception else record.change_key
    event_id = record.id
    event_type = "seriesMaster" if record.is_series else "singleInstance"
    ical_uid = record.ical_uid
    response_status = record.response_status
    last_modified = record.last_modified
    if occurrence_key is not None:
        day = date.fromisoformat(occurrence_key)
        event_id = ids.occurrence_id(record.id, day)
        event_type = "exception" if exception else "occurrence"
        ical_uid = ids.occurrence_ical_uid(record.ical_uid, day)
        if exception:
            response_status = exception.response_status or response_status
            last_modified = exception.last_modified
    all_day = bool(fields.get("isAllDay"))
    out: dict[str, Any] = {
        "@odata.etag": ids.etag(change_key),
        "id": event_id,
        "createdDateTime": format_instant(record.created),
        "lastModifiedDateTime": format_instant(last_modified),
        "changeKey": change_key,
        "categories": list(fields["categories"]),
    }
    if record.transaction_id is not None and occurrence_key is None:
        out["transactionId"] = record.transaction_id
    out.update(
        {
            "originalStartTimeZone": record.start_tz,
            "originalEndTimeZone": record.end_tz,
            "iCalUId": ical_uid,
            "reminderMinutesBeforeStart": fields["reminderMinutesBeforeStart"],
            "isReminderOn": fields["isReminderOn"],
            "hasAttachments": bool(record.attachments),
            "hideAttendees": fields["hideAttendees"],
            "subject": fields["subject"],
            "bodyPreview": body_preview(fields["body"]),
            "importance": fields["importance"],
            "sensitivity": fields["sensitivity"],
            "isAllDay": all_day,
            "isCancelled": record.is_cancelled,
            "isDraft": fields["isDraft"],
            "isOrganizer": record.is_organizer,
            "responseRequested": fields["responseRequested"],
            "seriesMasterId": record.id if occurrence_key is not None else None,
            "showAs": fields["showAs"],
            "type": event_type,
            "webLink": "https://outlook.office365.com/owa/?itemid="
            + quote(event_id, safe="")
            + "&exvsurl=1&path=/calendar/item",
            "onlineMeetingUrl": None,
            "isOnlineMeeting": fields["isOnlineMeeting"],
            "onlineMeetingProvider": fields["onlineMeetingProvider"],
            "allowNewTimeProposals": fields["allowNewTimeProposals"],
            "responseStatus": dict(response_status),
            "body": render_body(fields["body"], ctx.body_type),
            "start": _when(start, record.start_tz, ctx, all_day),
            "end": _when(end, record.end_tz, ctx, all_day),
            "location": dict(fields["location"]),
            "locations": [dict(loc) for loc in fields["locations"]],
            "recurrence": fields["recurrence"] if occurrence_key is None else None,
            "attendees": [dict(a, status=dict(a["status"])) for a in fields["attendees"]],
            "organizer": record.organizer,
            "onlineMeeting": fields["onlineMeeting"],
        }
    )
    if occurrence_key is not None:
        out["originalStart"] = format_instant(original_times(record, occurrence_key)[0])
    _render_expansion(out, record, ctx, occurrence_key)
    return out


def _render_expansion(out: dict[str, Any], record: EventRecord, ctx: RenderContext, key: str | None) -> None:
    expansion = ctx.expansion
    if expansion.want_single_ext:
        wanted = {i.lower() for i in expansion.single_ext} if expansion.single_ext is not None else None
        out["singleValueExtendedProperties"] = [
            {"id": prop_id, "value": value}
            for lowered, (prop_id, value) in record.single_ext.items()
            if wanted is None or lowered in wanted
        ]
    if expansion.want_multi_ext:
        wanted = {i.lower() for i in expansion.multi_ext} if expansion.multi_ext is not None else None
        out["multiValueExtendedProperties"] = [
            {"id": prop_id, "value": list(values)}
            for lowered, (prop_id, values) in record.multi_ext.items()
            if wanted is None or lowered in wanted
        ]
    if expansion.occurrences_info and record.is_series and key is None:
        out["cancelledOccurrences"] = [f"OID.{record.id}.{k}" for k in sorted(record.cancelled)]
        plain = RenderContext(base_url=ctx.base_url, tz=ctx.tz, body_type=ctx.body_type)
        out["exceptionOccurrences"] = [
            render_event(record, plain, occurrence_key=k, occurrence_times=(exc.start, exc.end))
            for k, exc in sorted(record.exceptions.items())
            if k not in record.cancelled
        ]


def ext_values(record: EventRecord) -> dict[str, str]:
    return {lowered: value for lowered, (_, value) in record.single_ext.items()}
