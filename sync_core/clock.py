"""The one source of the current time for the I/O side; the composition root owns it, tests replace it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class SystemClock:
    """The machine's wall clock: what runs in Azure and in the local stack."""

    def now(self) -> datetime:
        return datetime.now(UTC)
