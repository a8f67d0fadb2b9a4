"""Graph's JSON read through the attribute names of msgraph-sdk's models, without building the models.

Pure, no I/O. msgraph-sdk parses a response into models through `get_field_deserializers`, which imports
hundreds of model modules and builds a closure per property on every call: about 5 ms of CPU per Event
(msgraph-sdk-python#584), the largest single cost of a change (issue 20, docs/benchmarks.md). The worker
reads an event by id on every change, so that read takes the response body through the SDK's request
adapter (auth, middleware, errors: all msgraph-sdk's) as bytes, and `JsonView` lets
`convert.event_to_graph_event` read it exactly as it reads an `Event`: `event.i_cal_u_id`,
`event.start.date_time`, `a.email_address.address`, enum values as their strings (`_enum_value` reads a
string as it reads an enum's `.value`), dates and date-times parsed as kiota parses them.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import Enum
from functools import cache
from typing import Any

from msgraph.generated.models.attendee_type import AttendeeType
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.day_of_week import DayOfWeek
from msgraph.generated.models.event_type import EventType
from msgraph.generated.models.free_busy_status import FreeBusyStatus
from msgraph.generated.models.recurrence_pattern_type import RecurrencePatternType
from msgraph.generated.models.recurrence_range_type import RecurrenceRangeType
from msgraph.generated.models.response_type import ResponseType
from msgraph.generated.models.sensitivity import Sensitivity
from msgraph.generated.models.week_index import WeekIndex

_SPECIAL = {
    "i_cal_u_id": "iCalUId",
    "odata_type": "@odata.type",
    "odata_next_link": "@odata.nextLink",
    "odata_delta_link": "@odata.deltaLink",
}
_DATETIMES = frozenset({"original_start", "last_modified_date_time", "created_date_time"})
_DATES = frozenset({"start_date", "end_date"})
_FRACTION = re.compile(r"\.(\d+)")
_ENUM_CLASSES: tuple[type[Enum], ...] = (
    AttendeeType,
    BodyType,
    DayOfWeek,
    EventType,
    FreeBusyStatus,
    RecurrencePatternType,
    RecurrenceRangeType,
    ResponseType,
    Sensitivity,
    WeekIndex,
)
# Enum properties of the models the conversion reads; kiota reads them by member name ("Required" and
# "required" alike), an unknown one as None. `content_type` is an enum on a body, a MIME type elsewhere.
_ENUMS = frozenset(
    {"type", "response", "sensitivity", "show_as", "days_of_week", "index", "first_day_of_week"}
)
_MEMBERS: dict[str, str] = {m.name: str(m.value) for cls in _ENUM_CLASSES for m in cls}


def enum_value(raw: str) -> str | None:
    """A JSON enum string as kiota's `get_enum_value` reads it, as the member's value; None if unknown."""
    if not raw:
        return None
    return _MEMBERS.get("None_" if raw.lower() == "none" else raw[0].upper() + raw[1:])


@cache
def json_name(attribute: str) -> str:
    """The JSON property of a model attribute: `is_all_day` -> `isAllDay`."""
    special = _SPECIAL.get(attribute)
    if special is not None:
        return special
    head, *rest = attribute.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def parse_datetime(value: str) -> datetime:
    """An ISO 8601 date-time as Graph writes it (`Z`, up to seven fractional digits), timezone-aware."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    return datetime.fromisoformat(text)


def _wrap(name: str, value: Any) -> Any:
    if isinstance(value, dict):
        return JsonView(value)
    if isinstance(value, list):
        items = [_wrap(name, v) for v in value]
        return [v for v in items if v is not None] if name in _ENUMS else items
    if isinstance(value, str):
        if name in _ENUMS or (name == "content_type" and value.lower() in ("text", "html")):
            return enum_value(value)
        if name in _DATETIMES:
            return parse_datetime(value)
        if name in _DATES:
            return date.fromisoformat(value[:10])
    return value


class JsonView:
    """A JSON object read as a msgraph model: a missing property is None, as on a model."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _wrap(name, self._data.get(json_name(name)))
