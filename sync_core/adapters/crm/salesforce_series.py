"""Event series rows for SalesforceConnector: the series record and its occurrence rows, exceptions as edited
occurrence rows, cancelled occurrences as deleted ones (docs/connectors/salesforce.md, "Event series").
I/O side, through the connector's request layer (salesforce_http)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sync_core.adapters.crm.salesforce_http import SalesforceHttp
from sync_core.adapters.crm.salesforce_wire import (
    EXTERNAL_REF,
    SIDE,
    SYNC_DATA,
    parse_time,
    soql_string,
    soql_time,
)
from sync_core.domain.model import utc
from sync_core.errors import UnprocessableError

OCCURRENCE_FIELDS = (
    "Id",
    "StartDateTime",
    "IsDeleted",
    "IsRecurrence2Exception",
    "CreatedDate",
    "SystemModstamp",
    "ActivityRecurrence2Id",
    "GroupEventType",
    SYNC_DATA,
)


def is_series_row(row: Mapping[str, Any]) -> bool:
    return bool(row.get("IsRecurrence2")) and str(row.get("GroupEventType")) == "3"


def _kept(row: Mapping[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(row.get(SYNC_DATA) or "{}")
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def original_start(row: Mapping[str, Any]) -> datetime | None:
    """The original start of an occurrence row we made an exception (kept in its sidecar)."""
    kept = _kept(row)
    return parse_time(kept.get("original_start")) if kept.get("series_ref") else None


def is_plain_occurrence(row: Mapping[str, Any]) -> bool:
    """An occurrence row that is only the series' materialization (not the series, not our exception):
    never a record of its own. Salesforce copies the series' fields to it, our keys included."""
    return bool(row.get("ActivityRecurrence2Id")) and not is_series_row(row) and original_start(row) is None


async def occurrence_rows(api: SalesforceHttp, series_key: str, item_id: str) -> list[dict[str, Any]]:
    """Every occurrence row of a series, deleted ones included (/queryAll)."""
    soql = (
        f"SELECT {', '.join(OCCURRENCE_FIELDS)} FROM Event WHERE ActivityRecurrence2Id = "
        f"{soql_string(series_key)} AND GroupEventType != '3'"
    )
    return await api._query(soql, deleted=True, item_id=item_id)


def _start_of(row: Mapping[str, Any]) -> datetime | None:
    return original_start(row) or parse_time(row.get("StartDateTime"))


async def cancelled(api: SalesforceHttp, series: Mapping[str, Any]) -> tuple[datetime, ...]:
    """The series' cancelled occurrences: occurrence rows deleted since the current ones were made, and
    what the sidecar kept (the Recycle Bin empties), less every occurrence that has a live row."""
    rows = await occurrence_rows(api, str(series.get("ActivityRecurrence2Id") or ""), str(series["Id"]))
    alive = [r for r in rows if not r.get("IsDeleted")]
    made = min((t for r in alive if (t := parse_time(r.get("CreatedDate"))) is not None), default=None)
    seen = {s for r in alive if (s := _start_of(r)) is not None}
    gone = {  # deleted after the live rows were made: rows a recreation replaced went before them
        s
        for r in rows
        if r.get("IsDeleted") and made is not None and (parse_time(r.get("SystemModstamp")) or made) > made
        if (s := _start_of(r)) is not None
    }
    kept = {utc(datetime.fromisoformat(x)) for x in _kept(series).get("cancelled_occurrences") or ()}
    return tuple(sorted((gone | kept) - seen))


async def cancel(api: SalesforceHttp, series: Mapping[str, Any], starts: Iterable[datetime]) -> None:
    """Delete the occurrence rows of `starts` that still stand (one beyond the materialized rows has
    none: the series' sidecar keeps it)."""
    wanted = set(starts)
    if not wanted:
        return
    rows = await occurrence_rows(api, str(series.get("ActivityRecurrence2Id") or ""), str(series["Id"]))
    for row in rows:
        if not row.get("IsDeleted") and _start_of(row) in wanted:
            await api._send("DELETE", f"sobjects/Event/{row['Id']}", item_id=str(row["Id"]))


async def occurrence_for(api: SalesforceHttp, series_ref: str, start: datetime, *, item_id: str) -> str:
    """The Id of the occurrence row an exception of series `series_ref` at original `start` is written to."""
    soql = (
        f"SELECT Id, ActivityRecurrence2Id, {EXTERNAL_REF} FROM Event WHERE {EXTERNAL_REF} = "
        f"{soql_string(series_ref)} AND IsRecurrence2 = true AND GroupEventType = '3' "
        "ORDER BY CreatedDate ASC"
    )
    series = [r for r in await api._query(soql, item_id=item_id) if r.get(EXTERNAL_REF) == series_ref]
    if not series:
        raise UnprocessableError(
            f"Salesforce event series: no series holds meeting key {series_ref!r} (not synced yet)",
            side=SIDE,
            item_id=item_id,
        )
    rows = await occurrence_rows(api, str(series[0].get("ActivityRecurrence2Id") or ""), item_id)
    for row in rows:
        if not row.get("IsDeleted") and is_plain_occurrence(row) and _start_of(row) == start:
            return str(row["Id"])
    raise UnprocessableError(
        f"Salesforce event series: no occurrence row of {series_ref!r} starts at {soql_time(start)} "
        "(cancelled, already changed, or past the occurrences Salesforce keeps as rows)",
        side=SIDE,
        item_id=item_id,
    )
