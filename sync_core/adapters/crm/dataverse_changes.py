"""The Dataverse change feed: `Prefer: odata.track-changes` with `odata.maxpagesize`; the cursor is the
`@odata.nextLink` or the `@odata.deltaLink` of the appointments' feed and of the series'; an expired token
(0x80044352) restarts from a full read. I/O side."""

from __future__ import annotations

import logging
from typing import Any

from sync_core.adapters.crm.dataverse_directory import DataverseDirectory
from sync_core.adapters.crm.dataverse_errors import EXPIRED_VERSION_STAMP
from sync_core.adapters.crm.dataverse_http import ANNOTATIONS
from sync_core.adapters.crm.dataverse_series import Series
from sync_core.adapters.crm.dataverse_series_wire import feed_cursor, feed_links
from sync_core.adapters.crm.dataverse_wire import APPOINTMENT_COLUMNS, SIDE
from sync_core.errors import NotFoundError, UnprocessableError
from sync_core.ports.crm import ChangedPage

log = logging.getLogger(__name__)


class DataverseChanges(DataverseDirectory):
    """The change feed of DataverseConnector (which sets `_series`)."""

    _series: Series

    async def list_changed(self, cursor: str | None, *, limit: int = 100) -> ChangedPage:
        """One page of the appointments' change tracking: rows changed (with their parties, one more query
        per page) and `$deletedEntity` ids; once they are read up to now, a page of the series' (deleted
        series). The cursor holds both feeds' next or delta links; an expired delta token (7 days by default)
        starts that feed again with a full read."""
        if limit < 1:
            raise UnprocessableError(f"limit must be at least 1, got {limit}", side=SIDE)
        prefer = f"odata.track-changes,odata.maxpagesize={min(limit, 5000)},{ANNOTATIONS}"
        link, series_link = feed_links(cursor)
        try:
            data = await self._changes(link, prefer)
        except NotFoundError as exc:
            if link is None or EXPIRED_VERSION_STAMP not in str(exc):
                raise
            log.warning("Dataverse change-tracking token expired; reading every appointment again")
            data = await self._changes(None, prefer)
        rows: list[dict[str, Any]] = []
        deleted: list[str] = []
        for item in data.get("value") or []:
            if not isinstance(item, dict):
                continue
            if str(item.get("@odata.context") or "").endswith("$deletedEntity"):
                deleted.append(str(item.get("id")))
            else:
                rows.append(item)
        party_rows = await self._parties_of([str(r.get("activityid")) for r in rows])
        unreadable: list[str] = []
        records = await self._series.records(rows, party_rows, unreadable)
        next_link = self._own_link(data.get("@odata.nextLink"))
        delta_link = self._own_link(data.get("@odata.deltaLink"))
        new_cursor = next_link or delta_link
        if new_cursor is None:
            raise UnprocessableError(
                "Dataverse change page has neither a next link nor a delta link", side=SIDE
            )
        more = bool(next_link)
        if not more:
            series, gone, series_next, series_delta = await self._series.changes(
                series_link, prefer, unreadable
            )
            known = {r.crm_id.lower() for r in records}
            records += [r for r in series if r.crm_id.lower() not in known]
            deleted += gone
            series_link, more = series_next or series_delta or series_link, bool(series_next)
        return ChangedPage(
            records=tuple(records),
            deleted_ids=tuple(deleted),
            unreadable_ids=tuple(dict.fromkeys(unreadable)),  # a series may come from both feeds
            cursor=feed_cursor(new_cursor, series_link),
            more=more,
        )

    async def _changes(self, cursor: str | None, prefer: str) -> dict[str, Any]:
        if cursor:
            return await self._get_json(self._own_link(cursor) or "", item_id=None, prefer=prefer)
        return await self._get_json(
            "appointments", item_id=None, params={"$select": ",".join(APPOINTMENT_COLUMNS)}, prefer=prefer
        )
