"""The Salesforce change feed: a keyset over (SystemModstamp, Id) through `/queryAll`, so deleted rows
(IsDeleted = true, in the Recycle Bin for 15 days) arrive in the same pages as changed ones. A cursor older
than that may have lost deletions: the feed starts again from a full read. I/O side."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sync_core.adapters.crm import salesforce_series as series
from sync_core.adapters.crm.salesforce_records import SalesforceRecords
from sync_core.adapters.crm.salesforce_wire import SIDE, cancelled_by_us, parse_time, soql_string, soql_time
from sync_core.errors import UnprocessableError
from sync_core.ports.crm import ChangedPage

log = logging.getLogger(__name__)

DELETED_VISIBLE = timedelta(days=15)  # Recycle Bin / getDeleted window


class SalesforceChanges(SalesforceRecords):
    """The change feed of SalesforceConnector (which sets `_now`, the wall clock that dates the cursor)."""

    _now: Callable[[], datetime]

    async def list_changed(self, cursor: str | None, *, limit: int = 100) -> ChangedPage:
        """One page of events changed or deleted after the cursor, oldest SystemModstamp first, through
        `/queryAll` (deleted rows carry IsDeleted = true). The cursor is the last (SystemModstamp, Id) read
        and when it was made; a cursor older than the 15 days deleted rows stay visible starts a full read."""
        if limit < 1:
            raise UnprocessableError(f"limit must be at least 1, got {limit}", side=SIDE)
        position = _read_cursor(cursor)
        now = self._now()
        if position is not None and now - position[2] > DELETED_VISIBLE:
            log.warning("Salesforce change cursor older than %s: reading every event again", DELETED_VISIBLE)
            position = None
        where = ""
        if position is not None:
            stamp, last_id = soql_time(position[0]), soql_string(position[1])
            where = f" WHERE (SystemModstamp > {stamp} OR (SystemModstamp = {stamp} AND Id > {last_id}))"
        soql = f"{self._select()}{where} ORDER BY SystemModstamp ASC, Id ASC LIMIT {min(limit, 2000) + 1}"
        rows = await self._query(soql, deleted=True)
        more = len(rows) > limit
        rows = rows[:limit]
        # An occurrence row changed or deleted is news of its series (a cancelled occurrence), read whole
        plain = [r for r in rows if series.is_plain_occurrence(r)]
        own = [r for r in rows if not series.is_plain_occurrence(r)]
        live = [r for r in own if not r.get("IsDeleted") or cancelled_by_us(r)]  # ours read as cancelled
        keys = {str(r["ActivityRecurrence2Id"]) for r in plain} - {
            str(r.get("ActivityRecurrence2Id")) for r in live if series.is_series_row(r)
        }
        for key in sorted(keys):
            where = f"ActivityRecurrence2Id = {soql_string(key)} AND GroupEventType = '3'"
            live += await self._query(f"{self._select()} WHERE {where}")
        deleted = tuple(
            str(r["Id"])
            for r in own
            if r.get("IsDeleted") and not cancelled_by_us(r) and position is not None
        )
        unreadable: list[str] = []
        records = await self._records(live, unreadable)
        if rows:
            last = rows[-1]
            stamp_at = parse_time(last.get("SystemModstamp")) or now
            new_cursor = _write_cursor(stamp_at, str(last["Id"]), now)
        elif position is not None:
            new_cursor = _write_cursor(position[0], position[1], now)
        else:
            new_cursor = _write_cursor(datetime(1970, 1, 1, tzinfo=UTC), "", now)
        return ChangedPage(
            records=tuple(records),
            deleted_ids=deleted,
            unreadable_ids=tuple(unreadable),
            cursor=new_cursor,
            more=more,
        )


def _write_cursor(stamp: datetime, last_id: str, made: datetime) -> str:
    data = {"v": 1, "t": soql_time(stamp), "id": last_id, "at": soql_time(made)}
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def _read_cursor(cursor: str | None) -> tuple[datetime, str, datetime] | None:
    if not cursor:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        stamp, made = parse_time(data["t"]), parse_time(data["at"])
        if data.get("v") != 1 or stamp is None or made is None:
            raise ValueError("unknown cursor version")
        return stamp, str(data["id"]), made
    except (ValueError, KeyError, TypeError) as exc:
        raise UnprocessableError(f"not a Salesforce change cursor: {cursor[:80]!r}", side=SIDE) from exc
