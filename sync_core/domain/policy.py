"""The validated sync policy: every configurable of the rule catalogue with its default (docs/sync-rules.md).

Pure: `load_policy` parses JSON text, a file or a mapping and reports every problem at once.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sync_core.domain.model import ShowAs, Status
from sync_core.errors import ConfigurationError

RoomMode = Literal["outlook_auto_accept", "outlook_moderated", "crm_managed"]
DeletePolicyValue = Literal["propagate", "keep"]

_EXT_PROP_ID = re.compile(
    r"^String \{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\} Name \w+$"
)
DEFAULT_EXTENDED_PROPERTY_ID = "String {5d0c3b8e-6f0a-4d1e-9b7a-3c2f1e0d9a8b} Name CrmSyncMeetingKey"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _email(value: str) -> str:
    value = value.strip().lower()
    if "@" not in value or value.startswith("@") or value.endswith("@"):
        raise ValueError(f"not an email address: {value!r}")
    return value


class SyncUser(_Frozen):
    """S1: a CRM user whose mailbox is synced. `primary_mailbox` receives events created in the CRM."""

    email: str
    primary_mailbox: str | None = None  # defaults to `email`
    mailboxes: tuple[str, ...] = ()  # further mailboxes linked to the user (shared mailboxes)
    crm_user_id: str
    enabled: bool = True
    # CRM users (by email) who may book in this user's name: their records are written to this mailbox and
    # Exchange sends the invitations as this user. Everyone else's records naming this user as organizer
    # follow W2 (the organizer field means "send as", so it is not taken from whoever typed it).
    delegates: tuple[str, ...] = ()

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        return _email(v)

    @field_validator("primary_mailbox")
    @classmethod
    def _primary(cls, v: str | None) -> str | None:
        return None if v is None else _email(v)

    @field_validator("mailboxes", "delegates")
    @classmethod
    def _mailboxes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_email(x) for x in v)

    @property
    def primary(self) -> str:
        return self.primary_mailbox or self.email

    @property
    def all_mailboxes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.primary, *self.mailboxes)))


class RoomMapping(_Frozen):
    """M1: a CRM space and its room (resource) mailbox, with how bookings of it are decided."""

    mailbox: str
    crm_space_id: str
    display_name: str
    mode: RoomMode = "outlook_auto_accept"
    time_zone: str | None = None  # M6: rooms may sit in different zones

    @field_validator("mailbox")
    @classmethod
    def _email(cls, v: str) -> str:
        return _email(v)


class DeletePolicy(_Frozen):
    """L4: what a delete or cancel on one side does to the other, per direction."""

    m365_to_crm: DeletePolicyValue = "propagate"
    crm_to_m365: DeletePolicyValue = "propagate"


class EventDefaults(_Frozen):
    """W3: values given to events created in M365 from the CRM when the CRM leaves them unset."""

    show_as: ShowAs | None = None
    reminder_minutes: int | None = Field(default=None, ge=0)
    categories: tuple[str, ...] = ()


class Policy(_Frozen):
    """Every configurable of the rule catalogue; the defaults are the catalogue's defaults."""

    direction: Literal["two_way", "m365_to_crm", "crm_to_m365"] = "two_way"  # D1
    conflict: Literal["m365_wins", "crm_wins", "newest_wins"] = "m365_wins"  # D3
    private_events: Literal["skip", "without_details", "full"] = "without_details"  # S3
    internal_events: Literal["skip", "sync"] = "skip"  # S4
    unmatched_events: Literal["skip", "sync"] = "skip"  # S5
    past_days: int = Field(default=30, ge=0, le=1825)  # S6
    future_days: int = Field(default=365, ge=1, le=1825)  # S6
    push_statuses: tuple[Status, ...] = (Status.CONFIRMED,)  # L1
    skip_imported: bool = True  # S7
    recurring: Literal["series", "skip", "expand"] = "series"  # R4
    delete_policy: DeletePolicy = DeletePolicy()  # L4
    activity_sync_days: int = Field(default=14, ge=0)  # L5
    attendee_cap: int | None = Field(default=None, ge=1, le=500)  # F3
    attachments: Literal["none", "metadata", "content"] = "metadata"  # F5
    # F5: with `content`, files up to this size are copied; larger ones (and item/reference attachments)
    # go as metadata. 3 MB: Graph's own limit for adding a file in one request (event-post-attachments.md).
    attachment_content_max_bytes: int = Field(default=3 * 1024 * 1024, ge=0, le=150 * 1024 * 1024)
    max_deletes_per_run: int = Field(default=20, ge=0)  # X1
    sync_users: tuple[SyncUser, ...] = ()  # S1
    own_domains: tuple[str, ...] = ()  # S4
    rooms: tuple[RoomMapping, ...] = ()  # M1
    crm_defaults: dict[str, str] = Field(default_factory=dict)  # W3/M2: required CRM fields on create
    m365_status: Status = Status.CONFIRMED  # M2: status of a meeting created from M365
    crm_managed_status: Status = Status.PROSPECT  # M4: status of a booking of a CRM-managed room
    event_defaults: EventDefaults = EventDefaults()  # W3
    default_calendar: str | None = None  # W2
    extended_property_id: str = DEFAULT_EXTENDED_PROPERTY_ID  # D4/I3: tags the events we write

    @field_validator("own_domains")
    @classmethod
    def _domains(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(d.strip().lower().lstrip("@") for d in v)
        for d in out:
            if not d or "." not in d or "@" in d:
                raise ValueError(f"not a domain: {d!r}")
        return out

    @field_validator("default_calendar")
    @classmethod
    def _calendar(cls, v: str | None) -> str | None:
        return None if v is None else _email(v)

    @model_validator(mode="after")
    def _cross_checks(self) -> Policy:
        problems = cross_field_problems(self.model_dump(mode="json"))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- lookups used by the engine ---------------------------------------------------------------
    def user_for_mailbox(self, mailbox: str | None) -> SyncUser | None:
        """The enabled sync user owning `mailbox` (S1), or None."""
        if not mailbox:
            return None
        mailbox = mailbox.lower()
        for user in self.sync_users:
            if user.enabled and (mailbox in user.all_mailboxes or mailbox == user.email):
                return user
        return None

    def user_for_email(self, email: str | None) -> SyncUser | None:
        """The enabled sync user with this email or mailbox, or None."""
        return self.user_for_mailbox(email)

    def room(self, mailbox: str | None) -> RoomMapping | None:
        """The room mapped to this mailbox (M1), or None."""
        if not mailbox:
            return None
        mailbox = mailbox.lower()
        return next((r for r in self.rooms if r.mailbox == mailbox), None)

    def room_by_name(self, display_name: str) -> RoomMapping | None:
        """M1: the room whose display name matches, case-insensitively; names are unique by validation."""
        name = display_name.strip().casefold()
        return next((r for r in self.rooms if r.display_name.strip().casefold() == name), None)

    def is_internal(self, email: str) -> bool:
        """S4: the address belongs to one of the organisation's own domains."""
        domain = email.rsplit("@", 1)[-1].lower()
        return domain in self.own_domains

    @classmethod
    def default(cls) -> Policy:
        """A small demo setup: two sync users, two rooms, every other value at its catalogue default."""
        return cls(
            own_domains=("contoso.com",),
            sync_users=(
                SyncUser(email="linda@contoso.com", crm_user_id="u-linda"),
                SyncUser(email="julie@contoso.com", crm_user_id="u-julie"),
            ),
            rooms=(
                RoomMapping(
                    mailbox="boardroom@contoso.com", crm_space_id="s-board", display_name="Board Room"
                ),
                RoomMapping(
                    mailbox="hall@contoso.com",
                    crm_space_id="s-hall",
                    display_name="Event Hall",
                    mode="crm_managed",
                ),
            ),
            crm_defaults={"event_type": "meeting"},
        )


def _str(x: Any) -> str:
    return str(x).strip().lower() if x is not None else ""


def cross_field_problems(raw: Mapping[str, Any]) -> list[str]:
    """Checks spanning several fields, run on raw data so they are reported even beside field errors."""
    problems: list[str] = []
    users = [u for u in raw.get("sync_users") or () if isinstance(u, Mapping)]
    rooms = [r for r in raw.get("rooms") or () if isinstance(r, Mapping)]

    owner: dict[str, str] = {}
    for i, user in enumerate(users):
        email = _str(user.get("email"))
        primary = _str(user.get("primary_mailbox")) or email
        others = [_str(m) for m in user.get("mailboxes") or ()]
        for mailbox in dict.fromkeys([primary, *others]):
            if not mailbox:
                continue
            if mailbox in owner and owner[mailbox] != email:
                problems.append(f"sync_users.{i}: mailbox {mailbox} is already linked to {owner[mailbox]}")
            owner.setdefault(mailbox, email)
    for field in ("email", "crm_user_id"):
        counts = Counter(_str(u.get(field)) for u in users if u.get(field))
        for value, n in sorted(counts.items()):
            if n > 1:
                problems.append(f"sync_users: {field} {value} appears {n} times")

    names = Counter(_str(r.get("display_name")).casefold() for r in rooms if r.get("display_name"))
    for name, n in sorted(names.items()):
        if n > 1:
            problems.append(
                f"rooms: display name {name!r} is ambiguous ({n} rooms), map spaces explicitly (M1)"
            )
    for field in ("mailbox", "crm_space_id"):
        counts = Counter(_str(r.get(field)) for r in rooms if r.get(field))
        for value, n in sorted(counts.items()):
            if n > 1:
                problems.append(f"rooms: {field} {value} appears {n} times")
    for i, room in enumerate(rooms):
        mailbox = _str(room.get("mailbox"))
        if mailbox in owner:
            problems.append(f"rooms.{i}: mailbox {mailbox} is also a sync user's mailbox")

    default_calendar = _str(raw.get("default_calendar"))
    room_mailboxes = {_str(r.get("mailbox")) for r in rooms}
    if default_calendar and default_calendar not in owner and default_calendar not in room_mailboxes:
        problems.append(
            f"default_calendar: {default_calendar} is neither a sync user's mailbox nor a room (W2)"
        )

    statuses = raw.get("push_statuses")
    if isinstance(statuses, list | tuple) and "cancelled" in statuses:
        problems.append("push_statuses: 'cancelled' cannot be pushed; cancellation is rule L3")
    ext = raw.get("extended_property_id")
    if isinstance(ext, str) and not _EXT_PROP_ID.match(ext):
        problems.append("extended_property_id: must look like 'String {GUID} Name SomeName'")
    return problems


def _flatten(error: ValidationError) -> list[str]:
    lines = []
    for err in error.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "policy"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}")
    return lines


def load_policy(data: Mapping[str, Any] | str | Path) -> Policy:
    """Parse and validate a policy (JSON text, a JSON file, or a mapping).

    Raises ConfigurationError listing every problem: field errors as "field.path: message" lines plus
    the cross-field checks (ambiguous room names, duplicate mailboxes, unknown references).
    """
    raw: Any
    if isinstance(data, Path) or (isinstance(data, str) and not data.lstrip().startswith("{")):
        path = Path(data)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError([f"policy file {path}: {exc.strerror or exc}"]) from exc
    elif isinstance(data, str):
        text = data
    else:
        text = None
        raw = data
    if text is not None:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError([f"policy: not valid JSON: {exc}"]) from exc
    if not isinstance(raw, Mapping):
        raise ConfigurationError(["policy: must be a JSON object"])
    try:
        return Policy.model_validate(dict(raw))
    except ValidationError as exc:
        field_problems = [p for p in _flatten(exc) if not p.startswith("policy: ")]
        cross = cross_field_problems(raw)
        raise ConfigurationError(field_problems + [p for p in cross if p not in field_problems]) from exc
