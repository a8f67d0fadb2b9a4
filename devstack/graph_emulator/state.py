"""The emulator's in-memory world: mailboxes, events, tombstones, subscriptions, logs; one lock guards it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from devstack.graph_emulator.clock import Clock
from devstack.graph_emulator.errors import GraphError
from devstack.graph_emulator.ids import ChangeKeys, etag

ROOM_MODES = ("auto_accept", "moderated")


@dataclass
class Mailbox:
    """A user or room mailbox. `id` is the user's object id (a GUID in real tenants)."""

    id: str
    mail: str
    display_name: str
    kind: str = "user"
    room_mode: str | None = None
    time_zone: str = "UTC"

    def email_address(self) -> dict[str, str]:
        return {"name": self.display_name, "address": self.mail}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mail": self.mail,
            "display_name": self.display_name,
            "kind": self.kind,
            "room_mode": self.room_mode,
            "time_zone": self.time_zone,
        }


@dataclass(frozen=True)
class SeriesShape:
    """What decides where an event (or a series' occurrences) sits in time; kept per version for delta."""

    start: datetime
    end: datetime
    tz_name: str
    recurrence: dict[str, Any] | None
    exceptions: dict[str, tuple[datetime, datetime]]
    cancelled: frozenset[str]


@dataclass
class ExceptionData:
    """A modified occurrence of a series: field overrides plus its own times and changeKey."""

    fields: dict[str, Any]
    start: datetime
    end: datetime
    change_key: str
    last_modified: datetime
    response_status: dict[str, Any] | None = None


@dataclass
class EventRecord:
    """One stored event (single instance or series master) in one mailbox; times are UTC."""

    id: str
    mailbox_id: str
    fields: dict[str, Any]
    start: datetime
    end: datetime
    start_tz: str
    end_tz: str
    created: datetime
    last_modified: datetime
    change_key: str
    ical_uid: str
    is_organizer: bool
    organizer: dict[str, Any]
    response_status: dict[str, Any]
    is_cancelled: bool = False
    transaction_id: str | None = None
    single_ext: dict[str, tuple[str, str]] = field(default_factory=dict)
    multi_ext: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    exceptions: dict[str, ExceptionData] = field(default_factory=dict)
    cancelled: dict[str, int] = field(default_factory=dict)
    changed_seq: int = 0
    shapes: list[tuple[int, SeriesShape]] = field(default_factory=list)
    organizer_ref: tuple[str, str] | None = None
    copies: dict[str, str] = field(default_factory=dict)
    attachments: list[dict[str, Any]] = field(default_factory=list)  # attachments_api.py

    @property
    def is_series(self) -> bool:
        return self.fields.get("recurrence") is not None

    @property
    def etag(self) -> str:
        return etag(self.change_key)

    def shape(self) -> SeriesShape:
        return SeriesShape(
            start=self.start,
            end=self.end,
            tz_name=(self.fields.get("recurrence") or {}).get("range", {}).get("recurrenceTimeZone")
            or self.start_tz,
            recurrence=self.fields.get("recurrence"),
            exceptions={key: (exc.start, exc.end) for key, exc in self.exceptions.items()},
            cancelled=frozenset(self.cancelled),
        )

    def shape_at(self, seq: int) -> SeriesShape | None:
        """The shape this event had once change `seq` was applied (None if it did not exist yet)."""
        found: SeriesShape | None = None
        for shape_seq, shape in self.shapes:
            if shape_seq <= seq:
                found = shape
            else:
                break
        return found


@dataclass
class Tombstone:
    """A deleted event, kept so delta rounds can report `@removed` for it and its occurrences."""

    seq: int
    record: EventRecord


@dataclass
class Subscription:
    id: str
    resource: str
    mailbox_id: str
    change_types: tuple[str, ...]
    notification_url: str
    lifecycle_url: str | None
    expiration: datetime
    client_state: str | None
    application_id: str
    creator_id: str
    notification_query_options: str | None = None


@dataclass(frozen=True)
class Change:
    """One event change in one mailbox, as the notifier sees it."""

    mailbox_id: str
    event_id: str
    change_type: str
    etag: str


class EmulatorState:
    """Everything the emulator knows. Mutate only while holding `lock` (re-entrant)."""

    def __init__(self, clock: Clock) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.change_keys = ChangeKeys()
        self.listeners: list[Callable[[Change], None]] = []
        self.mailboxes: dict[str, Mailbox] = {}
        self.events: dict[str, dict[str, EventRecord]] = {}
        self.tombstones: dict[str, list[Tombstone]] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.delta_epoch: dict[str, int] = {}
        self.delta_pages: dict[str, list[dict[str, Any]]] = {}
        self.sent_mail: list[dict[str, Any]] = []
        self.seq = 0

    def clear(self, keep_mailboxes: bool = False) -> None:
        with self.lock:
            if not keep_mailboxes:
                self.mailboxes.clear()
            self.events = {mailbox_id: {} for mailbox_id in self.mailboxes}
            self.tombstones = {mailbox_id: [] for mailbox_id in self.mailboxes}
            self.subscriptions.clear()
            self.delta_pages.clear()
            self.sent_mail.clear()
            for mailbox_id in self.delta_epoch:
                self.delta_epoch[mailbox_id] += 1

    # -- mailboxes -------------------------------------------------------------------------------

    def add_mailbox(self, mailbox: Mailbox) -> Mailbox:
        with self.lock:
            for other in self.mailboxes.values():
                if other.id != mailbox.id and other.mail.lower() == mailbox.mail.lower():
                    raise ValueError(f"mail {mailbox.mail!r} already belongs to mailbox {other.id!r}")
            self.mailboxes[mailbox.id] = mailbox
            self.events.setdefault(mailbox.id, {})
            self.tombstones.setdefault(mailbox.id, [])
            self.delta_epoch.setdefault(mailbox.id, 0)
            return mailbox

    def find_mailbox(self, key: str) -> Mailbox | None:
        """By object id or by mail/UPN, case-insensitively."""
        lowered = key.lower()
        with self.lock:
            direct = self.mailboxes.get(key)
            if direct is not None:
                return direct
            for mailbox in self.mailboxes.values():
                if mailbox.id.lower() == lowered or mailbox.mail.lower() == lowered:
                    return mailbox
        return None

    def mailbox(self, key: str) -> Mailbox:
        found = self.find_mailbox(key)
        if found is None:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{key}' is invalid.")
        return found

    # -- change tracking -------------------------------------------------------------------------

    def next_seq(self) -> int:
        with self.lock:
            self.seq += 1
            return self.seq

    def touch(self, record: EventRecord, new_change_key: bool = True) -> None:
        """Mark `record` changed: new changeKey, lastModifiedDateTime, sequence and shape version."""
        with self.lock:
            if new_change_key:
                record.change_key = self.change_keys.next()
            record.last_modified = self.clock.now()
            record.changed_seq = self.next_seq()
            record.shapes.append((record.changed_seq, record.shape()))

    def publish(self, mailbox_id: str, event_id: str, change_type: str, event_etag: str) -> None:
        change = Change(mailbox_id, event_id, change_type, event_etag)
        for listener in list(self.listeners):
            listener(change)

    def store(self, record: EventRecord) -> None:
        with self.lock:
            self.events[record.mailbox_id][record.id] = record

    def remove(self, record: EventRecord) -> None:
        with self.lock:
            self.events[record.mailbox_id].pop(record.id, None)
            seq = self.next_seq()
            self.tombstones[record.mailbox_id].append(Tombstone(seq, record))
