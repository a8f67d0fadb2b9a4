"""Identifiers shaped like Exchange's: event ids, changeKeys, iCalUIds, occurrence ids."""

from __future__ import annotations

import base64
import hashlib
import secrets
import struct
import uuid
from datetime import date, datetime

# Immutable Outlook ids start with these bytes ("AAkALg..." once encoded); the emulator never
# moves items, so every id it hands out is already immutable.
_ID_HEADER = b"\x00\x09\x00\x2e\x00\x00"
_ID_RANDOM_LEN = 24
_MASTER_LEN = len(_ID_HEADER) + 16 + 5 + _ID_RANDOM_LEN + 2
_OCCURRENCE_MARKER = b"\x07\x00"
# Outlook's Global Object Id class id; iCalUId is this GOID in hex.
_GOID_CLASS = bytes.fromhex("040000008200E00074C5B7101A82E008")


def mailbox_bytes(mailbox_id: str) -> bytes:
    """16 bytes for a mailbox: its GUID when it is one, else a stable hash."""
    try:
        return uuid.UUID(mailbox_id).bytes
    except ValueError:
        return hashlib.sha1(mailbox_id.encode()).digest()[:16]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def new_event_id(mailbox_id: str) -> str:
    """A fresh, case-sensitive, url-safe base64 id (may contain '-', '_' and '=')."""
    raw = (
        _ID_HEADER
        + mailbox_bytes(mailbox_id)
        + b"\x46\x00\x00\x00\x00"
        + secrets.token_bytes(_ID_RANDOM_LEN)
        + b"\x00\x00"
    )
    return _b64(raw)


def occurrence_id(master_id: str, original_date: date) -> str:
    """The id of one occurrence: the master's id plus the occurrence's original date."""
    raw = base64.urlsafe_b64decode(master_id)
    return _b64(
        raw
        + _OCCURRENCE_MARKER
        + struct.pack(">HBB", original_date.year, original_date.month, original_date.day)
    )


def parse_occurrence_id(event_id: str) -> tuple[str, date] | None:
    """(master id, original date) when `event_id` names an occurrence, else None."""
    try:
        raw = base64.urlsafe_b64decode(event_id)
    except (ValueError, TypeError):
        return None
    if len(raw) != _MASTER_LEN + 6 or raw[_MASTER_LEN : _MASTER_LEN + 2] != _OCCURRENCE_MARKER:
        return None
    year, month, day = struct.unpack(">HBB", raw[_MASTER_LEN + 2 :])
    try:
        return _b64(raw[:_MASTER_LEN]), date(year, month, day)
    except ValueError:
        return None


class ChangeKeys:
    """changeKey values: a per-emulator prefix and a counter, so every edit yields a new key."""

    def __init__(self) -> None:
        self._prefix = secrets.token_bytes(16)
        self._counter = 0

    def next(self) -> str:
        self._counter += 1
        return base64.b64encode(self._prefix + self._counter.to_bytes(6, "big")).decode()


def etag(change_key: str) -> str:
    return f'W/"{change_key}"'


def new_ical_uid(created: datetime) -> str:
    """An Outlook-style iCalUId (GOID hex) with a zero instance date, as for a series or single event."""
    filetime = int((created.timestamp() + 11644473600) * 10_000_000)
    data = secrets.token_bytes(16)
    raw = (
        _GOID_CLASS
        + b"\x00\x00\x00\x00"
        + struct.pack("<Q", filetime)
        + b"\x00" * 8
        + struct.pack("<I", len(data))
        + data
    )
    return raw.hex().upper()


def occurrence_ical_uid(series_ical_uid: str, original_date: date) -> str:
    """The occurrence's iCalUId: the series GOID with the instance date bytes filled in."""
    raw = bytearray(bytes.fromhex(series_ical_uid))
    if len(raw) < 20 or bytes(raw[:16]) != _GOID_CLASS:
        return series_ical_uid
    raw[16:20] = struct.pack(">HBB", original_date.year, original_date.month, original_date.day)
    return bytes(raw).hex().upper()


def opaque_token(nbytes: int = 18) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).decode().rstrip("=")
