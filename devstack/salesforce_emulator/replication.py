"""The Salesforce emulator's replication windows: `sobjects/<object>/updated/` and `deleted/` ("Get Updated
Records", "Get Deleted Records"; the seconds of start and end ignored), over the Store.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from devstack.salesforce_emulator.soql import parse_wire_time
from devstack.salesforce_emulator.store import ApiError, Store, wire

UPDATED_DAYS, DELETED_DAYS = 30, 15


def window(store: Store, now: datetime, query: Mapping[str, str], obj: str, kind: str) -> web.StreamResponse:
    """The answer to `sobjects/<obj>/updated/` or `deleted/` (`kind`): the records changed in the window."""
    try:
        start = parse_wire_time(query["start"]).replace(second=0, microsecond=0)
        end = parse_wire_time(query["end"]).replace(second=0, microsecond=0)
    except (KeyError, ValueError) as exc:
        raise ApiError(400, "INVALID_REPLICATION_DATE", "start and end must be dateTimes") from exc
    now = now.replace(second=0, microsecond=0)
    days = UPDATED_DAYS if kind == "updated" else DELETED_DAYS
    if end <= start:
        raise ApiError(400, "INVALID_REPLICATION_DATE", "startDate must chronologically precede endDate")
    if start < now - timedelta(days=days):
        raise ApiError(400, "INVALID_REPLICATION_DATE", f"startDate cannot be more than {days} days ago")
    covered = min(end, now)
    rows = store.objects[obj].values()

    def stamp(row: dict[str, Any]) -> datetime:
        return parse_wire_time(str(row["SystemModstamp"]))

    if kind == "updated":
        ids = [r["Id"] for r in rows if not r.get("IsDeleted") and start <= stamp(r) < covered]
        return web.json_response({"ids": ids, "latestDateCovered": wire(covered)})
    deleted = [
        {"id": r["Id"], "deletedDate": r["SystemModstamp"]}
        for r in rows
        if r.get("IsDeleted") and start <= stamp(r) < covered
    ]
    earliest = now - timedelta(days=DELETED_DAYS)
    return web.json_response(
        {
            "deletedRecords": deleted,
            "earliestDateAvailable": wire(earliest),
            "latestDateCovered": wire(covered),
        }
    )
