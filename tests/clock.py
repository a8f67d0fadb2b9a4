"""Time for tests: a clock that moves only when told, and meeting times derived from a clock.

No test writes a calendar date that can drift out of the policy window or into the past: it asks for
`days_ahead(3, 10)` (three days after the clock's date, 10:00 UTC) and the like. A literal date stays only
where the test is about that date, and then the test runs on a `ManualClock` set to match.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from sync_core.clock import Clock, SystemClock


class ManualClock:
    """A `sync_core.clock.Clock` that moves only when told: `set` it to an instant, `advance` it."""

    def __init__(self, at: datetime) -> None:
        self._at = _aware(at)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> datetime:
        self._at = _aware(at)
        return self._at

    def advance(self, by: timedelta) -> datetime:
        self._at += by
        return self._at


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"a clock needs a timezone-aware instant, got {at!r}")
    return at.astimezone(UTC)


def days_ahead(days: int, hour: int = 9, minute: int = 0, *, clock: Clock | None = None) -> datetime:
    """`days` after the clock's UTC date, at hour:minute UTC (the system clock unless one is given).

    End-to-end tests run against processes that read the system clock, so their dates come from it; under
    `faketime` that is the faked date, for every process alike."""
    today = (clock or SystemClock()).now().astimezone(UTC).date()
    return datetime.combine(today + timedelta(days=days), time(hour, minute), tzinfo=UTC)


def graph_time(at: datetime) -> dict[str, Any]:
    """A Graph `dateTimeTimeZone` in UTC, as Outlook clients send it."""
    return {"dateTime": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def iso_z(at: datetime) -> str:
    """An ISO 8601 instant with `Z`, as the CRM contract writes it."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
