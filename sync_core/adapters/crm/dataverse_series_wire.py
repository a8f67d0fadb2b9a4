"""The Web API rows of Dataverse's recurring series, no I/O: the recurringappointmentmaster we write, the
series' version, how an instance row is read, and the change-feed cursor of both tables.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sync_core.adapters.crm.dataverse_recurrence import PATTERN_COLUMNS, to_columns
from sync_core.adapters.crm.dataverse_status import CANCELED
from sync_core.adapters.crm.dataverse_wire import (
    EXTERNAL_REF,
    SIDE,
    STATE_COLUMNS,
    SYNC_DATA,
    as_guid,
    columns,
    parse_time,
    refuse_unholdable,
    wire_time,
)
from sync_core.domain.model import Appointment, Recurrence
from sync_core.errors import UnprocessableError

MASTERS = "recurringappointmentmasters"
NAV = "recurringappointmentmaster_activity_parties"
INSTANCE, EXCEPTION = 2, 3  # appointment.instancetypecode
MASTER_COLUMNS = (
    "activityid",
    "subject",
    "description",
    "location",
    "isalldayevent",
    "ismapiprivate",
    *STATE_COLUMNS,
    "starttime",
    "endtime",
    "duration",
    *PATTERN_COLUMNS,
)
INSTANCE_COLUMNS = "activityid,originalstartdate,statecode,instancetypecode,seriesid," + EXTERNAL_REF


def master_body(appt: Appointment, external_ref: str | None, *, item_id: str | None) -> dict[str, Any]:
    """Every column of the series row for `appt` (not its state, not its parties), or UnprocessableError."""
    refuse_unholdable(appt, item_id=item_id, series=True)
    assert appt.recurrence is not None
    row = columns(appt, external_ref)
    del row["scheduledstart"], row["scheduledend"]  # read-only on a series: Dataverse derives them
    row |= to_columns(appt.recurrence, item_id=item_id)
    minutes = int((appt.end - appt.start).total_seconds() // 60)
    return row | {"starttime": wire_time(appt.start), "endtime": wire_time(appt.end), "duration": minutes}


def kept_recurrence(row: Mapping[str, Any]) -> Recurrence | None:
    try:
        data = json.loads(row.get(SYNC_DATA) or "{}")
        return Recurrence.model_validate(data["recurrence"]) if data.get("recurrence") else None
    except (ValueError, TypeError, KeyError):
        return None


def original_start(row: Mapping[str, Any]) -> datetime | None:
    return parse_time(row.get("originalstartdate"))


def series_version(row: Mapping[str, Any], cancelled: Iterable[datetime]) -> str:
    """The series row's ETag and a digest of its cancelled instances."""
    stamps = ",".join(sorted(wire_time(c) for c in cancelled))
    return f"{row.get('@odata.etag') or ''}|{hashlib.sha256(stamps.encode()).hexdigest()[:12]}"


FEEDS = "dataverse-feeds:"  # a cursor of both change feeds: appointments and series


def feed_links(cursor: str | None) -> tuple[str | None, str | None]:
    """The appointments' and the series' links of a cursor; a bare link (an older cursor) is the
    appointments' alone."""
    if not cursor or not cursor.startswith(FEEDS):
        return cursor, None
    try:
        data = json.loads(cursor[len(FEEDS) :])
        return data.get("appointments"), data.get("series")
    except (ValueError, AttributeError) as exc:
        raise UnprocessableError(f"not a Dataverse cursor: {cursor[:200]}", side=SIDE) from exc


def feed_cursor(appointments: str, series: str | None) -> str:
    return FEEDS + json.dumps({"appointments": appointments, "series": series}, separators=(",", ":"))


def series_of(row: Mapping[str, Any]) -> str | None:
    """The series id of an instance or exception row; None for any other appointment."""
    if int(row.get("instancetypecode") or 0) not in (INSTANCE, EXCEPTION):
        return None
    return as_guid(str(row.get("seriesid") or ""))


def stands_for_series(row: Mapping[str, Any]) -> bool:
    """An instance row read as its series: neither an exception we wrote (our meeting key on it) nor one a
    Dataverse user edited; a cancelled instance is a cancelled occurrence of the series."""
    edited = int(row.get("instancetypecode") or 0) == EXCEPTION and int(row.get("statecode") or 0) != CANCELED
    return not (row.get(EXTERNAL_REF) or edited)
