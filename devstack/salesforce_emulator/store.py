"""The Salesforce emulator's records: Event, EventRelation, User, Contact, Lead and our msync_Space__c, with
SystemModstamp, the Recycle Bin (IsDeleted rows, purged on demand) and the field limits of the Object
Reference. Pure data, confined to the emulator's loop.
"""

from __future__ import annotations

import copy
import itertools
import string
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

PREFIXES = {
    "Event": "00U",
    "EventRelation": "0RE",
    "User": "005",
    "Contact": "003",
    "Lead": "00Q",
    "msync_Space__c": "a0S",
}
ORG_ID = "00D000000000001EAA"
# Fields each object accepts on write, with their maximum length (None: not text). Event lengths from the
# Event object reference: Subject 255, Location 255, Description 32,000.
WRITABLE: dict[str, dict[str, int | None]] = {
    "Event": {
        "Subject": 255,
        "Description": 32000,
        "StartDateTime": None,
        "EndDateTime": None,
        "IsAllDayEvent": None,
        "Location": 255,
        "IsPrivate": None,
        "ShowAs": None,
        "OwnerId": None,
        "msync_ExternalRef__c": 255,
        "msync_CreateKey__c": 255,
        "msync_Key__c": 255,
        "msync_Status__c": None,
        "msync_SyncData__c": 131072,
        "IsRecurrence2": None,  # an event series (series.py)
        "Recurrence2PatternText": None,
        "Recurrence2PatternStartDate": None,
        "Recurrence2PatternTimeZone": None,
    },
    "EventRelation": {
        "EventId": None,
        "RelationId": None,
        "Status": None,
        "Response": 255,
        "IsInvitee": None,
    },
}
EXTERNAL_ID_FIELDS = {"Event": ("msync_Key__c",)}  # fields defined as External ID in the emulated org
PICKLISTS = {
    ("Event", "ShowAs"): {"Busy", "Free", "OutOfOffice"},
    ("EventRelation", "Status"): {"New", "Accepted", "Declined", "Maybe", "Uninvited"},
    ("Event", "msync_Status__c"): {"prospect", "tentative", "hold", "confirmed", "cancelled"},
}
_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase


def case_safe(id15: str) -> str:
    """The 18-character id of a 15-character one: for each 5 characters, a letter of A-Z0-5 whose bits say
    which of them are upper case, so ids that differ only in case differ case-insensitively too (Salesforce
    Help, "What is a Salesforce ID?"; the REST API always answers with the 18-character form)."""
    suffix = ""
    for chunk in range(3):
        bits = sum(1 << i for i, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]) if "A" <= ch <= "Z")
        suffix += "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"[bits]
    return id15 + suffix


class ApiError(Exception):
    """An answer in the REST API's error format `[{"message", "errorCode", "fields"}]`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: list[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields = fields
        self.headers = dict(headers or {})

    def body(self) -> list[dict[str, Any]]:
        error: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            error["fields"] = self.fields
        return [error]


def wire(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


class Savepoint:
    """Writes that commit or roll back together (an all-or-none request): the rows as they were, and the
    outbound notifications held until the commit (Salesforce sends none for a rolled-back write)."""

    def __init__(self, store: Store) -> None:
        self._store, self._saved = store, copy.deepcopy(store.objects)
        self._notify, self._held = store.on_change, list[tuple[str, str]]()
        store.on_change = lambda obj, row: self._held.append((obj, str(row["Id"])))

    def rollback(self) -> None:
        self._store.objects, self._store.on_change = self._saved, self._notify

    def commit(self) -> None:
        notify = self._store.on_change = self._notify
        for obj, record_id in self._held:
            row = self._store.find(obj, record_id, deleted=True)
            if row is not None and notify is not None:
                notify(obj, row)


class Store:
    def __init__(self, now: Callable[[], datetime], integration_user: str) -> None:
        self._now = now
        self.integration_user = integration_user
        self.on_change: Callable[[str, dict[str, Any]], None] | None = None  # after a create or an edit
        self.reset()

    def reset(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in PREFIXES}
        self._counter = itertools.count(1)
        self._last = datetime(2000, 1, 1, tzinfo=UTC)

    def new_id(self, obj: str) -> str:
        n = next(self._counter)
        digits = ""
        for _ in range(9):
            n, r = divmod(n, 62)
            digits = _ALPHABET[r] + digits
        return case_safe(f"{PREFIXES[obj]}000{digits}")

    def new_row(self, obj: str, caller: str) -> dict[str, Any]:
        """A new record's Id and the audit fields set on create, all stamped with one SystemModstamp."""
        record_id = self.new_id(obj)
        stamp = self.stamp()
        return {
            "Id": record_id,
            "IsDeleted": False,
            "CreatedDate": stamp,
            "CreatedById": caller,
            "LastModifiedDate": stamp,
            "LastModifiedById": caller,
            "SystemModstamp": stamp,
        }

    def stamp(self) -> str:
        """A SystemModstamp: the clock, at millisecond precision, always after the last one."""
        now = self._now().replace(microsecond=(self._now().microsecond // 1000) * 1000)
        if now <= self._last:
            now = self._last + timedelta(milliseconds=1)
        self._last = now
        return wire(now)

    def find(self, obj: str, record_id: str, *, deleted: bool = False) -> dict[str, Any] | None:
        for key, row in self.objects.get(obj, {}).items():
            if key[:15] == record_id[:15] and (deleted or not row.get("IsDeleted")):
                return row
        return None

    def get(self, obj: str, record_id: str) -> dict[str, Any]:
        row = self.find(obj, record_id)
        if row is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return row

    def check(self, obj: str, body: Mapping[str, Any]) -> None:
        allowed = WRITABLE.get(obj, {})
        for name, value in body.items():
            if name == "attributes":
                continue
            if name.lower() == "id":  # field names are case-insensitive
                raise ApiError(
                    400, "INVALID_FIELD", "The Id field should not be specified in the sobject data."
                )
            if name not in allowed:
                raise ApiError(
                    400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj}", fields=[name]
                )
            limit = allowed[name]
            if limit is not None and isinstance(value, str) and len(value) > limit:
                raise ApiError(
                    400,
                    "STRING_TOO_LONG",
                    f"{name}: data value too large: {value[:20]}... (max length={limit})",
                    fields=[name],
                )
            allowed_values = PICKLISTS.get((obj, name))
            if allowed_values is not None and value not in allowed_values and value is not None:
                raise ApiError(
                    400,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{name}: bad value for restricted picklist field: {value}",
                    fields=[name],
                )

    def create(self, obj: str, body: Mapping[str, Any], *, caller: str) -> dict[str, Any]:
        from devstack.salesforce_emulator import series

        if obj == "Event":
            series.check(dict(body), None)
        self.check(obj, body)
        data = {k: v for k, v in body.items() if k != "attributes"}
        if obj == "Event":
            for required in ("StartDateTime", "EndDateTime"):
                if not data.get(required):
                    raise ApiError(
                        400,
                        "REQUIRED_FIELD_MISSING",
                        f"Required fields are missing: [{required}]",
                        fields=[required],
                    )
            self._event_times(data)
        if obj == "EventRelation":
            if self.find("Event", str(data.get("EventId") or "")) is None:
                raise ApiError(
                    400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", fields=["EventId"]
                )
            series.check_invitee(self, self.get("Event", str(data["EventId"])))
            if self.owner_of(str(data.get("RelationId") or "")) is None:
                raise ApiError(
                    400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", fields=["RelationId"]
                )
            data.setdefault("Status", "New")
            data.setdefault("IsInvitee", True)
        row = self.new_row(obj, caller)
        record_id = row["Id"]
        if obj == "Event":
            row |= {name: None for name in WRITABLE["Event"]} | {"IsAllDayEvent": False, "IsPrivate": False}
            row |= {"ShowAs": "Busy", "OwnerId": caller} | series.defaults()
        row |= data
        self.objects[obj][record_id] = row
        if obj == "Event" and row.get("IsRecurrence2"):
            series.generate(self, row, caller)
        if obj == "EventRelation":
            self.touch_event(str(data["EventId"]), caller)
        if self.on_change is not None:
            self.on_change(obj, row)
        return row

    @staticmethod
    def _event_times(data: dict[str, Any]) -> None:
        for name in ("StartDateTime", "EndDateTime"):
            if name in data and isinstance(data[name], str):
                from devstack.salesforce_emulator.soql import parse_wire_time

                try:
                    data[name] = wire(parse_wire_time(data[name]))
                except ValueError as exc:
                    raise ApiError(
                        400,
                        "JSON_PARSER_ERROR",
                        f"Cannot deserialize instance of datetime from VALUE_STRING value {data[name]}",
                    ) from exc

    def update(self, obj: str, record_id: str, body: Mapping[str, Any], *, caller: str) -> dict[str, Any]:
        from devstack.salesforce_emulator import series

        row = self.get(obj, record_id)
        if obj == "Event":
            series.check(dict(body), row)
        self.check(obj, body)
        data = {k: v for k, v in body.items() if k != "attributes"}
        if obj == "Event":
            self._event_times(data)
        stamp = self.stamp()
        row |= data | {"LastModifiedDate": stamp, "LastModifiedById": caller, "SystemModstamp": stamp}
        if obj == "Event":
            series.after_update(self, row, data, caller)
        if self.on_change is not None:
            self.on_change(obj, row)
        return row

    def touch_event(self, event_id: str, caller: str) -> None:
        """An invitee change is a change of the event (its SystemModstamp moves)."""
        row = self.find("Event", event_id)
        if row is not None:
            stamp = self.stamp()
            row |= {"LastModifiedDate": stamp, "LastModifiedById": caller, "SystemModstamp": stamp}

    def delete(self, obj: str, record_id: str, *, caller: str) -> None:
        row = self.find(obj, record_id, deleted=True)
        if row is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if row.get("IsDeleted"):
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        stamp = self.stamp()
        row |= {"IsDeleted": True, "SystemModstamp": stamp, "LastModifiedById": caller}
        if obj == "Event":
            for rel in self.objects["EventRelation"].values():
                if rel.get("EventId") == row["Id"]:
                    rel["IsDeleted"] = True
            from devstack.salesforce_emulator import series

            series.after_delete(self, row, caller)
        else:
            self.touch_event(str(row.get("EventId") or ""), caller)

    def purge(self) -> None:
        """Empty the Recycle Bin: deleted rows are gone for /queryAll too."""
        for rows in self.objects.values():
            for key in [k for k, r in rows.items() if r.get("IsDeleted")]:
                del rows[key]

    def owner_of(self, record_id: str) -> dict[str, Any] | None:
        """The User, Contact or Lead an id names (a polymorphic Name lookup)."""
        for obj in ("User", "Contact", "Lead"):
            row = self.find(obj, record_id)
            if row is not None:
                return row
        return None
