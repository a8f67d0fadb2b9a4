"""In-memory fakes of the worker's ports (sync_core.ports), each passing the contract suite its real adapter
passes (tests/contracts, tests/crm/test_crm_contract.py); `blow_up` makes writes fail, `DiesAfter` crashes."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Mapping as AnyMapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from pydantic import ValidationError
from pydantic_core import to_json

from sync_core.adapters.storage.deletes import DELETE_RUN
from sync_core.adapters.storage.notices import NOTICE_WINDOW
from sync_core.domain import timezones
from sync_core.domain.actions import Mapping, NotifyOrganizer
from sync_core.domain.messages import CrmChange, GraphChange
from sync_core.domain.model import (
    GRAPH_WRITABLE_FIELDS,
    Appointment,
    Attachment,
    CrmRecord,
    GraphEvent,
    Person,
    Response,
    Status,
)
from sync_core.errors import ConcurrencyError, ConflictError, NotFoundError, UnprocessableError
from sync_core.ports.crm import ChangedPage, Contact, CrmUser, Space
from sync_core.ports.stores import DecisionRecord

T = TypeVar("T")
Clock = Callable[[], datetime]

# Every method of a port that changes something: `blow_up` refuses them, `DiesAfter` crashes after them.
WRITE_METHODS = frozenset(
    {
        "save",  # Mappings
        "record",  # Decisions
        "claim",  # Notices
        "release",
        "spend",  # DeleteBudget
        "create_event",  # Calendar
        "update_event",
        "cancel_event",
        "cancel_occurrence",
        "respond",
        "send_mail",
        "create_appointment",  # CrmConnector
        "update_appointment",
        "cancel_appointment",
        "delete_appointment",
    }
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- stores -------------------------------------------------------------------------------------------


def _index_keys(mapping: Mapping) -> set[tuple[str, ...]]:
    keys: set[tuple[str, ...]] = {("graph", c.mailbox.lower(), c.event_id) for c in mapping.copies}
    if mapping.crm_id:
        keys.add(("crm", mapping.crm_id))
    uid = mapping.ical_uid
    if uid and (mapping.meeting_key == "ical:" + uid or any(c.role != "organizer" for c in mapping.copies)):
        keys.add(("ical", uid))
    elif uid:  # a meeting keyed otherwise, no other copy joined: known by its iCalUId beside its own copy
        home = next((c for c in mapping.copies if c.event_id == mapping.graph_event_id), None) or next(
            (c for c in mapping.copies if c.role == "organizer"), None
        )
        if home is not None:
            keys.add(("home-ical", home.mailbox.lower(), uid))
    return keys


class MemoryMappings:
    """`MappingStore` in memory: rows as JSON with an ETag; index hints are written before the row, only those
    `previous` lacks, and never removed."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str]] = {}  # meeting key -> (ETag, the mapping as JSON)
        self.index: dict[tuple[str, ...], str] = {}  # ("graph", mailbox, id) | ("crm", id) | ("ical", uid)
        self.decision_rows: dict[str, list[dict[str, Any]]] = {}  # meeting key -> decisions, oldest first
        self._etags = itertools.count(1)

    async def get(self, meeting_key: str) -> Mapping | None:
        row = self.rows.get(meeting_key)
        return None if row is None else Mapping.model_validate(json.loads(row[1]) | {"etag": row[0]})

    async def lookup(self, key: str, *, homes: Sequence[str] = ()) -> tuple[Mapping | None, str | None]:
        kind, _, ident = key.partition(":")
        alias = self.index.get((kind, ident)) if kind in ("ical", "crm") and "|" not in key else None
        if alias is not None and alias != key:
            return None, alias
        found = await self.get(key)
        if found is None and kind == "ical" and "|" not in key:
            return None, self._home_ical(ident, homes)
        return found, None

    def _home_ical(self, ical_uid: str, homes: Sequence[str]) -> str | None:
        return next((k for h in homes if (k := self.index.get(("home-ical", h.lower(), ical_uid)))), None)

    async def find_by_graph(self, mailbox: str, event_id: str) -> str | None:
        return self.index.get(("graph", mailbox.lower(), event_id))

    async def find_by_crm(self, crm_id: str) -> str | None:
        return self.index.get(("crm", crm_id))

    async def find_by_ical(self, ical_uid: str, *, homes: Sequence[str] = ()) -> str | None:
        if not ical_uid:
            return None
        return self.index.get(("ical", ical_uid)) or self._home_ical(ical_uid, homes)

    async def save(
        self, mapping: Mapping, *, previous: Mapping | None = None, decision: DecisionRecord | None = None
    ) -> Mapping:
        for key in _index_keys(mapping) - (_index_keys(previous) if previous else set()):
            self.index[key] = mapping.meeting_key
        current = self.rows.get(mapping.meeting_key)
        where = {"side": "storage", "item_id": mapping.meeting_key}
        if decision is not None and decision.meeting_key != mapping.meeting_key:
            raise ValueError("a decision is kept beside its own meeting's row")
        if mapping.etag is None:  # a create: the claim (I3)
            if current is not None:
                raise ConcurrencyError("storage entity already exists", **where)
        elif current is None:
            raise NotFoundError("storage resource not found", **where)
        elif current[0] != mapping.etag:
            raise ConcurrencyError("storage precondition failed", **where)
        etag = f'W/"{next(self._etags)}"'
        self.rows[mapping.meeting_key] = (etag, mapping.model_dump_json(exclude={"etag"}))
        if decision is not None:  # written with the row: both or neither
            await self.record(decision)
        return mapping.model_copy(update={"etag": etag})

    async def record(self, decision: DecisionRecord) -> None:
        if not decision.meeting_key:
            raise ValueError("a decision about no meeting is kept by item")
        self.decision_rows.setdefault(decision.meeting_key, []).append(_decision_row(decision))

    async def decisions(self, meeting_key: str, *, limit: int = 50) -> list[dict[str, Any]]:
        mine = list(reversed(self.decision_rows.get(meeting_key, [])))
        return sorted(mine, key=lambda r: datetime.fromisoformat(r["at"]), reverse=True)[:limit]

    def all(self) -> list[Mapping]:
        """Every row as stored (for a test's checks)."""
        return [
            Mapping.model_validate(json.loads(data) | {"etag": etag}) for etag, data in self.rows.values()
        ]


def _decision_row(d: DecisionRecord) -> dict[str, Any]:
    return {
        "at": d.at.astimezone(UTC).isoformat(),
        "side": d.side,
        "item_id": d.item_id,
        "meeting_key": d.meeting_key or "",
        "rule": d.rule,
        "reason": d.reason[:1000],
        "correlation_id": d.correlation_id,
        "outcome": d.outcome,
        "actions": json.loads(json.dumps(d.actions, default=str)),
        "versions": json.loads(json.dumps(d.versions, default=str)),
    }


class MemoryDecisions:
    """`DecisionLog` in memory: one row per decision about no mapped meeting, read back per item, newest
    first; `indexed` is the time index (every decision, wherever its record is)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.indexed: list[dict[str, Any]] = []

    def index(self, decision: DecisionRecord) -> None:
        self.indexed.append(_decision_row(decision))

    async def record(
        self,
        *,
        side: str,
        item_id: str,
        at: datetime,
        meeting_key: str | None,
        rule: str,
        reason: str,
        actions: list[dict[str, Any]],
        correlation_id: str,
        versions: dict[str, str],
        outcome: str,
    ) -> None:
        d = DecisionRecord(
            side, item_id, at, meeting_key, rule, reason, actions, correlation_id, versions, outcome
        )
        self.rows.append(_decision_row(d))
        self.indexed.append(_decision_row(d))

    async def for_item(self, side: str, item_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        mine = [r for r in reversed(self.rows) if (r["side"], r["item_id"]) == (side, item_id)]
        return sorted(mine, key=lambda r: datetime.fromisoformat(r["at"]), reverse=True)[:limit]


class MemoryNotices:
    """`NoticeLedger` in memory: a claim per meeting and notice, free again after a release or the window."""

    def __init__(self, *, window: timedelta = NOTICE_WINDOW) -> None:
        self.claims: dict[tuple[str, ...], datetime] = {}
        self._window = window

    @staticmethod
    def _key(meeting_key: str, n: NotifyOrganizer) -> tuple[str, ...]:
        return (meeting_key, n.rule, n.mailbox.lower(), n.subject, n.text, n.reason)

    async def claim(self, meeting_key: str, notice: NotifyOrganizer, now: datetime) -> bool:
        key = self._key(meeting_key, notice)
        claimed = self.claims.get(key)
        if claimed is not None and now - claimed < self._window:
            return False
        self.claims[key] = now
        return True

    async def release(self, meeting_key: str, notice: NotifyOrganizer) -> None:
        self.claims.pop(self._key(meeting_key, notice), None)


class MemoryDeleteBudget:
    """`TableDeleteBudget` in memory: cancels and deletes counted per mailbox and run (a clock hour)."""

    def __init__(self, *, run: timedelta = DELETE_RUN) -> None:
        self.counts: Counter[tuple[str, int]] = Counter()
        self._seconds = int(run.total_seconds())

    def _row(self, mailbox: str, now: datetime) -> tuple[str, int]:
        return mailbox.lower(), int(now.astimezone(UTC).timestamp()) // self._seconds

    async def used(self, mailbox: str, now: datetime) -> int:
        return self.counts[self._row(mailbox, now)]

    async def spend(self, mailbox: str, now: datetime) -> int:
        row = self._row(mailbox, now)
        self.counts[row] += 1
        return self.counts[row]


# -- the CRM --------------------------------------------------------------------------------------------

_APPOINTMENT_FIELDS = frozenset(Appointment.model_fields)
_KEEP: Any = object()  # `external_ref` unchanged


class MemoryCrm:
    """A `CrmConnector` keeping records as the CRM emulator does: a new version per real change, idempotency
    keys, a change feed with tombstones, a directory. `seed` and `user_*` arrange the CRM side (the contract's
    backend); every change is announced in `outbox` as the webhook's CrmChange."""

    def __init__(self, *, clock: Clock = _utcnow) -> None:
        self.records: dict[str, CrmRecord] = {}  # in creation order
        self.outbox: list[CrmChange] = []
        self.users: dict[str, dict[str, Any]] = {}
        self.contacts: dict[str, dict[str, Any]] = {}
        self.spaces: dict[str, dict[str, Any]] = {}
        self._clock = clock
        self._seq = 0  # one per change, for versions and `changed_since` cursors
        self._changed: dict[str, int] = {}  # id -> seq of its last change
        self._deleted: dict[str, int] = {}  # id -> seq of its delete
        self._idempotency: dict[str, str] = {}
        self._created_by: dict[str, str | None] = {}
        self._updated_by: dict[str, str | None] = {}
        self._ids = itertools.count(1)

    # -- CrmConnector --
    async def get_appointment(self, crm_id: str) -> CrmRecord | None:
        return self.records.get(crm_id)

    async def find_by_external_ref(self, external_ref: str) -> CrmRecord | None:
        if not external_ref:
            raise UnprocessableError("external_ref must not be empty", side="crm")
        return next((r for r in self.records.values() if r.external_ref == external_ref), None)

    async def create_appointment(
        self, appointment: Appointment, *, idempotency_key: str, external_ref: str
    ) -> CrmRecord:
        known = self._idempotency.get(idempotency_key)
        if known is not None:
            if known not in self.records:
                raise ConflictError(f"idempotency key created {known}, since deleted", side="crm")
            return self.records[known]
        record = self._create(appointment.model_dump(mode="json"), external_ref, created_by=None)
        self._idempotency[idempotency_key] = record.crm_id
        return record

    async def update_appointment(
        self, crm_id: str, appointment: Appointment, *, fields: Iterable[str], expected_version: str | None
    ) -> CrmRecord:
        names = list(dict.fromkeys(fields))
        unknown = sorted(set(names) - _APPOINTMENT_FIELDS)
        if unknown:
            raise UnprocessableError(
                f"not appointment fields: {', '.join(unknown)}", side="crm", item_id=crm_id
            )
        record = self._get(crm_id)
        if expected_version is not None and expected_version not in ("*", record.version):
            raise ConcurrencyError(
                f"version is {record.version}, If-Match was {expected_version}", side="crm", item_id=crm_id
            )
        return self._change(record, appointment.model_dump(mode="json", include=set(names)))

    async def cancel_appointment(self, crm_id: str) -> CrmRecord:
        return self._change(self._get(crm_id), {"status": Status.CANCELLED.value})

    async def delete_appointment(self, crm_id: str) -> None:
        self._delete(crm_id)

    async def list_changed(self, cursor: str | None, *, limit: int = 100) -> ChangedPage:
        if limit < 1:
            raise UnprocessableError(f"limit must be at least 1, got {limit}", side="crm")
        after = self._after(cursor)
        items = sorted(
            [(s, i, False) for i, s in self._changed.items() if s > after]
            + [(s, i, True) for i, s in self._deleted.items() if s > after]
        )
        page, more = items[:limit], len(items) > limit
        return ChangedPage(
            records=tuple(self.records[i] for _, i, gone in page if not gone),
            deleted_ids=tuple(i for _, i, gone in page if gone),
            cursor=f"mem.{page[-1][0] if more else self._seq}",
            more=more,
        )

    async def find_contacts(self, emails: Iterable[str]) -> dict[str, Contact]:
        wanted = dict.fromkeys(e.strip().lower() for e in emails if e and e.strip())
        found: dict[str, Contact] = {}
        for c in self.contacts.values():
            if c["email"] in wanted:
                found.setdefault(c["email"], Contact(crm_id=c["id"], email=c["email"], name=c["name"]))
        return {e: found[e] for e in wanted if e in found}

    async def list_users(self) -> list[CrmUser]:
        return [
            CrmUser(crm_id=u["id"], email=u["email"], name=u["name"], mailbox=u["mailbox"])
            for u in self.users.values()
        ]

    async def list_spaces(self) -> list[Space]:
        return [
            Space(crm_id=s["id"], **{k: v for k, v in s.items() if k != "id"}) for s in self.spaces.values()
        ]

    async def aclose(self) -> None:
        return None

    # -- the CRM side, as its users and administrators change it --
    def seed(
        self,
        *,
        users: Iterable[AnyMapping[str, Any]] = (),
        contacts: Iterable[AnyMapping[str, Any]] = (),
        spaces: Iterable[AnyMapping[str, Any]] = (),
    ) -> None:
        """Add or replace (by id) users `{id?, email, name, mailbox}`, contacts `{id?, email, name}` and
        spaces `{id?, name, room_mailbox, management_mode}`."""
        for table, prefix, items, defaults in (
            (self.users, "usr", users, {"name": "", "mailbox": None}),
            (self.contacts, "con", contacts, {"name": ""}),
            (self.spaces, "spc", spaces, {"room_mailbox": None, "management_mode": "outlook_auto_accept"}),
        ):
            for item in items:
                row = {**defaults, **item, "id": str(item.get("id") or f"{prefix}-{next(self._ids)}")}
                if "email" in row:
                    row["email"] = str(row["email"]).strip().lower()
                table[row["id"]] = row

    def user_create(
        self,
        appointment: Appointment | AnyMapping[str, Any],
        *,
        created_by: str | None = None,
        external_ref: str | None = None,
    ) -> dict[str, Any]:
        """A record made in the CRM's UI: origin `crm` unless the appointment says otherwise."""
        if isinstance(appointment, Appointment):
            data = appointment.model_dump(mode="json")
            if "origin" not in appointment.model_fields_set:
                data["origin"] = "crm"
        else:
            data = {"origin": "crm", **appointment}
        return _wire(self._create(data, external_ref, created_by=created_by))

    def user_update(self, crm_id: str, *, updated_by: str | None = None, **fields: Any) -> dict[str, Any]:
        """Edit fields as CRM user `updated_by` would (models and datetimes accepted); `external_ref` too."""
        external_ref = fields.pop("external_ref", _KEEP)
        return _wire(self._change(self._get(crm_id), fields, external_ref=external_ref, by=updated_by))

    def user_cancel(self, crm_id: str) -> dict[str, Any]:
        return _wire(self._change(self._get(crm_id), {"status": Status.CANCELLED.value}))

    def user_delete(self, crm_id: str) -> None:
        self._delete(crm_id)

    # -- helpers --
    def _delete(self, crm_id: str) -> None:
        record = self._get(crm_id)
        del self.records[crm_id], self._changed[crm_id]
        self._seq += 1
        self._deleted[crm_id] = self._seq
        self._announce(crm_id, "deleted", record.version)

    def _get(self, crm_id: str) -> CrmRecord:
        record = self.records.get(crm_id)
        if record is None:
            raise NotFoundError(f"appointment {crm_id} does not exist", side="crm", item_id=crm_id)
        return record

    def _create(
        self, data: AnyMapping[str, Any], external_ref: str | None, *, created_by: str | None
    ) -> CrmRecord:
        crm_id = f"apt-{next(self._ids):05d}"
        appointment = _valid(data, crm_id)
        self._created_by[crm_id] = self._updated_by[crm_id] = created_by
        return self._commit(crm_id, appointment, external_ref, "created")

    def _change(
        self,
        record: CrmRecord,
        patch: AnyMapping[str, Any],
        *,
        external_ref: Any = _KEEP,
        by: str | None = None,
    ) -> CrmRecord:
        """Merge `patch` as CRM user `by` (None: an API write, the sync's own); a patch that changes
        nothing keeps the version and announces nothing."""
        ref = record.external_ref if external_ref is _KEEP else external_ref
        merged = _valid({**record.appointment.model_dump(mode="json"), **patch}, record.crm_id)
        if merged == record.appointment and ref == record.external_ref:
            return record
        cancelled = merged.status is Status.CANCELLED and record.appointment.status is not Status.CANCELLED
        self._updated_by[record.crm_id] = by
        return self._commit(record.crm_id, merged, ref, "cancelled" if cancelled else "updated")

    def _commit(
        self, crm_id: str, appointment: Appointment, external_ref: str | None, kind: str
    ) -> CrmRecord:
        self._seq += 1
        record = CrmRecord(
            crm_id=crm_id,
            version=f"v{self._seq}",
            appointment=appointment,
            mailbox_hint=self._mailbox_hint(appointment, self._created_by.get(crm_id)),
            created_by=self._created_by.get(crm_id),
            updated_by=self._updated_by.get(crm_id),
            external_ref=external_ref,
            updated_at=self._clock(),
        )
        self.records[crm_id] = record
        self._changed[crm_id] = self._seq
        self._announce(crm_id, kind, record.version)
        return record

    def _announce(self, crm_id: str, kind: str, version: str) -> None:
        self.outbox.append(
            CrmChange(
                correlation_id=f"crm-{self._seq}",
                received_at=self._clock(),
                crm_id=crm_id,
                change_type=kind,  # type: ignore[arg-type]
                version=version,
            )
        )

    def _mailbox_hint(self, appointment: Appointment, created_by: str | None) -> str | None:
        """The mailbox of the CRM user who organizes or created the record, as the emulator finds it."""
        organizer = appointment.organizer.email if appointment.organizer else None
        for email in (e.lower() for e in (organizer, created_by) if e):
            for user in self.users.values():
                if email in (user["email"], str(user["mailbox"] or "").lower()):
                    return user["mailbox"] or None
        return None

    def _after(self, cursor: str | None) -> int:
        if not cursor:
            return 0
        prefix, _, number = cursor.partition(".")
        if prefix != "mem" or not number.isdigit() or int(number) > self._seq:
            raise NotFoundError(f"cannot serve cursor {cursor!r}; sync again without it", side="crm")
        return int(number)


def _valid(data: AnyMapping[str, Any], crm_id: str) -> Appointment:
    """The appointment as the CRM validates it: strictly, from its JSON."""
    try:
        return Appointment.model_validate_json(to_json(dict(data)), strict=True)
    except ValidationError as exc:
        raise UnprocessableError(f"invalid appointment: {exc}", side="crm", item_id=crm_id) from exc


def _wire(record: CrmRecord) -> dict[str, Any]:
    return {
        "id": record.crm_id,
        "version": record.version,
        "external_ref": record.external_ref,
        "mailbox_hint": record.mailbox_hint,
        "created_by": record.created_by,
        **record.appointment.model_dump(mode="json"),
    }


# -- Microsoft 365 --------------------------------------------------------------------------------------

_TIME_FIELDS = frozenset({"start", "end", "time_zone", "is_all_day"})
_RESPONSES = {
    "accept": Response.ACCEPTED,
    "tentativelyAccept": Response.TENTATIVE,
    "decline": Response.DECLINED,
}


def _as_graph_holds(
    appointment: Appointment, fields: Iterable[str], current: Appointment | None, mailbox: str
) -> Appointment:
    """What an event holds after a create (`current` None) or a PATCH of `fields`, as GraphAdapter writes
    and reads it: only writable fields, times as a group, the zone by its IANA name, the body trimmed,
    attendees named (by address when nameless) with their responses kept (none for new ones)."""
    wanted = set(fields) & set(GRAPH_WRITABLE_FIELDS)
    if wanted & _TIME_FIELDS:
        wanted |= _TIME_FIELDS
    update: dict[str, Any] = {f: getattr(appointment, f) for f in wanted}
    zone = timezones.to_iana(appointment.time_zone) or "UTC"
    if "time_zone" in update:
        update["time_zone"] = zone
    if "body" in update:
        update["body"] = appointment.body.strip()
    if "attendees" in update:
        known = {a.email: a.response for a in current.attendees} if current else {}
        update["attendees"] = tuple(
            a.model_copy(update={"name": a.name or a.email, "response": known.get(a.email, Response.NONE)})
            for a in appointment.attendees
        )
    rec = update.get("recurrence")
    if rec is not None and rec.range.time_zone == "UTC":  # written in the event's zone, read back by name
        update["recurrence"] = rec.model_copy(
            update={"range": rec.range.model_copy(update={"time_zone": zone})}
        )
    if "recurrence" in update and update["recurrence"] is None:
        update["cancelled_occurrences"] = ()
    if current is None:
        return Appointment(organizer=Person(email=mailbox), **update)
    return current.model_copy(update=update)


class MemoryCalendar:
    """Mailboxes of events as GraphAdapter reads and writes them: a new change key per change, our tag on the
    events we write (not in create and update answers, which do not expand it), a create made once per
    transaction id, cancelled occurrences only on a series read by id (Graph returns them only when such a GET
    selects them, as the adapter does; a view or a write's answer has none; `event` and `events` show the
    truth). `user_*` change events as people do in Outlook; every change is announced in `outbox`
    as the subscription's GraphChange. Exchange's meeting machinery (attendee and room copies, auto-accept)
    is not modelled: `deliver` puts such a copy in a mailbox."""

    def __init__(self, *, clock: Clock = _utcnow) -> None:
        self.outbox: list[GraphChange] = []
        self.sent: list[tuple[str, str, str]] = []  # (mailbox, subject, text) of send_mail
        self._events: dict[tuple[str, str], GraphEvent] = {}  # (mailbox, id) -> event, in creation order
        self._transactions: dict[tuple[str, str], str] = {}  # (mailbox, id) -> transactionId of its create
        self._clock = clock
        self._n = itertools.count(1)

    # -- Calendar --
    async def get_event(self, mailbox: str, event_id: str) -> GraphEvent | None:
        return self._events.get((mailbox.lower(), event_id))  # a GET by id selects cancelledOccurrences

    async def calendar_view(self, mailbox: str, start: datetime, end: datetime) -> list[GraphEvent]:
        out: list[GraphEvent] = []
        for e in self.events(mailbox):
            s, t = e.appointment.start, e.appointment.end
            if e.appointment.recurrence is not None and s < end:
                raise NotImplementedError("MemoryCalendar does not expand a series into its occurrences")
            if (start <= s < end) if s == t else (s < end and t > start):
                out.append(_read(e))
        return out

    async def find_created(self, mailbox: str, *, tag: str, transaction_id: str) -> GraphEvent | None:
        fallback: GraphEvent | None = None
        for e in self.events(mailbox):
            txn = self._transactions.get((e.mailbox, e.event_id))
            if e.written_by_us != tag:
                continue
            if txn == transaction_id:
                return _read(e)
            if txn is None and e.is_organizer and fallback is None:
                fallback = _read(e)
        return fallback

    async def create_event(
        self, mailbox: str, appointment: Appointment, *, transaction_id: str, tag: str
    ) -> GraphEvent:
        mailbox = mailbox.lower()
        for key, txn in self._transactions.items():
            if key[0] == mailbox and txn == transaction_id:
                return _answer(self._events[key])  # Graph makes no second event for a retried transactionId
        n = next(self._n)
        content = _as_graph_holds(appointment, GRAPH_WRITABLE_FIELDS, None, mailbox)
        event = GraphEvent(
            mailbox=mailbox,
            event_id=f"AAMkAD{n:04d}=",
            ical_uid=f"040000008200E00074C5B7101A82E008{n:08d}",
            type="seriesMaster" if content.recurrence else "singleInstance",
            response=Response.ORGANIZER,
            written_by_us=tag,
            appointment=content,
        )
        self._transactions[(mailbox, event.event_id)] = transaction_id
        return _answer(self._put(event, "created"))

    async def update_event(
        self, mailbox: str, event_id: str, appointment: Appointment, *, fields: Iterable[str], tag: str
    ) -> GraphEvent:
        event = self._get(mailbox, event_id)
        content = _as_graph_holds(appointment, fields, event.appointment, event.mailbox)
        kind = event.type
        if kind in ("singleInstance", "seriesMaster"):
            kind = "seriesMaster" if content.recurrence else "singleInstance"
        tagged = event.model_copy(update={"appointment": content, "written_by_us": tag, "type": kind})
        return _answer(self._put(tagged))

    async def cancel_event(self, mailbox: str, event_id: str, comment: str = "") -> None:
        event = self._get(mailbox, event_id)
        if not event.is_organizer:
            raise UnprocessableError("You need to be an organizer to cancel a meeting.", side="graph")
        self.user_delete(event.mailbox, event.event_id)

    async def cancel_occurrence(self, mailbox: str, series_event_id: str, original_start: datetime) -> None:
        """Delete the occurrence starting at `original_start`; nothing when the series has no such one
        (approximated: any instant at or after the series' start that is not cancelled yet)."""
        series = self._get(mailbox, series_event_id)
        appt = series.appointment
        at = original_start.astimezone(UTC)
        if appt.recurrence is None or at < appt.start or at in appt.cancelled_occurrences:
            return
        cancelled = (*appt.cancelled_occurrences, at)
        self._put(series.model_copy(update={"appointment": _with(appt, cancelled_occurrences=cancelled)}))

    async def respond(self, mailbox: str, event_id: str, response: str, comment: str = "") -> None:
        verdict = _RESPONSES.get(response)
        if verdict is None:
            raise UnprocessableError(f"unknown response {response!r}", side="graph", mailbox=mailbox)
        event = self._get(mailbox, event_id)
        if event.is_organizer or event.is_cancelled:
            raise UnprocessableError("You can't respond to this meeting.", side="graph", mailbox=mailbox)
        self._put(event.model_copy(update={"response": verdict}))
        for o in list(self._events.values()):  # the answer reaches the organizer's copy (sendResponse)
            if o.is_organizer and o.ical_uid == event.ical_uid:
                people = tuple(
                    a.model_copy(update={"response": verdict}) if a.email == event.mailbox else a
                    for a in o.appointment.attendees
                )
                self._put(o.model_copy(update={"appointment": _with(o.appointment, attendees=people)}))

    async def send_mail(self, mailbox: str, subject: str, text: str) -> None:
        self.sent.append((mailbox.lower(), subject, text))

    async def read_attachments(
        self,
        mailbox: str,
        event_id: str,
        *,
        known: Iterable[Attachment] = (),
        content_max_bytes: int | None = None,
    ) -> tuple[Attachment, ...]:
        """F5 as GraphAdapter.read_attachments: the event's attachments (the model's, as `user_*` put them),
        the bytes kept only on files within the limit that `known` lacks in this version."""
        event = self._events.get((mailbox.lower(), event_id))
        if event is None:
            raise NotFoundError("no such event", side="graph", mailbox=mailbox, item_id=event_id)
        have = {a.version_key for a in known}
        out = []
        for a in event.appointment.attachments:
            keep = (
                content_max_bytes is not None
                and a.kind == "file"
                and a.size <= content_max_bytes
                and a.version_key not in have
            )
            out.append(a if keep else a.model_copy(update={"content": None}))
        return tuple(out)

    # -- people and Exchange --
    def user_create(self, mailbox: str, appointment: Appointment) -> GraphEvent:
        """An organizer creates an event in Outlook (no tag of ours, no transaction id)."""
        n = next(self._n)
        mailbox = mailbox.lower()
        appointment = (
            appointment if appointment.organizer else _with(appointment, organizer=Person(email=mailbox))
        )
        return self.deliver(
            GraphEvent(
                mailbox=mailbox,
                event_id=f"AAMkAD{n:04d}=",
                ical_uid=f"040000008200E00074C5B7101A82E008{n:08d}",
                type="seriesMaster" if appointment.recurrence else "singleInstance",
                response=Response.ORGANIZER,
                appointment=appointment,
            )
        )

    def user_edit(self, mailbox: str, event_id: str, **fields: Any) -> GraphEvent:
        """Someone changes appointment fields in Outlook; our tag, if any, stays."""
        event = self._get(mailbox, event_id)
        return self._put(event.model_copy(update={"appointment": _with(event.appointment, **fields)}))

    def user_delete(self, mailbox: str, event_id: str) -> None:
        event = self._get(mailbox, event_id)
        del self._events[(event.mailbox, event.event_id)]
        self._transactions.pop((event.mailbox, event.event_id), None)
        self._announce(event.mailbox, event.event_id, "deleted")

    def deliver(self, event: GraphEvent) -> GraphEvent:
        """An event Exchange puts in a mailbox (an invitation, a room's copy), announced as created. It reads
        with no tag of ours: a tag is signed for the mailbox we wrote it in and verifies in no other."""
        copy = event.model_copy(update={"mailbox": event.mailbox.lower(), "written_by_us": None})
        return self._put(copy, "created")

    def event(self, mailbox: str, event_id: str) -> GraphEvent | None:
        return self._events.get((mailbox.lower(), event_id))

    def events(self, mailbox: str | None = None) -> list[GraphEvent]:
        return [e for e in self._events.values() if mailbox is None or e.mailbox == mailbox.lower()]

    # -- helpers --
    def _get(self, mailbox: str, event_id: str) -> GraphEvent:
        event = self._events.get((mailbox.lower(), event_id))
        if event is None:
            raise NotFoundError(
                "The specified object was not found in the store.", side="graph", item_id=event_id
            )
        return event

    def _put(self, event: GraphEvent, change: str = "updated") -> GraphEvent:
        stored = event.model_copy(update={"change_key": f"ck{next(self._n)}", "last_modified": self._clock()})
        self._events[(stored.mailbox, stored.event_id)] = stored
        self._announce(stored.mailbox, stored.event_id, change)
        return stored

    def _announce(self, mailbox: str, event_id: str, change: str) -> None:
        self.outbox.append(
            GraphChange(
                correlation_id=f"graph-{next(self._n)}",
                received_at=self._clock(),
                mailbox=mailbox,
                event_id=event_id,
                change_type=change,  # type: ignore[arg-type]
            )
        )


def _read(event: GraphEvent) -> GraphEvent:
    """The event as a view or a write's answer shows it: cancelledOccurrences only on a GET by id."""
    if not event.appointment.cancelled_occurrences:
        return event
    return event.model_copy(update={"appointment": _with(event.appointment, cancelled_occurrences=())})


def _answer(event: GraphEvent) -> GraphEvent:
    """Graph's answer to a create or PATCH: as read, without our tag (the answer expands no properties)."""
    return _read(event).model_copy(update={"written_by_us": None})


def _with(appointment: Appointment, **fields: Any) -> Appointment:
    """`appointment` with `fields` changed, validated (times to UTC, occurrences sorted)."""
    return Appointment.model_validate({**appointment.model_dump(), **fields})


# -- failing writes -------------------------------------------------------------------------------------


class BlowUp:
    """Reads pass through to `inner`; a write (WRITE_METHODS) not in `allow` raises AssertionError naming
    the call. Allowed writes are carried out and listed in `calls`."""

    def __init__(self, inner: object, *, allow: Iterable[str] = ()) -> None:
        self._inner = inner
        self._allow = frozenset(allow)
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in WRITE_METHODS:
            return attr

        async def write(*args: Any, **kwargs: Any) -> Any:
            call = f"{type(self._inner).__name__}.{name}"
            if name not in self._allow:
                shown = ", ".join([*(repr(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())])
                raise AssertionError(f"{call}({shown[:300]}) written during a sync that should write nothing")
            self.calls.append(call)
            return await attr(*args, **kwargs)

        return write


def blow_up(port: T, *, allow: Iterable[str] = ()) -> T:
    """`port` whose writes fail (except the method names in `allow`); see BlowUp."""
    return cast(T, BlowUp(port, allow=allow))


class Crash(Exception):
    """The worker died right after a write (DiesAfter): nothing after it ran."""


class DiesAfter:
    """Writes of `inner` go through; while `armed`, the first write `fatal(method, args)` accepts is carried
    out, then the wrapper disarms and raises Crash, as a process killed right after that call."""

    def __init__(
        self, inner: object, fatal: Callable[[str, tuple[Any, ...]], bool] = lambda m, a: True
    ) -> None:
        self._inner = inner
        self._fatal = fatal
        self.armed = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in WRITE_METHODS:
            return attr

        async def write(*args: Any, **kwargs: Any) -> Any:
            result = await attr(*args, **kwargs)
            if self.armed and self._fatal(name, args):
                self.armed = False
                raise Crash(f"after {type(self._inner).__name__}.{name}")
            return result

        return write
