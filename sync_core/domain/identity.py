"""Meeting identity (rule I1) and the deterministic keys that make creates idempotent (I3).

Pure functions. A meeting key names one meeting across every mailbox copy and the CRM record.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Sequence
from datetime import datetime

from sync_core.domain.model import CrmRecord, GraphEvent, Side, utc
from sync_core.errors import UnprocessableError

# Fixed namespace: changing it would change every idempotency key and transactionId.
_NAMESPACE = uuid.UUID("8f0c7d5e-3b1a-5c4e-9a6d-2f1e0b9c8a7d")

SERIES_TYPES = frozenset({"occurrence", "exception"})


def series_identity(event: GraphEvent) -> str:
    """The key of a single instance or a series master: its iCalUId, the same in every copy (I1)."""
    if event.ical_uid:
        return "ical:" + event.ical_uid
    # No iCalUId (seen on some drafts): only this copy can be named, so it cannot join other copies.
    return f"graph:{event.mailbox.lower()}:{event.event_id}"


def meeting_key(event: GraphEvent, series_key: str | None = None) -> str:
    """I1: a single instance or series master by iCalUId; an occurrence or exception by its series key
    plus its originalStart (never its own iCalUId, whose meaning for occurrences differs between sources).

    `series_key` is the key of the series master the caller found for `event.series_master_id`.
    """
    if event.type in SERIES_TYPES:
        if series_key is None:
            raise UnprocessableError(
                "an occurrence needs the key of its series master",
                side="m365",
                mailbox=event.mailbox,
                item_id=event.event_id,
            )
        if event.original_start is None:
            raise UnprocessableError(
                "an occurrence without originalStart",
                side="m365",
                mailbox=event.mailbox,
                item_id=event.event_id,
            )
        return occurrence_key(series_key, event.original_start)
    return series_identity(event)


def occurrence_key(series_key: str, original_start: datetime) -> str:
    """The key of one occurrence of a series: series key plus its original start in UTC."""
    return f"{series_key}|{utc(original_start).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def crm_meeting_key(record: CrmRecord) -> str:
    """The key of a CRM record: the meeting key we stored on it (`external_ref`); else, for an exception of
    a series edited in the CRM, the series key plus its original start (R3); else "crm:" + its id."""
    if record.external_ref:
        return record.external_ref
    appt = record.appointment
    if appt.series_ref and appt.original_start is not None:
        return occurrence_key(appt.series_ref, appt.original_start)
    return "crm:" + record.crm_id


def crm_id_from_key(key: str) -> str | None:
    """The CRM id named by a CRM-originated key ("crm:<id>"), else None."""
    return key[4:] if key.startswith("crm:") and "|" not in key else None


def idempotency_key(meeting_key: str, side: Side | str) -> str:
    """The idempotency key for creating `meeting_key` on `side` (I3): the same on every retry."""
    return f"{Side(side).value}-{uuid.uuid5(_NAMESPACE, f'{Side(side).value}:{meeting_key}')}"


def transaction_id(meeting_key: str) -> str:
    """The Graph `transactionId` for creating `meeting_key` (I3): a UUID5, 36 characters."""
    return str(uuid.uuid5(_NAMESPACE, "graph-create:" + meeting_key))


# -- our tag on the events we write ------------------------------------------------------------------------
# The extended property's id and name are readable by any mailbox owner, and its value writable on their
# own events (Outlook add-ins, Graph Explorer, delegates). So the value carries a MAC over the mailbox and the
# meeting key: a tag is ours only if it verifies for the mailbox it is read from.

TAG_VERSION = "v1"


def sign_tag(meeting_key: str, mailbox: str, secret: str) -> str:
    """The tag value for `meeting_key` on an event in `mailbox`: the key, then `#v1.` and its MAC."""
    message = f"{TAG_VERSION}\n{mailbox.strip().lower()}\n{meeting_key}".encode()
    mac = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]
    return f"{meeting_key}#{TAG_VERSION}.{mac}"


def verify_tag(value: str | None, mailbox: str, secrets: Sequence[str]) -> str | None:
    """The meeting key a tag read from `mailbox` names, if one of `secrets` signed it for that mailbox;
    else None (a forged tag, one copied from another mailbox, or one of before the tags were signed)."""
    if not value or "#" not in value:
        return None
    key = value.rpartition("#")[0]
    for secret in secrets:
        if hmac.compare_digest(sign_tag(key, mailbox, secret).encode(), value.encode()):
            return key
    return None


# Blank characters, listed (not `\s`): the CRM contract's JSON Schema pattern for ids says the same.
_BLANK = frozenset(" \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff") | frozenset(
    map(chr, range(0x2000, 0x200B))
)


def unsafe_id(value: str) -> str | None:
    """Why an item id from outside (a Graph event id, a CRM id) cannot go into a URL path, or None.
    Percent-encoding keeps `/` from splitting a path, but `.` and `..` survive it and are removed as dot
    segments by HTTP clients, and control characters have no business in an id."""
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in value):
        return "an id with control characters"
    if all(ch in _BLANK for ch in value):
        return "an empty id"
    if value in (".", ".."):
        return f"the id {value!r} is a dot segment"
    return None
