"""The CRM emulator's directory: the seeded users, contacts and spaces, the contacts found by email and the
users' and spaces' pages. No I/O; part of CrmStore, under its lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from devstack.crm_emulator.errors import ApiError

MANAGEMENT_MODES = ("outlook_auto_accept", "outlook_moderated", "crm_managed")
MAX_EMAIL_LENGTH = 320  # the contract's maxLength (RFC 3696's limit)
MAX_CONTACT_EMAILS = 50


class Directory:
    """CrmStore's users, contacts and spaces (its `reset` makes the tables, `_next_id` names new rows)."""

    _lock: threading.RLock
    users: dict[str, dict[str, Any]]
    contacts: dict[str, dict[str, Any]]
    spaces: dict[str, dict[str, Any]]

    def _next_id(self, prefix: str) -> str:
        raise NotImplementedError

    def seed(
        self,
        *,
        users: Iterable[Mapping[str, Any]] = (),
        contacts: Iterable[Mapping[str, Any]] = (),
        spaces: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """Add or replace (by id) users, contacts and spaces; a missing id is generated."""
        with self._lock:
            for u in users:
                self._put(self.users, "usr", u, required=("email",), optional={"name": "", "mailbox": None})
            for c in contacts:
                self._put(self.contacts, "con", c, required=("email",), optional={"name": ""})
            for s in spaces:
                mode = s.get("management_mode", "outlook_auto_accept")
                if mode not in MANAGEMENT_MODES:
                    raise ApiError(
                        422, "invalid_space", f"management_mode {mode!r} not in {MANAGEMENT_MODES}"
                    )
                self._put(
                    self.spaces,
                    "spc",
                    s,
                    required=("name",),
                    optional={"room_mailbox": None, "management_mode": "outlook_auto_accept"},
                )

    def _put(
        self,
        table: dict[str, dict[str, Any]],
        prefix: str,
        item: Mapping[str, Any],
        *,
        required: tuple[str, ...],
        optional: Mapping[str, Any],
    ) -> None:
        missing = [k for k in required if not item.get(k)]
        if missing:
            raise ApiError(422, "invalid_seed", f"{prefix} item lacks {', '.join(missing)}: {dict(item)}")
        row_id = str(item.get("id") or self._next_id(prefix))
        row = {
            "id": row_id,
            **{k: item[k] for k in required},
            **{k: item.get(k, d) for k, d in optional.items()},
        }
        if "email" in row:
            row["email"] = str(row["email"]).strip().lower()
        table[row_id] = row

    def find_contacts(self, emails: list[str]) -> list[dict[str, Any]]:
        if not emails:
            raise ApiError(400, "email_required", "give at least one `email` parameter")
        if len(emails) > MAX_CONTACT_EMAILS:
            raise ApiError(400, "too_many_emails", f"at most {MAX_CONTACT_EMAILS} `email` parameters")
        if any(len(e) > MAX_EMAIL_LENGTH for e in emails):
            raise ApiError(400, "email_too_long", f"an `email` is at most {MAX_EMAIL_LENGTH} characters")
        wanted = {e.strip().lower() for e in emails}
        with self._lock:
            out: dict[str, dict[str, Any]] = {}
            for contact in self.contacts.values():
                if contact["email"] in wanted:
                    out.setdefault(contact["email"], dict(contact))
            return list(out.values())

    def page(self, table_name: str, cursor: str | None, limit: int) -> dict[str, Any]:
        """`{<table_name>: [...], next_cursor}` for users or spaces; the cursor is an offset."""
        if cursor and not (cursor.isascii() and cursor.isdigit()):
            raise ApiError(400, "invalid_cursor", f"{cursor!r} is not a cursor this CRM issued")
        start = int(cursor or 0)
        with self._lock:
            table = self.users if table_name == "users" else self.spaces
            rows = [dict(r) for r in table.values()]
        chunk = rows[start : start + limit]
        nxt = str(start + limit) if start + limit < len(rows) else None
        return {table_name: chunk, "next_cursor": nxt}
