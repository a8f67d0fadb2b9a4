"""Directory lookups for DataverseConnector: system users and contacts by email (cached for a TTL), who we
are, the users, the spaces and the activity parties of appointments. I/O side, through the request layer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sync_core.adapters.crm.dataverse_http import DataverseHttp
from sync_core.adapters.crm.dataverse_wire import PARTY_COLUMNS, SIDE, SPACE_MODE, Directory, as_guid
from sync_core.domain.model import Appointment
from sync_core.errors import UnprocessableError
from sync_core.ports.crm import Contact, CrmUser, Space

_SPACE_MODES = ("outlook_auto_accept", "outlook_moderated", "crm_managed")


class DataverseDirectory(DataverseHttp):
    """Directory answers of DataverseConnector (which sets these attributes)."""

    _ttl: float
    _clock: Callable[[], float]
    _contacts: dict[str, tuple[Contact | None, float]]
    _users: dict[str, tuple[str | None, float]]  # lower-case email -> systemuserid
    _user_emails: dict[str, str | None]  # systemuserid -> internalemailaddress
    _me: str | None
    _lock: asyncio.Lock

    # -- directory --------------------------------------------------------------------------------------

    async def _whoami(self) -> str:
        if self._me is None:
            data = await self._get_json("WhoAmI", item_id=None, prefer="")
            self._me = str(data.get("UserId") or "").lower()
        return self._me

    async def _last_written_by_us(self, row: Mapping[str, Any]) -> bool:
        return str(row.get("_modifiedby_value") or "").lower() == await self._whoami()

    def _fresh(self, cache: Mapping[str, tuple[Any, float]], wanted: Iterable[str]) -> list[str]:
        now = self._clock()
        return [e for e in wanted if e not in cache or cache[e][1] <= now]

    async def find_contacts(self, emails: Iterable[str]) -> dict[str, Contact]:
        """Contacts by lower-case `emailaddress1`, 50 per query; hits and misses cached for the TTL."""
        wanted = list(dict.fromkeys(e.strip().lower() for e in emails if e and e.strip()))
        async with self._lock:
            missing = self._fresh(self._contacts, wanted)
            until = self._clock() + self._ttl
            rows = await self._lookup(
                "contacts", "emailaddress1", missing, "contactid,fullname,emailaddress1"
            )
            found: dict[str, Contact] = {}
            for row in rows:
                email = str(row.get("emailaddress1") or "").strip().lower()
                if email and row.get("contactid"):
                    found.setdefault(
                        email,
                        Contact(
                            crm_id=str(row["contactid"]), email=email, name=str(row.get("fullname") or "")
                        ),
                    )
            for email in missing:
                self._contacts[email] = (found.get(email), until)
            return {e: c for e in wanted if (c := self._contacts[e][0]) is not None}

    async def _user_ids(self, emails: list[str]) -> dict[str, str]:
        async with self._lock:
            missing = self._fresh(self._users, emails)
            until = self._clock() + self._ttl
            rows = await self._lookup(
                "systemusers", "internalemailaddress", missing, "systemuserid,internalemailaddress"
            )
            found = {
                str(r.get("internalemailaddress") or "").strip().lower(): str(r["systemuserid"])
                for r in rows
                if r.get("systemuserid")
            }
            for email in missing:
                self._users[email] = (found.get(email), until)
            return {e: uid for e in emails if (uid := self._users[e][0]) is not None}

    async def _directory(self, appointment: Appointment) -> Directory:
        emails = [a.email for a in appointment.attendees]
        if appointment.organizer is not None:
            emails.append(appointment.organizer.email)
        emails = list(dict.fromkeys(emails))
        users = await self._user_ids(emails)
        contacts = await self.find_contacts([e for e in emails if e not in users])
        return Directory(users, {e: c.crm_id for e, c in contacts.items()})

    async def _emails_of(self, user_ids: Iterable[str]) -> dict[str, str | None]:
        ids = [i for i in dict.fromkeys(user_ids) if i and i not in self._user_emails]
        if ids:
            valid = [g for i in ids if (g := as_guid(i))]
            rows = await self._lookup(
                "systemusers", "systemuserid", valid, "systemuserid,internalemailaddress", guids=True
            )
            for row in rows:
                email = str(row.get("internalemailaddress") or "").strip().lower()
                self._user_emails[str(row["systemuserid"]).lower()] = email or None
            for i in ids:
                self._user_emails.setdefault(i, None)
        return self._user_emails

    async def list_users(self) -> list[CrmUser]:
        """Enabled system users; the mailbox is `internalemailaddress` for users of the Entra tenant
        (`azureactivedirectoryobjectid` set), none for application users and users without one (S1)."""
        rows = await self._all(
            "systemusers",
            {
                "$select": "systemuserid,fullname,internalemailaddress,"
                "azureactivedirectoryobjectid,applicationid",
                "$filter": "isdisabled eq false",
            },
        )
        users = []
        for r in rows:
            if r.get("applicationid"):
                continue  # an application user (this app's own, among others): no mailbox, no meetings
            email = str(r.get("internalemailaddress") or "").strip().lower()
            mailbox = email if r.get("azureactivedirectoryobjectid") and email else None
            users.append(
                CrmUser(
                    crm_id=str(r["systemuserid"]),
                    email=email,
                    name=str(r.get("fullname") or ""),
                    mailbox=mailbox,
                )
            )
        return users

    async def list_spaces(self) -> list[Space]:
        """Facilities/equipment with their email address as the room mailbox; the management mode is our
        column `msync_managementmode` (outlook_auto_accept when empty)."""
        rows = await self._all("equipments", {"$select": f"equipmentid,name,emailaddress,{SPACE_MODE}"})
        spaces = []
        for r in rows:
            mode = str(r.get(SPACE_MODE) or "outlook_auto_accept")
            if mode not in _SPACE_MODES:
                raise UnprocessableError(
                    f"equipment {r.get('equipmentid')}: {SPACE_MODE} {mode!r} unknown", side=SIDE
                )
            spaces.append(
                Space(
                    crm_id=str(r["equipmentid"]),
                    name=str(r.get("name") or ""),
                    room_mailbox=(str(r["emailaddress"]).lower() if r.get("emailaddress") else None),
                    management_mode=mode,  # type: ignore[arg-type]
                )
            )
        return spaces

    async def _parties_of(self, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {i.lower(): [] for i in ids}
        rows = await self._lookup(
            "activityparties",
            "_activityid_value",
            [g for i in ids if (g := as_guid(i))],
            ",".join(PARTY_COLUMNS),
            guids=True,
        )
        for row in rows:
            out.setdefault(str(row.get("_activityid_value") or "").lower(), []).append(row)
        return out
