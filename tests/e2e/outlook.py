"""What an Outlook user does and sees in the end-to-end tests, through the Graph emulator: the request body of
a meeting or a series (the worker tests against the emulators post the same bodies), posted to a mailbox, and
the events of a mailbox with a subject."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.stack import LocalStack

ADELE = "adele@contoso.example"
BRUNO = "bruno@contoso.example"
MEGAN = "megan@fabrikam.example"
STRANGER = "pat@unknown.example"  # in neither CRM's users nor its contacts
LOCAL = "%Y-%m-%dT%H:%M:%S"


def when(moment: datetime) -> dict[str, str]:
    """A start or end as Outlook writes it: the wall time in UTC."""
    return {"dateTime": moment.strftime(LOCAL), "timeZone": "UTC"}


def post(stack: LocalStack, mailbox: str, body: dict[str, Any]) -> None:
    """The mailbox's user makes the event in Outlook."""
    with stack.graph_http() as g:
        g.post(f"/users/{mailbox}/events", json=body).raise_for_status()


def pricing_meeting(subject: str, start: datetime, end: datetime) -> dict[str, Any]:
    """A meeting with a CRM contact (Megan), a colleague (Bruno) and someone the CRM does not know."""
    return {
        "subject": subject,
        "start": when(start),
        "end": when(end),
        "attendees": [
            {"emailAddress": {"address": MEGAN, "name": "Megan Bowen"}, "type": "required"},
            {"emailAddress": {"address": BRUNO, "name": "Bruno Costa"}, "type": "required"},
            {"emailAddress": {"address": STRANGER, "name": "Pat"}, "type": "optional"},
        ],
    }


def weekly(first: datetime, interval: int = 1) -> dict[str, Any]:
    """Every `interval` weeks on the first occurrence's weekday."""
    return {"type": "weekly", "interval": interval, "daysOfWeek": [first.strftime("%A").lower()]}


def series(
    subject: str,
    first: datetime,
    length: timedelta,
    attendees: Sequence[str],
    pattern: dict[str, Any],
    occurrences: int,
) -> dict[str, Any]:
    """A series of `occurrences` meetings from `first`, each `length` long, with required `attendees`."""
    return {
        "subject": subject,
        "start": when(first),
        "end": when(first + length),
        "attendees": [{"emailAddress": {"address": a}, "type": "required"} for a in attendees],
        "recurrence": {
            "pattern": pattern,
            "range": {
                "type": "numbered",
                "startDate": first.date().isoformat(),
                "numberOfOccurrences": occurrences,
            },
        },
    }


def events(stack: LocalStack, mailbox: str, subject: str) -> list[dict[str, Any]]:
    """The events with this subject in any of the mailbox's calendars, as the Graph emulator holds them."""
    return [e for held in stack.graph.dump_events(mailbox).values() for e in held if e["subject"] == subject]
