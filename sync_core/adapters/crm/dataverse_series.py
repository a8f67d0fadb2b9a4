"""Recurring series for DataverseConnector, I/O side through its requests: a series is a
recurringappointmentmaster, an edited occurrence its instance row, a cancelled occurrence a cancelled instance
(the rows: dataverse_series_wire; the pattern: dataverse_recurrence; the why: docs/connectors/dataverse.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from sync_core.adapters.crm.dataverse_directory import DataverseDirectory
from sync_core.adapters.crm.dataverse_errors import EXPIRED_VERSION_STAMP
from sync_core.adapters.crm.dataverse_recurrence import from_columns
from sync_core.adapters.crm.dataverse_series_wire import (
    INSTANCE_COLUMNS,
    MASTER_COLUMNS,
    MASTERS,
    NAV,
    kept_recurrence,
    master_body,
    original_start,
    series_of,
    series_version,
    stands_for_series,
)
from sync_core.adapters.crm.dataverse_status import CANCELED, CLOSED_STATES, FREE, OPEN, StatusMap, state_of
from sync_core.adapters.crm.dataverse_wire import (
    EXTERNAL_REF,
    PARTY_COLUMNS,
    SIDE,
    activity_id,
    as_guid,
    odata_string,
    parties,
    party_key,
    refuse_stale,
    same_column,
    wire_time,
)
from sync_core.domain.model import Appointment, CrmRecord, Status
from sync_core.errors import ConcurrencyError, NotFoundError, TransientError, UnprocessableError


class _Connector(Protocol):
    """What the series half uses of DataverseConnector beside its request layer: its status map and its
    reads and writes of appointment rows (a Protocol: the connector imports this module)."""

    statuses: StatusMap  # DATAVERSE_STATUS_MAP

    async def _records(
        self,
        rows: list[dict[str, Any]],
        party_rows: Mapping[str, list[dict[str, Any]]] | None = None,
        unreadable: list[str] | None = None,
    ) -> list[CrmRecord]: ...

    async def get_appointment(self, crm_id: str) -> CrmRecord | None: ...

    async def update_appointment(
        self, crm_id: str, appointment: Appointment, *, fields: Iterable[str], expected_version: str | None
    ) -> CrmRecord: ...


log = logging.getLogger(__name__)


class Series:
    """The series half of one DataverseConnector. Dataverse expands a series into appointment rows
    (instancetypecode 2, `seriesid`, `originalstartdate`); an instance updated becomes an exception (3)
    (create-recurring-appointment-series-instance-exception.md). So an instance that is no exception is read
    as its series, and the series' version covers its cancelled instances: a cancel made in Dataverse leaves
    the series row's ETag alone."""

    def __init__(self, conn: _Connector, http: DataverseDirectory) -> None:
        """`conn` the connector, `http` its request layer and directory (the same object)."""
        self.conn, self.http = conn, http

    # -- reads ----------------------------------------------------------------------------------------

    async def master_row(self, guid: str) -> dict[str, Any] | None:
        query = {"$select": ",".join(MASTER_COLUMNS), "$expand": f"{NAV}($select={','.join(PARTY_COLUMNS)})"}
        try:
            return await self.http._get_json(f"{MASTERS}({guid})", item_id=guid, params=query)
        except NotFoundError:
            return None

    async def instances(self, guid: str) -> list[dict[str, Any]]:
        """Every instance row of the series (instances and exceptions), in any order."""
        return await self.http._all(
            "appointments", {"$select": INSTANCE_COLUMNS, "$filter": f"seriesid eq {guid}"}
        )

    async def record(self, row: Mapping[str, Any]) -> CrmRecord:
        """The series as one record: its pattern, its content, the occurrences cancelled in Dataverse (a
        cancelled instance) and those we cancelled that no live instance contradicts."""
        guid = str(row["activityid"]).lower()
        as_row = dict(row) | {"scheduledstart": row.get("starttime"), "scheduledend": row.get("endtime")}
        base = (await self.conn._records([as_row], {guid: list(row.get(NAV) or [])}))[0]
        try:
            recurrence = from_columns(row, kept=kept_recurrence(row))
        except ValueError as exc:
            raise UnprocessableError(
                f"Dataverse series cannot be read: {exc}", side=SIDE, item_id=guid
            ) from exc
        rows = await self.instances(guid)
        native = {s for r in rows if int(r.get("statecode") or 0) == CANCELED and (s := original_start(r))}
        live = {
            s for r in rows if int(r.get("statecode") or 0) not in CLOSED_STATES and (s := original_start(r))
        }
        cancelled = tuple(sorted((set(base.appointment.cancelled_occurrences) - live) | native))
        appt = base.appointment.model_copy(
            update={"recurrence": recurrence, "cancelled_occurrences": cancelled, "series_ref": None}
        )
        return base.model_copy(update={"appointment": appt, "version": series_version(row, native)})

    async def get(self, guid: str) -> CrmRecord | None:
        row = await self.master_row(guid)
        return None if row is None else await self.record(row)

    async def of_instance(
        self, row: Mapping[str, Any], party_rows: Mapping[str, list[dict[str, Any]]] | None = None
    ) -> CrmRecord | None:
        """What an instance row stands for: an exception we wrote (our meeting key on it) or one a CRM user
        edited is an exception record of its series; any other instance (a plain or a cancelled one) is
        read as its series. None when the row is no instance."""
        series_id = series_of(row)
        if series_id is None:
            return None
        if not stands_for_series(row):
            record = (await self.conn._records([dict(row)], party_rows))[0]
            appt = record.appointment
            if appt.series_ref is None or appt.original_start is None:
                master = await self.master_row(series_id)
                series_key = (master or {}).get(EXTERNAL_REF) or f"crm:{series_id}"
                appt = appt.model_copy(
                    update={"series_ref": series_key, "original_start": original_start(row)}
                )
            return record.model_copy(update={"appointment": appt})
        master = await self.master_row(series_id)
        return None if master is None else await self.record(master)

    async def find(self, external_ref: str) -> CrmRecord | None:
        query = {
            "$select": ",".join(MASTER_COLUMNS),
            "$expand": f"{NAV}($select={','.join(PARTY_COLUMNS)})",
            "$filter": f"{EXTERNAL_REF} eq {odata_string(external_ref)}",
            "$orderby": "createdon asc",
        }
        data = await self.http._get_json(MASTERS, item_id=external_ref, params=query)
        rows = [
            r for r in data.get("value") or [] if isinstance(r, dict) and r.get(EXTERNAL_REF) == external_ref
        ]
        return await self.record(rows[0]) if rows else None

    async def records(
        self,
        rows: list[dict[str, Any]],
        party_rows: Mapping[str, list[dict[str, Any]]],
        unreadable: list[str],
    ) -> list[CrmRecord]:
        """The change feed's rows as records: an instance as its series (read once) or as an exception;
        the ids of those that cannot be read go to `unreadable`."""
        out = await self.conn._records([r for r in rows if series_of(r) is None], party_rows, unreadable)
        seen: set[str] = set()
        for row in rows:
            series_id = series_of(row)
            if series_id is None or (stands_for_series(row) and series_id in seen):
                continue
            if stands_for_series(row):
                seen.add(series_id)
            record = await self._unless_unreadable(self.of_instance(row, party_rows), series_id, unreadable)
            if record is not None:
                out.append(record)
        return out

    @staticmethod
    async def _unless_unreadable(
        read: Awaitable[CrmRecord | None], series_id: str, unreadable: list[str]
    ) -> CrmRecord | None:
        """A series the codec cannot read (a zone with no code we know) never stops the sweep: its id goes
        to `unreadable`, and the worker's read by id refuses it with the reason (a poison message)."""
        try:
            return await read
        except UnprocessableError as exc:
            log.warning("Dataverse change feed: series %s left to the worker: %s", series_id, exc)
            unreadable.append(series_id)
            return None

    async def changes(
        self, link: str | None, prefer: str, unreadable: list[str]
    ) -> tuple[list[CrmRecord], list[str], str | None, str | None]:
        """One page of the series' own change tracking (enabled on Recurring Appointment): the series
        changed, the ids of those deleted (a series deleted in Dataverse: its instances' ids name nothing we
        map), the next link and the delta link. Without change tracking on the table, nothing (logged): the
        instances still carry every change but a deletion."""
        try:
            data = await self._tracked(link, prefer)
        except NotFoundError as exc:
            if link is None or EXPIRED_VERSION_STAMP not in str(exc):
                raise
            log.warning("Dataverse change-tracking token of the series expired; reading every series again")
            data = await self._tracked(None, prefer)
        except UnprocessableError as exc:
            log.warning(
                "Dataverse series change tracking unavailable (%s); series deletions are not read", exc
            )
            return [], [], None, None
        rows, deleted = [], []
        for item in data.get("value") or []:
            if isinstance(item, dict) and str(item.get("@odata.context") or "").endswith("$deletedEntity"):
                deleted.append(str(item.get("id")))
            elif isinstance(item, dict):
                rows.append(item)
        parties_of = await self.http._parties_of([str(r.get("activityid")) for r in rows])
        records = []
        for r in rows:
            row = r | {NAV: parties_of.get(str(r.get("activityid")).lower(), [])}
            record = await self._unless_unreadable(self.record(row), str(r.get("activityid")), unreadable)
            records += [record] if record is not None else []
        next_link = self.http._own_link(data.get("@odata.nextLink"))
        return records, deleted, next_link, self.http._own_link(data.get("@odata.deltaLink"))

    async def _tracked(self, link: str | None, prefer: str) -> dict[str, Any]:
        if link:
            return await self.http._get_json(self.http._own_link(link) or "", item_id=None, prefer=prefer)
        params = {"$select": ",".join(MASTER_COLUMNS)}
        return await self.http._get_json(MASTERS, item_id=None, params=params, prefer=prefer)

    # -- writes ---------------------------------------------------------------------------------------

    async def _patch(self, guid: str, body: Mapping[str, Any], *, if_match: str | None = None) -> None:
        headers = {"If-Match": if_match} if if_match else {"If-None-Match": "*"}
        await self.http._request(
            "PATCH", f"{MASTERS}({guid})", item_id=guid, json_body=dict(body), headers=headers
        )

    async def create(self, appt: Appointment, *, idempotency_key: str, external_ref: str) -> CrmRecord:
        """Create once: the series' activityid from the idempotency key, `If-None-Match: *` (412: it exists,
        read it). Then its state, and the occurrences already cancelled."""
        guid = activity_id(idempotency_key)
        body = master_body(appt, external_ref, item_id=external_ref)
        body[NAV] = parties(appt, await self.http._directory(appt))
        state, status = state_of(appt.status, appt.show_as, self.conn.statuses)
        if state == OPEN:
            body["statuscode"] = status
        try:
            await self._patch(guid, body)
        except ConcurrencyError:
            existing = await self.get(guid)
            if existing is None:
                raise
            return existing
        if state != OPEN:
            await self._patch(guid, {"statecode": state, "statuscode": status}, if_match="*")
        await self._cancel_occurrences(guid, appt.cancelled_occurrences)
        return await self._read_back(guid)

    async def _read_back(self, guid: str) -> CrmRecord:
        record = await self.get(guid)
        if record is None:
            raise NotFoundError(
                f"recurringappointmentmaster With Id = {guid} Does Not Exist", side=SIDE, item_id=guid
            )
        return record

    async def _cancel_occurrences(self, guid: str, starts: Iterable[datetime]) -> None:
        """R3: each occurrence cancelled becomes a cancelled instance; one with no instance (past the
        expansion) stays in our sidecar only."""
        wanted = {s.astimezone(UTC) for s in starts}
        if not wanted:
            return
        for row in await self.instances(guid):
            start = original_start(row)
            if start in wanted and int(row.get("statecode") or 0) not in CLOSED_STATES:
                state, code = self.conn.statuses.cancelled
                body = {"statecode": state, "statuscode": code}
                await self.http._patch(str(row["activityid"]), body, if_match="*")

    async def update(
        self,
        guid: str,
        row: Mapping[str, Any],
        appt: Appointment,
        names: list[str],
        expected_version: str | None,
    ) -> CrmRecord:
        """Only the columns that differ (W4); `expected_version` is checked against the series' version and
        its ETag sent as If-Match. A new pattern is written as it is: Dataverse expands the series again."""
        current = await self.record(row)
        refuse_stale(current, expected_version, item_id=guid)
        merged = current.appointment.model_copy(update={f: getattr(appt, f) for f in names})
        if merged.recurrence is None:
            raise UnprocessableError(
                "Dataverse connector: a series does not become a single appointment in place",
                side=SIDE,
                item_id=guid,
            )
        wanted = master_body(merged, None, item_id=guid)
        payload = {k: v for k, v in wanted.items() if not same_column(row.get(k), v, k)}
        if {"organizer", "attendees"} & set(names):
            want_parties = parties(merged, await self.http._directory(merged))
            if sorted(map(party_key, want_parties)) != sorted(map(party_key, row.get(NAV) or [])):
                payload[NAV] = want_parties
        now_state = (int(row.get("statecode") or OPEN), int(row.get("statuscode") or FREE))
        want_state = (
            state_of(merged.status, merged.show_as, self.conn.statuses)
            if {"status", "show_as"} & set(names)
            else now_state
        )
        steps: list[dict[str, Any]] = []
        if now_state[0] in CLOSED_STATES and payload:
            reopen = want_state if want_state[0] not in CLOSED_STATES else (OPEN, FREE)
            steps += [{"statecode": reopen[0], "statuscode": reopen[1]}, payload]
            if want_state[0] in CLOSED_STATES:
                steps.append({"statecode": want_state[0], "statuscode": want_state[1]})
        elif payload or want_state != now_state:
            state = (
                {"statecode": want_state[0], "statuscode": want_state[1]} if want_state != now_state else {}
            )
            steps += [s for s in (payload, state) if s]
        etag = str(row.get("@odata.etag") or "*")
        for i, step in enumerate(steps):
            await self._patch(guid, step, if_match=etag if i == 0 and expected_version is not None else "*")
        if "cancelled_occurrences" in names:
            new = set(merged.cancelled_occurrences) - set(current.appointment.cancelled_occurrences)
            await self._cancel_occurrences(guid, new)
        if not steps and "cancelled_occurrences" not in names:
            return current
        return await self._read_back(guid)

    async def cancel(self, guid: str) -> CrmRecord:
        """statecode Canceled on the series (its open instances follow); unchanged when cancelled (L4)."""
        current = await self._read_back(guid)
        if current.appointment.status is not Status.CANCELLED:
            state, code = self.conn.statuses.cancelled
            await self._patch(guid, {"statecode": state, "statuscode": code}, if_match="*")
        return await self._read_back(guid)

    async def delete(self, guid: str) -> None:
        await self.http._request("DELETE", f"{MASTERS}({guid})", item_id=guid)

    # -- exceptions -----------------------------------------------------------------------------------

    async def _series_id(self, series_ref: str) -> str | None:
        if series_ref.startswith("crm:") and (guid := as_guid(series_ref[4:])):
            return guid
        found = await self.find(series_ref)
        return None if found is None else found.crm_id.lower()

    async def create_exception(self, appt: Appointment, *, external_ref: str) -> CrmRecord:
        """R3: the occurrence's instance row becomes the exception: its content written (update), then our
        meeting key on it, so a retry finds the instance and returns it (create once)."""
        assert appt.series_ref is not None and appt.original_start is not None
        series_id = await self._series_id(appt.series_ref)
        if series_id is None:  # its series may be on its way (a create not yet done): retried, then poisoned
            raise TransientError(
                f"Dataverse has no series {appt.series_ref!r} for this exception (yet)",
                side=SIDE,
                item_id=external_ref,
            )
        wanted = appt.original_start.astimezone(UTC)
        row = next((r for r in await self.instances(series_id) if original_start(r) == wanted), None)
        if row is None:
            raise UnprocessableError(
                f"series {series_id} has no instance starting {wire_time(wanted)} in Dataverse (past its "
                "expansion, or not an occurrence of its pattern)",
                side=SIDE,
                item_id=external_ref,
            )
        instance = str(row["activityid"])
        if row.get(EXTERNAL_REF) != external_ref:
            fields = [f for f in Appointment.model_fields if f != "crm_fields"]
            await self.conn.update_appointment(instance, appt, fields=fields, expected_version=None)
            await self.http._patch(instance, {EXTERNAL_REF: external_ref}, if_match="*")
        record = await self.conn.get_appointment(instance)
        if record is None:
            raise NotFoundError(
                f"appointment With Id = {instance} Does Not Exist", side=SIDE, item_id=instance
            )
        return record
