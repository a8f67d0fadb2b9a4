"""The Dataverse emulator's tables: rows with row versions and ETags, activity parties, change tracking with
expiring delta tokens. Pure data, thread-confined to the emulator's loop (tests call through the emulator).
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

ENTITY_SETS = {  # entity set -> (logical name, primary key)
    "appointments": ("appointment", "activityid"),
    "contacts": ("contact", "contactid"),
    "systemusers": ("systemuser", "systemuserid"),
    "equipments": ("equipment", "equipmentid"),
    "activityparties": ("activityparty", "activitypartyid"),
    "recurringappointmentmasters": ("recurringappointmentmaster", "activityid"),
}
# The parties' navigation property of each activity table that has them
PARTY_NAV = {
    "appointments": "appointment_activity_parties",
    "recurringappointmentmasters": "recurringappointmentmaster_activity_parties",
}
# Columns each table accepts on write (the rest is read-only or not modelled). Max lengths from the entity
# reference (appointment.md): subject 200, location 200, category/subcategory 250.
WRITABLE: dict[str, dict[str, int | None]] = {
    "appointments": {
        "subject": 200,
        "description": 1048576,
        "scheduledstart": None,
        "scheduledend": None,
        "isalldayevent": None,
        "location": 200,
        "ismapiprivate": None,
        "statecode": None,
        "statuscode": None,
        "category": 250,
        "msync_externalref": 400,
        "msync_syncdata": 1048576,
    },
    "contacts": {"fullname": 160, "emailaddress1": 100},
    "systemusers": {
        "fullname": 200,
        "internalemailaddress": 100,
        "azureactivedirectoryobjectid": None,
        "isdisabled": None,
        "applicationid": None,
    },
    "equipments": {"name": 160, "emailaddress": 100, "msync_managementmode": 100},
}
# appointment statecode -> its statuscodes (appointment.md, StatusCode options); the first is the default
STATES = {0: (1, 2), 1: (3,), 2: (4,), 3: (5, 6)}
CLOSED = {1, 2}
PARTY_MASKS = {5, 6, 7}
DEFAULT_TOKEN_DAYS = 7  # Organization.ExpireChangeTrackingInDays


class ApiError(Exception):
    """An answer in the Web API's error envelope `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, message: str, code: str = "", headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def wire_now(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wire_time(value: Any, column: str) -> str:
    if not isinstance(value, str):
        raise ApiError(
            400, f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'."
        )
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ApiError(
            400, f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'."
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # UserLocal columns: the Web API takes UTC
    return wire_now(parsed)


def guid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise ApiError(400, "Bad Request - Error in query syntax.") from exc


class Store:
    """Every table of the emulator. `now` is the emulator's clock (tests move it to expire tokens)."""

    def __init__(self, now: Callable[[], datetime], app_user_id: str) -> None:
        self.now = now
        self.app_user_id = app_user_id
        self.tables: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in ENTITY_SETS}
        self.version = 1000
        self.deletions: list[tuple[int, str, str]] = []  # (row version, entity set, activityid) deleted
        # Tables with change tracking on (Tables > Advanced options > Track changes): the two activity
        # tables the connector reads, as its setup asks; a test may switch one off.
        self.tracked: set[str] = set(PARTY_NAV)
        self.token_days = DEFAULT_TOKEN_DAYS
        self.writable: dict[str, dict[str, int | None]] = dict(WRITABLE)
        # Called after each appointment Create, Update and Delete with (message, row as it is now, the
        # columns written, the calling systemuserid): the emulator's registered webhook steps.
        self.on_change: Callable[[str, dict[str, Any], dict[str, Any], str], None] | None = None

    def _changed(self, message: str, row: dict[str, Any], written: Mapping[str, Any], caller: str) -> None:
        if self.on_change is not None:
            self.on_change(message, row, dict(written), caller)

    def reset(self) -> None:
        self.tables = {name: {} for name in ENTITY_SETS}
        self.deletions = []
        self.tracked = set(PARTY_NAV)

    # -- rows ---------------------------------------------------------------------------------------

    def _bump(self, row: dict[str, Any], caller: str) -> None:
        self.version += 1
        row["versionnumber"] = self.version
        row["@odata.etag"] = f'W/"{self.version}"'
        row["modifiedon"] = wire_now(self.now())
        row["_modifiedby_value"] = caller

    def get(self, entity_set: str, key: str) -> dict[str, Any]:
        logical, _ = ENTITY_SETS[entity_set]
        row = self.tables[entity_set].get(guid(key))
        if row is None:
            raise ApiError(404, f"{logical} With Id = {guid(key)} Does Not Exist")
        return row

    def find(self, entity_set: str, key: str) -> dict[str, Any] | None:
        return self.tables[entity_set].get(guid(key))

    def _values(self, entity_set: str, body: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        logical, _ = ENTITY_SETS[entity_set]
        allowed = self.writable[entity_set]
        out: dict[str, Any] = {}
        for name, value in body.items():
            if name == PARTY_NAV.get(entity_set):
                continue
            if name not in allowed:
                raise ApiError(
                    400,
                    f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{logical}'.",
                )
            limit = allowed[name]
            if limit is not None and isinstance(value, str) and len(value) > limit:
                raise ApiError(
                    400,
                    f"A validation error occurred. The length of the '{name}' attribute of the '{logical}' "
                    f"entity exceeded the maximum allowed length of '{limit}'.",
                    code="0x80044331",
                )
            if name in ("scheduledstart", "scheduledend") and value is not None:
                value = wire_time(value, name)
            out[name] = value
        if entity_set in PARTY_NAV and creating and "statecode" in out:
            raise ApiError(
                400, "statecode is not valid for create: a new appointment is Open (IsValidForCreate False)"
            )
        return out

    def _check_state(self, row: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        state = values.get("statecode", row.get("statecode", 0))
        status = values.get("statuscode")
        if "statecode" in values and status is None:
            status = STATES[int(state)][0]
        if status is not None and int(status) not in STATES.get(int(state), ()):
            raise ApiError(400, f"{status} is not a valid status code for state code {state} on appointment")

    def _parties(self, activity_id: str, parties: Any) -> None:
        if not isinstance(parties, list):
            raise ApiError(400, "appointment_activity_parties must be a collection")
        made: list[dict[str, Any]] = []
        for p in parties:
            mask = int(p.get("participationtypemask") or 0)
            if mask not in PARTY_MASKS:
                raise ApiError(400, f"participationtypemask {mask} is not valid for an appointment")
            party: dict[str, Any] = {
                "activitypartyid": str(uuid.uuid4()),
                "_activityid_value": activity_id,
                "participationtypemask": mask,
                "_partyid_value": None,
                "addressused": p.get("addressused"),
            }
            binds = [(k, v) for k, v in p.items() if k.endswith("@odata.bind")]
            for key, value in binds:
                target = key.split("@", 1)[0].removeprefix("partyid_")
                entity_set = {"systemuser": "systemusers", "contact": "contacts"}.get(target)
                match = re.fullmatch(r"/?(\w+)\(([^)]+)\)", str(value))
                if entity_set is None or match is None or match.group(1) != entity_set:
                    raise ApiError(400, f"invalid binding {key}: {value}")
                row = self.get(entity_set, match.group(2))
                party["_partyid_value"] = row[ENTITY_SETS[entity_set][1]]
                party["_partyid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] = target
                party["_partyid_value@OData.Community.Display.V1.FormattedValue"] = row.get("fullname") or ""
                party["addressused"] = row.get(
                    "internalemailaddress" if target == "systemuser" else "emailaddress1"
                )
            if mask == 7 and not (binds and binds[0][0].startswith("partyid_systemuser")):
                raise ApiError(400, "The organizer of an appointment must be a system user")
            if not binds and not party["addressused"]:
                raise ApiError(400, "An activity party needs a partyid or an addressused")
            made.append(party)
        table = self.tables["activityparties"]
        for key in [k for k, v in table.items() if v["_activityid_value"] == activity_id]:
            del table[key]
        for party in made:
            table[party["activitypartyid"]] = party

    def create(
        self,
        entity_set: str,
        body: Mapping[str, Any],
        *,
        key: str | None,
        caller: str,
        system: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A new row; `system` holds columns the platform sets itself (an instance's series, its type)."""
        _, primary = ENTITY_SETS[entity_set]
        row_id = guid(key) if key else str(uuid.uuid4())
        if body.get(primary):
            row_id = guid(str(body[primary]))
        if row_id in self.tables[entity_set]:
            raise ApiError(412, "A record with matching key values already exists.", code="0x80040237")
        values = self._values(entity_set, {k: v for k, v in body.items() if k != primary}, creating=True)
        row: dict[str, Any] = {primary: row_id}
        if entity_set == "appointments":
            row |= {
                "subject": None,
                "description": None,
                "scheduledstart": None,
                "scheduledend": None,
                "isalldayevent": False,
                "location": None,
                "ismapiprivate": False,
                "statecode": 0,
                "statuscode": 1,
                "msync_externalref": None,
                "msync_syncdata": None,
                "instancetypecode": 0,
                "seriesid": None,
                "originalstartdate": None,
            }
            self._check_state(row, values)
        row |= values | dict(system or {})
        row["createdon"] = wire_now(self.now())
        row["_createdby_value"] = caller
        self._bump(row, caller)
        self.tables[entity_set][row_id] = row
        if PARTY_NAV.get(entity_set) in body:
            self._parties(row_id, body[PARTY_NAV[entity_set]])
        if entity_set == "appointments":
            self._changed("Create", row, values, caller)
        return row

    def update(
        self, entity_set: str, key: str, body: Mapping[str, Any], *, if_match: str | None, caller: str
    ) -> dict[str, Any]:
        row = self.get(entity_set, key)
        if if_match not in (None, "*") and if_match != row["@odata.etag"]:
            raise ApiError(
                412,
                "The version of the existing record doesn't match the RowVersion property provided.",
                "0x80060882",
            )
        values = self._values(entity_set, body, creating=False)
        if entity_set in PARTY_NAV:
            self._check_state(row, values)
            others = set(values) - {"statecode", "statuscode"} or PARTY_NAV[entity_set] in body
            if (
                row.get("statecode") in CLOSED
                and others
                and values.get("statecode", row["statecode"]) in CLOSED
            ):
                raise ApiError(400, "This appointment is closed or canceled and cannot be edited.")
            if row.get("statecode") in CLOSED and others and "statecode" in values:
                raise ApiError(
                    400, "Reopen a closed appointment (statecode) before changing its other columns."
                )
            if "statecode" in values and "statuscode" not in values:
                values["statuscode"] = STATES[int(values["statecode"])][0]
        row |= values
        if PARTY_NAV.get(entity_set) in body:
            self._parties(row["activityid"], body[PARTY_NAV[entity_set]])
        self._bump(row, caller)
        if entity_set == "appointments":
            self._changed("Update", row, values, caller)
        return row

    def delete(self, entity_set: str, key: str, *, if_match: str | None, caller: str | None = None) -> None:
        row = self.get(entity_set, key)
        if if_match not in (None, "*") and if_match != row["@odata.etag"]:
            raise ApiError(
                412,
                "The version of the existing record doesn't match the RowVersion property provided.",
                "0x80060882",
            )
        _, primary = ENTITY_SETS[entity_set]
        del self.tables[entity_set][row[primary]]
        if entity_set in PARTY_NAV:
            parties = self.tables["activityparties"]
            for k in [k for k, v in parties.items() if v["_activityid_value"] == row["activityid"]]:
                del parties[k]
            self.version += 1
            self.deletions.append((self.version, entity_set, row["activityid"]))
        if entity_set == "appointments":
            self._changed("Delete", row, {}, caller or self.app_user_id)

    def parties_of(self, activity_id: str) -> list[dict[str, Any]]:
        return [p for p in self.tables["activityparties"].values() if p["_activityid_value"] == activity_id]

    # -- change tracking -----------------------------------------------------------------------------------

    def delta_token(self, version: int) -> str:
        """`<version>!<MM/dd/yyyy HH:mm:ss>`, the documented tokens' shape (919042!08/22/2017 08:10:44)."""
        return f"{version}!{self.now().astimezone(UTC).strftime('%m/%d/%Y %H:%M:%S')}"

    def read_token(self, token: str) -> int:
        version, _, stamp = token.partition("!")
        try:
            issued = datetime.strptime(stamp, "%m/%d/%Y %H:%M:%S").replace(tzinfo=UTC)
            since = int(version)
        except ValueError as exc:
            raise ApiError(400, f"Invalid delta token {token!r}") from exc
        if self.now() - issued > timedelta(days=self.token_days):
            raise ApiError(
                400,
                "Version stamp associated with the client has expired. Please perform a full sync.",
                code="0x80044352",
            )
        return since

    def changes(
        self, since: int | None, upto: int, entity_set: str = "appointments"
    ) -> list[tuple[int, str, dict[str, Any] | None]]:
        """(version, id, row or None when deleted) of a table's rows changed in (since, upto], rows first."""
        rows = [
            (r["versionnumber"], r["activityid"], r)
            for r in self.tables[entity_set].values()
            if (since is None or r["versionnumber"] > since) and r["versionnumber"] <= upto
        ]
        rows.sort(key=lambda x: x[0])
        if since is None:
            return list(rows)
        live = set(self.tables[entity_set])
        gone = {i: v for v, t, i in self.deletions if t == entity_set and since < v <= upto and i not in live}
        return [*rows, *sorted(((v, i, None) for i, v in gone.items()), key=lambda x: x[0])]


def skiptoken(data: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(dict(data)).encode()).decode()


def read_skiptoken(value: str) -> dict[str, Any]:
    try:
        out = json.loads(base64.urlsafe_b64decode(value.encode()))
    except ValueError as exc:
        raise ApiError(400, "Invalid $skiptoken") from exc
    if not isinstance(out, dict):
        raise ApiError(400, "Invalid $skiptoken")
    return out


def select(row: Mapping[str, Any], columns: Iterable[str] | None, primary: str) -> dict[str, Any]:
    """The row as the Web API returns it: `@odata.etag`, the selected columns (all when none), the key, and
    the annotations of the selected lookups."""
    if columns is None:
        return dict(row)
    wanted = set(columns) | {primary}
    out: dict[str, Any] = {"@odata.etag": row.get("@odata.etag")} if "@odata.etag" in row else {}
    for k, v in row.items():
        base = k.split("@", 1)[0]
        if base in wanted and (k == base or "@" in k):
            out[k] = v
    for c in wanted:
        out.setdefault(c, None)
    return out
