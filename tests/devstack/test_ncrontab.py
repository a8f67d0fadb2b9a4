"""NCRONTAB parsing and next occurrence, as the Functions timer trigger reads schedules (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from devstack.ncrontab import next_occurrence

# 2026-01-02 is a Friday.
FRI_0930 = datetime(2026, 1, 2, 9, 30, 0, tzinfo=UTC)


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("0 */5 * * * *", FRI_0930, at(2026, 1, 2, 9, 35)),
        ("0 */5 * * * *", at(2026, 1, 2, 9, 34, 59, 999), at(2026, 1, 2, 9, 35)),
        ("0 */5 * * * *", at(2026, 1, 2, 23, 57), at(2026, 1, 3, 0, 0)),
        ("0 0 * * * *", FRI_0930, at(2026, 1, 2, 10, 0)),
        ("0 0 * * * *", at(2026, 12, 31, 23, 0, 0), at(2027, 1, 1, 0, 0)),
        ("*/10 * * * * *", FRI_0930, at(2026, 1, 2, 9, 30, 10)),
        ("*/10 * * * * *", at(2026, 1, 2, 9, 30, 55), at(2026, 1, 2, 9, 31, 0)),
        ("0 30 9 * * MON-FRI", FRI_0930, at(2026, 1, 5, 9, 30)),  # strictly after: Friday's run is now
        ("0 30 9 * * MON-FRI", at(2026, 1, 2, 9, 29, 59), FRI_0930),
        ("0 30 9 * * mon-fri", at(2026, 1, 3, 12, 0), at(2026, 1, 5, 9, 30)),
        ("0 30 9 * * 1-5", at(2026, 1, 3, 12, 0), at(2026, 1, 5, 9, 30)),
        ("*/15 * * * *", FRI_0930, at(2026, 1, 2, 9, 45)),  # five fields: no seconds
        ("0 15,45 8-10/2 * * *", FRI_0930, at(2026, 1, 2, 10, 15)),
        ("0 0 12 1 Jan,Jul *", FRI_0930, at(2026, 7, 1, 12, 0)),
        ("0 0 12 * * Sunday", FRI_0930, at(2026, 1, 4, 12, 0)),
        ("0 0 0 31 * *", at(2026, 1, 31, 0, 0, 1), at(2026, 3, 31, 0, 0)),
        ("0 0 0 29 2 *", FRI_0930, at(2028, 2, 29, 0, 0)),
        ("0 0 0 13 * FRI", FRI_0930, at(2026, 2, 13, 0, 0)),  # day AND weekday, as NCrontab
        ("5/20 * * * * *", FRI_0930, at(2026, 1, 2, 9, 30, 5)),
    ],
)
def test_next_occurrence(schedule: str, after: datetime, expected: datetime) -> None:
    assert next_occurrence(schedule, after) == expected


def test_naive_moments_are_utc_and_other_zones_are_converted() -> None:
    assert next_occurrence("0 0 * * * *", datetime(2026, 1, 2, 9, 30)) == at(2026, 1, 2, 10, 0)
    plus_two = timezone(timedelta(hours=2))
    assert next_occurrence("0 0 * * * *", datetime(2026, 1, 2, 11, 30, tzinfo=plus_two)) == at(
        2026, 1, 2, 10, 0
    )


@pytest.mark.parametrize(
    "schedule",
    [
        "* * * *",
        "0 0 0 * * * *",
        "60 * * * * *",
        "0 0 24 * * *",
        "0 0 0 0 * *",
        "0 0 0 * 13 *",
        "0 0 0 * * 7",
        "0 */0 * * * *",
        "0 5-1 * * * *",
        "0 0 0 * Foo *",
        "0 0 0 30 Feb *",
        "0 1,,2 * * * *",
    ],
)
def test_invalid_schedules_are_rejected(schedule: str) -> None:
    with pytest.raises(ValueError, match="NCRONTAB"):
        next_occurrence(schedule, FRI_0930)
