"""What the worker keeps: mappings, the decision record, notice claims and the X1 delete budget (Protocols).
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sync_core.domain.actions import Mapping, NotifyOrganizer


@dataclass(frozen=True)
class DecisionRecord:
    """One decision as the record keeps it (E1): which rule fired on which item, and what it led to."""

    side: str
    item_id: str
    at: datetime
    meeting_key: str | None
    rule: str
    reason: str
    actions: list[dict[str, Any]]
    correlation_id: str
    versions: dict[str, str]
    outcome: str


class Mappings(Protocol):
    """Mapping rows by meeting key, with indexes by Graph copy, CRM id and iCalUId. `save` is conditional:
    with `previous` (as read, with its ETag) it fails with ConcurrencyError if the row changed since; with
    no ETag on `mapping` it creates the row and fails with ConcurrencyError if one exists (the I3 claim).

    The decisions about a mapped meeting are kept beside its row (E1): `save(..., decision=)` writes the
    decision with the row, both or neither (the claim and its decision are one Table request); `record`
    writes one alone (before the first external write of a meeting already mapped); `decisions` reads them
    back, newest first."""

    async def get(self, meeting_key: str) -> Mapping | None: ...

    async def lookup(self, key: str, *, homes: Sequence[str] = ()) -> tuple[Mapping | None, str | None]:
        """The row stored under `key`; else the meeting key that `key` (`ical:<uid>`, `crm:<id>`) is an
        alias of, if any. One read: the worker's only Table request for an echo or a duplicate. An iCalUId
        of a meeting keyed otherwise whose other copies have not joined yet is known only beside its own
        copy: `homes` names the mailboxes that may hold that copy (read only when the key found nothing)."""
        ...

    async def find_by_graph(self, mailbox: str, event_id: str) -> str | None: ...

    async def find_by_crm(self, crm_id: str) -> str | None: ...

    async def find_by_ical(self, ical_uid: str, *, homes: Sequence[str] = ()) -> str | None: ...

    async def save(
        self, mapping: Mapping, *, previous: Mapping | None = None, decision: DecisionRecord | None = None
    ) -> Mapping: ...

    async def record(self, decision: DecisionRecord) -> None:
        """The decision alone, beside the row of `decision.meeting_key`."""
        ...

    async def decisions(self, meeting_key: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """The decisions kept beside a meeting's row, newest first (the rows `explain` shows)."""
        ...


class Decisions(Protocol):
    """The record of decisions about no mapped meeting (E1), by item; and the time index of every decision
    (the status page), whichever store holds its record."""

    async def record(
        self,
        *,
        side: str,
        item_id: str,
        at: datetime,
        meeting_key: str | None,
        rule: str,
        reason: str,
        actions: list[dict[str, Any]],
        correlation_id: str,
        versions: dict[str, str],
        outcome: str,
    ) -> None: ...

    async def for_item(self, side: str, item_id: str, *, limit: int = 50) -> list[dict[str, Any]]: ...

    def index(self, decision: DecisionRecord) -> None:
        """Add a decision recorded elsewhere (beside its mapping) to the time index."""
        ...


class Notices(Protocol):
    """Claims on notices to organisers (M4, M5): claimed before the send, released if it failed."""

    async def claim(self, meeting_key: str, notice: NotifyOrganizer, now: datetime) -> bool: ...

    async def release(self, meeting_key: str, notice: NotifyOrganizer) -> None: ...


class DeleteBudget(Protocol):
    """X1: cancels and deletes carried out per mailbox in the current run (one clock hour)."""

    async def used(self, mailbox: str, now: datetime) -> int: ...

    async def spend(self, mailbox: str, now: datetime) -> int: ...
