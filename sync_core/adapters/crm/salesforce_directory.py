"""Directory lookups for SalesforceConnector: users, contacts and leads by email (cached for a TTL), the
users and the spaces. I/O side, through the request layer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from sync_core.adapters.crm.salesforce_http import SalesforceHttp
from sync_core.adapters.crm.salesforce_wire import SIDE, FieldProfile, soql_string
from sync_core.domain.model import Appointment
from sync_core.errors import UnprocessableError
from sync_core.ports.crm import Contact, CrmUser, Space

BATCH = 100  # literals per `IN (...)`
_SPACE_MODES = ("outlook_auto_accept", "outlook_moderated", "crm_managed")


class SalesforceDirectory(SalesforceHttp):
    """Directory answers of SalesforceConnector (which sets these attributes)."""

    profile: FieldProfile
    _ttl: float
    _clock: Callable[[], float]
    _people: dict[str, tuple[str | None, float]]  # lower-case email -> User/Contact/Lead id
    _lock: asyncio.Lock

    @staticmethod
    def _in(values: list[str]) -> str:
        return "(" + ", ".join(soql_string(v) for v in values) + ")"

    def _fresh(self, wanted: Iterable[str]) -> list[str]:
        now = self._clock()
        return [e for e in wanted if e not in self._people or self._people[e][1] <= now]

    async def _contact_rows(self, emails: list[str]) -> list[dict[str, Any]]:
        fields = self.profile.contact_email_fields
        rows: list[dict[str, Any]] = []
        for start in range(0, len(emails), BATCH):
            batch = self._in(emails[start : start + BATCH])
            where = " OR ".join(f"{f} IN {batch}" for f in fields)
            rows += await self._query(f"SELECT Id, Name, {', '.join(fields)} FROM Contact WHERE {where}")
        return rows

    async def _directory(self, appointment: Appointment) -> dict[str, str]:
        """RelationIds by lower-case email: active users first, then contacts (on the profile's email fields),
        then unconverted leads; hits and misses cached for the TTL."""
        emails = list(dict.fromkeys(a.email for a in appointment.attendees))
        if appointment.organizer is not None:
            emails.append(appointment.organizer.email)
        async with self._lock:
            missing = self._fresh(dict.fromkeys(emails))
            until = self._clock() + self._ttl
            found: dict[str, str] = {}
            for start in range(0, len(missing), BATCH):
                batch = self._in(missing[start : start + BATCH])
                for r in await self._query(
                    f"SELECT Id, Email FROM User WHERE IsActive = true AND Email IN {batch}"
                ):
                    found.setdefault(str(r.get("Email") or "").lower(), str(r["Id"]))
            rest = [e for e in missing if e not in found]
            for row in await self._contact_rows(rest) if rest else []:
                for field in self.profile.contact_email_fields:
                    found.setdefault(str(row.get(field) or "").lower(), str(row["Id"]))
            rest = [e for e in rest if e not in found]
            for start in range(0, len(rest), BATCH):
                batch = self._in(rest[start : start + BATCH])
                soql = f"SELECT Id, Email FROM Lead WHERE IsConverted = false AND Email IN {batch}"
                for r in await self._query(soql):
                    found.setdefault(str(r.get("Email") or "").lower(), str(r["Id"]))
            for email in missing:
                self._people[email] = (found.get(email), until)
            return {e: rid for e in emails if (rid := self._people[e][0]) is not None}

    async def find_contacts(self, emails: Iterable[str]) -> dict[str, Contact]:
        """Contacts whose Email (or, with the Practifi profile, a configured alternate email field) is one
        of `emails`, by lower-case email."""
        wanted = list(dict.fromkeys(e.strip().lower() for e in emails if e and e.strip()))
        out: dict[str, Contact] = {}
        for row in await self._contact_rows(wanted) if wanted else []:
            for field in self.profile.contact_email_fields:
                email = str(row.get(field) or "").strip().lower()
                if email in wanted and email not in out:
                    out[email] = Contact(crm_id=str(row["Id"]), email=email, name=str(row.get("Name") or ""))
        return {e: out[e] for e in wanted if e in out}

    async def list_users(self) -> list[CrmUser]:
        """Active users but the integration user; the mailbox is the Email of users who sign in through
        Entra single sign-on (FederationIdentifier set), none for the others (S1)."""
        me = await self._me()
        rows = await self._query(
            "SELECT Id, Name, Email, FederationIdentifier FROM User WHERE IsActive = true"
        )
        users = []
        for r in rows:
            if r.get("Id") == me:
                continue
            email = str(r.get("Email") or "").strip().lower()
            mailbox = email if r.get("FederationIdentifier") and email else None
            users.append(
                CrmUser(crm_id=str(r["Id"]), email=email, name=str(r.get("Name") or ""), mailbox=mailbox)
            )
        return users

    async def list_spaces(self) -> list[Space]:
        """Our custom object `msync_Space__c`: a room's name, mailbox and management mode (Salesforce's own
        resource calendars carry no mailbox)."""
        rows = await self._query(
            "SELECT Id, Name, msync_RoomMailbox__c, msync_ManagementMode__c FROM msync_Space__c"
        )
        spaces = []
        for r in rows:
            mode = str(r.get("msync_ManagementMode__c") or "outlook_auto_accept")
            if mode not in _SPACE_MODES:
                raise UnprocessableError(
                    f"msync_Space__c {r.get('Id')}: management mode {mode!r} unknown", side=SIDE
                )
            mailbox = r.get("msync_RoomMailbox__c")
            spaces.append(
                Space(
                    crm_id=str(r["Id"]),
                    name=str(r.get("Name") or ""),
                    room_mailbox=str(mailbox).lower() if mailbox else None,
                    management_mode=mode,  # type: ignore[arg-type]
                )
            )
        return spaces
