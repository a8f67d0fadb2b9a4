"""Dataverse's appointment state: (statecode, statuscode) pairs to and from our Status, through the tenant's
DATAVERSE_STATUS_MAP. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sync_core.domain.model import ShowAs, Status
from sync_core.settings import DEFAULT_DATAVERSE_STATUS_MAP

# statecode 0 Open (statuscode 1 Free, 2 Tentative), 1 Completed (3), 2 Canceled (4), 3 Scheduled (5 Busy,
# 6 Out of Office). A new row is Open/Free (statecode is not valid for create); closed rows are read-only.
OPEN, COMPLETED, CANCELED, SCHEDULED = 0, 1, 2, 3
FREE, TENTATIVE, DONE, CANCELLED_CODE, BUSY, OUT_OF_OFFICE = 1, 2, 3, 4, 5, 6
CLOSED_STATES = frozenset({COMPLETED, CANCELED})
# What a pair no status lists means: the statecode's own sense (a tenant's statuscode not in the map)
BY_STATE = {
    OPEN: Status.TENTATIVE,
    COMPLETED: Status.CONFIRMED,
    CANCELED: Status.CANCELLED,
    SCHEDULED: Status.CONFIRMED,
}


@dataclass(frozen=True)
class StatusMap:
    """DATAVERSE_STATUS_MAP: each of our statuses and its (statecode, statuscode) pairs, validated at start
    (sync_core.settings). The first pair is written (an out-of-office appointment: the status's pair with
    statuscode 6, if it lists one); every pair is read. A pair several statuses list (prospect and hold are
    both Open/Free by default) is told apart by the status we kept in msync_syncdata, or else by its state;
    a pair none lists is read by its state (Open tentative, Scheduled and Completed confirmed, Canceled
    cancelled), or as the kept status when that one lists a pair of the same state."""

    pairs: tuple[tuple[Status, tuple[tuple[int, int], ...]], ...]

    @classmethod
    def of(cls, statuses: Mapping[str, Iterable[tuple[int, int]]]) -> StatusMap:
        merged = {**DEFAULT_DATAVERSE_STATUS_MAP, **statuses}
        return cls(tuple((s, tuple((int(p[0]), int(p[1])) for p in merged[s.value])) for s in Status))

    def _of(self, status: Status) -> tuple[tuple[int, int], ...]:
        return next(p for s, p in self.pairs if s is status)

    @property
    def cancelled(self) -> tuple[int, int]:
        """The pair a cancel writes (its statecode is always 2, Canceled)."""
        return self._of(Status.CANCELLED)[0]

    def state_of(self, status: Status, show_as: ShowAs) -> tuple[int, int]:
        """The (statecode, statuscode) `status` is written as."""
        pairs = self._of(status)
        if show_as is ShowAs.OOF:
            return next((p for p in pairs if p[1] == OUT_OF_OFFICE), pairs[0])
        return pairs[0]

    def status_of(self, statecode: int, statuscode: int, kept: Status | None) -> Status:
        """Our status from the native pair; `kept` (what we wrote) decides only what the pair leaves open."""
        listing = [s for s, pairs in self.pairs if (statecode, statuscode) in pairs]
        if len(listing) == 1:
            return listing[0]
        if kept is not None and kept in listing:
            return kept
        if not listing and kept is not None and any(p[0] == statecode for p in self._of(kept)):
            return kept
        return BY_STATE.get(statecode, Status.CONFIRMED)


DEFAULT_STATUSES = StatusMap.of({})


def state_of(status: Status, show_as: ShowAs, statuses: StatusMap = DEFAULT_STATUSES) -> tuple[int, int]:
    """The (statecode, statuscode) a neutral status is written as (`statuses`: the tenant's map)."""
    return statuses.state_of(status, show_as)


def status_of(
    statecode: int, statuscode: int, kept: Status | None, statuses: StatusMap = DEFAULT_STATUSES
) -> Status:
    """Our status from the native pair; `kept` (what we wrote) refines only what the pair leaves open."""
    return statuses.status_of(statecode, statuscode, kept)
