"""The CRM emulator's in-memory state: appointments with versions, idempotency keys, a change sequence
for `changed_since` cursors, and the seeded contacts, users and spaces.

No I/O. Thread-safe (one lock): the aiohttp handlers and the test thread both call it.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_json

from devstack.crm_emulator.directory import Directory
from devstack.crm_emulator.errors import ApiError
from sync_core.domain.model import Appointment

APPOINTMENT_FIELDS = frozenset(Appointment.model_fields)
META_FIELDS = ("id", "version", "external_ref", "created_by", "updated_by", "mailbox_hint", "updated_at")
MAX_PAGE = 1000


@dataclass(frozen=True)
class ChangeEvent:
    """One change to announce by webhook."""

    id: str
    type: str  # appointment.created | .updated | .cancelled | .deleted
    appointment_id: str
    version: str
    occurred_at: str

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "type": self.type,
            "appointment_id": self.appointment_id,
            "version": self.version,
            "occurred_at": self.occurred_at,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _clean_version(value: str) -> str:
    """Accept `v`, `"v"` and `W/"v"` in If-Match, as HTTP clients tend to send ETags."""
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def _validate_appointment(data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate as the contract's JSON: strict, so `0` is no date-time and `true` no integer."""
    try:
        # to_json: the "CRM user" helpers may pass datetimes, which become RFC 3339 strings first.
        return Appointment.model_validate_json(to_json(dict(data)), strict=True).model_dump(mode="json")
    except ValidationError as exc:  # also a date-time with no UTC equivalent (model.utc)
        raise ApiError(422, "invalid_appointment", str(exc)) from exc


def _take_contents(fields: Mapping[str, Any]) -> tuple[dict[str, Any], list[str | None] | None]:
    """F5: `fields` without the attachments' `content_base64` (request only), and those contents by position
    (None when the request sends no attachments). Bytes that are not base64 are refused (422)."""
    out = dict(fields)
    items = out.get("attachments")
    if not isinstance(items, list):
        return out, None
    contents: list[str | None] = []
    cleaned: list[Any] = []
    for item in items:
        content = None
        if isinstance(item, dict) and "content_base64" in item:
            item = dict(item)
            content = item.pop("content_base64")
            try:
                base64.b64decode(content, validate=True)
            except (binascii.Error, TypeError, ValueError) as exc:
                raise ApiError(
                    422, "invalid_appointment", "attachments: content_base64 is not base64"
                ) from exc
        contents.append(content)
        cleaned.append(item)
    out["attachments"] = cleaned
    return out, contents


def _version_key(attachment: Mapping[str, Any]) -> tuple[str, str, int]:
    return (
        str(attachment.get("id") or ""),
        str(attachment.get("last_modified") or ""),
        int(attachment["size"]),
    )


class CrmStore(Directory):
    """Appointments, tombstones and the directory of one emulated CRM."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        # Ids are never reused, not even across resets: a mapping store that outlives a reset (Azurite in
        # the e2e stack) must not meet an old id for a new record, nor a receiver an old event id.
        self._id_prefix = secrets.token_hex(3)
        self._ids = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything; cursors issued before are answered with 410 (new epoch)."""
        with self._lock:
            self._epoch = secrets.token_hex(3)
            self._seq = 0
            self._rows: dict[str, dict[str, Any]] = {}  # id -> wire record
            self._row_seq: dict[str, int] = {}
            self._tombstones: dict[str, int] = {}  # deleted id -> seq of the delete
            self._idempotency: dict[str, str] = {}  # key -> id
            self.users: dict[str, dict[str, Any]] = {}
            self.contacts: dict[str, dict[str, Any]] = {}
            self.spaces: dict[str, dict[str, Any]] = {}
            # F5: attachment bytes by record and attachment version; never in a record or a response.
            self._contents: dict[str, dict[tuple[str, str, int], str]] = {}

    # -- helpers (lock held) --------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self._id_prefix}-{self._ids:05d}"

    def _event(self, kind: str, row_id: str, version: str) -> ChangeEvent:
        return ChangeEvent(self._next_id("evt"), f"appointment.{kind}", row_id, version, _now())

    def _mailbox_hint(self, record: Mapping[str, Any]) -> str | None:
        organizer = record.get("organizer") or {}
        for email in (organizer.get("email"), record.get("created_by")):
            if not email:
                continue
            for user in self.users.values():
                if email.lower() in (
                    str(user.get("email", "")).lower(),
                    str(user.get("mailbox", "")).lower(),
                ):
                    return user.get("mailbox") or None
        return None

    def _commit(self, record: dict[str, Any]) -> dict[str, Any]:
        """Store a changed record with a new version, updated_at and change sequence."""
        self._seq += 1
        record["version"] = secrets.token_hex(8)
        record["updated_at"] = _now()
        record["mailbox_hint"] = self._mailbox_hint(record)
        self._rows[record["id"]] = record
        self._row_seq[record["id"]] = self._seq
        return dict(record)

    def _row(self, crm_id: str) -> dict[str, Any]:
        row = self._rows.get(crm_id)
        if row is None:
            raise ApiError(404, "not_found", f"appointment {crm_id} does not exist")
        return row

    def _precondition(self, row: Mapping[str, Any], if_match: str | None) -> None:
        if if_match is None:
            return
        wanted = _clean_version(if_match)
        if wanted != "*" and wanted != row["version"]:
            raise ApiError(412, "version_mismatch", f"version is {row['version']}, If-Match was {wanted}")

    def _keep_contents(self, crm_id: str, attachments: list[dict[str, Any]], sent: list[str | None]) -> None:
        """The record's attachments hold the bytes just sent, or those stored for the same version."""
        before = self._contents.get(crm_id, {})
        kept: dict[tuple[str, str, int], str] = {}
        for attachment, content in zip(attachments, sent, strict=True):
            key = _version_key(attachment)
            if content is not None:
                kept[key] = content
            elif key in before:
                kept[key] = before[key]
        self._contents[crm_id] = kept

    def attachments(self, crm_id: str) -> list[dict[str, Any]]:
        """F5, for tests: the record's attachments, each with the `content_base64` stored for it, if any."""
        with self._lock:
            row = self._row(crm_id)
            stored = self._contents.get(crm_id, {})
            out = []
            for attachment in row.get("attachments") or ():
                content = stored.get(_version_key(attachment))
                out.append(dict(attachment) | ({"content_base64": content} if content is not None else {}))
            return out

    # -- appointments ---------------------------------------------------------------------------

    def get(self, crm_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._row(crm_id))

    def by_external_ref(self, external_ref: str) -> dict[str, Any]:
        """`{records}`: the records carrying exactly this external_ref (I5), the oldest first, so the one to
        link comes first; a deleted record is not among them."""
        with self._lock:
            return {
                "records": [dict(r) for r in self._rows.values() if r.get("external_ref") == external_ref]
            }

    def create(
        self, body: Mapping[str, Any], *, idempotency_key: str | None, created_by: str | None = None
    ) -> tuple[dict[str, Any], bool, list[ChangeEvent]]:
        """(record, created?, events). A known idempotency key returns its record, created=False."""
        body, contents = _take_contents(body)
        unknown = set(body) - APPOINTMENT_FIELDS - {"external_ref", "created_by"}
        if unknown:
            raise ApiError(422, "unknown_field", f"unknown or read-only fields: {', '.join(sorted(unknown))}")
        appointment = _validate_appointment({k: v for k, v in body.items() if k in APPOINTMENT_FIELDS})
        with self._lock:
            if idempotency_key is not None and idempotency_key in self._idempotency:
                existing = self._idempotency[idempotency_key]
                if existing not in self._rows:
                    raise ApiError(
                        409, "idempotency_key_reused", f"key created {existing}, which has since been deleted"
                    )
                return dict(self._rows[existing]), False, []
            row_id = self._next_id("apt")
            record: dict[str, Any] = {
                "id": row_id,
                "external_ref": body.get("external_ref"),
                "created_by": body.get("created_by", created_by),
                "updated_by": body.get("created_by", created_by),
                **appointment,
            }
            saved = self._commit(record)
            if contents is not None:
                self._keep_contents(row_id, saved["attachments"], contents)
            if idempotency_key is not None:
                self._idempotency[idempotency_key] = row_id
            return saved, True, [self._event("created", row_id, saved["version"])]

    def update(
        self,
        crm_id: str,
        patch: Mapping[str, Any],
        *,
        if_match: str | None,
        updated_by: str | None = None,
    ) -> tuple[dict[str, Any], list[ChangeEvent]]:
        """Merge `patch`; a patch that changes nothing keeps the version and announces nothing.
        `updated_by`: the CRM user making the change (None: an API write, the sync's own)."""
        patch, contents = _take_contents(patch)
        unknown = set(patch) - APPOINTMENT_FIELDS - {"external_ref"}
        if unknown:
            raise ApiError(422, "unknown_field", f"unknown or read-only fields: {', '.join(sorted(unknown))}")
        with self._lock:
            row = self._row(crm_id)
            self._precondition(row, if_match)
            current = {k: v for k, v in row.items() if k in APPOINTMENT_FIELDS}
            merged = _validate_appointment(
                current | {k: v for k, v in patch.items() if k in APPOINTMENT_FIELDS}
            )
            new = {**row, **merged}
            if "external_ref" in patch:
                new["external_ref"] = patch["external_ref"]
            if contents is not None:
                self._keep_contents(crm_id, merged["attachments"], contents)
            if new == row:
                return dict(row), []
            new["updated_by"] = updated_by
            cancelled_now = merged["status"] == "cancelled" and row["status"] != "cancelled"
            kind = "cancelled" if cancelled_now else "updated"
            saved = self._commit(new)
            return saved, [self._event(kind, crm_id, saved["version"])]

    def cancel(self, crm_id: str, *, if_match: str | None) -> tuple[dict[str, Any], list[ChangeEvent]]:
        return self.update(crm_id, {"status": "cancelled"}, if_match=if_match)

    def delete(self, crm_id: str, *, if_match: str | None) -> list[ChangeEvent]:
        with self._lock:
            row = self._row(crm_id)
            self._precondition(row, if_match)
            del self._rows[crm_id]
            del self._row_seq[crm_id]
            self._contents.pop(crm_id, None)
            self._seq += 1
            self._tombstones[crm_id] = self._seq
            return [self._event("deleted", crm_id, row["version"])]

    def touch(self, crm_id: str) -> list[ChangeEvent]:
        """A concurrent CRM-side write that changes only the version (fault injection)."""
        with self._lock:
            row = self._rows.get(crm_id)
            if row is None:
                return []
            saved = self._commit(dict(row))
            return [self._event("updated", crm_id, saved["version"])]

    def changed(self, cursor: str | None, limit: int) -> dict[str, Any]:
        """`{records, deleted_ids, cursor, more}`: the latest state of everything changed after `cursor`."""
        with self._lock:
            after = self._parse_cursor(cursor)
            items = [(s, i, False) for i, s in self._row_seq.items() if s > after]
            items += [(s, i, True) for i, s in self._tombstones.items() if s > after]
            items.sort()
            page, more = items[:limit], len(items) > limit
            last = page[-1][0] if more else self._seq
            return {
                "records": [dict(self._rows[i]) for _, i, deleted in page if not deleted],
                "deleted_ids": [i for _, i, deleted in page if deleted],
                "cursor": f"{self._epoch}.{last}",
                "more": more,
            }

    def _parse_cursor(self, cursor: str | None) -> int:
        if not cursor:  # absent or empty: from the beginning
            return 0
        # Anything but a cursor of this epoch is 410, never 400: the client then sweeps from the beginning,
        # where a 400 would leave it stuck on a cursor it cannot repair.
        epoch, sep, number = cursor.partition(".")
        if (
            not sep
            or epoch != self._epoch
            or not (number.isascii() and number.isdigit())
            or int(number) > self._seq
        ):
            raise ApiError(410, "cursor_expired", f"cannot serve cursor {cursor!r}; sync again without it")
        return int(number)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "appointments": [dict(r) for r in self._rows.values()],
                "deleted_ids": list(self._tombstones),
            }
