"""A Recurrence in Graph's patternedRecurrence JSON and its occurrences as the Graph emulator expands them
(Graph's documented semantics, not a codec's): what the CRM recurrence codecs' property tests compare with
(tests/dataverse/test_dataverse_recurrence.py, tests/salesforce/test_salesforce_recurrence.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from itertools import islice
from typing import Any

from devstack.graph_emulator.recurrence import series_dates
from devstack.graph_emulator.state import SeriesShape
from sync_core.domain.model import Recurrence

FOREVER = datetime.max.replace(tzinfo=UTC)


def graph_form(rec: Recurrence) -> dict[str, Any]:
    """The pattern in Graph's JSON shape, as the Graph emulator keeps it."""
    p, r = rec.pattern, rec.range
    return {
        "pattern": {
            "type": p.type,
            "interval": p.interval,
            "month": p.month,
            "dayOfMonth": p.day_of_month,
            "daysOfWeek": list(p.days_of_week),
            "firstDayOfWeek": p.first_day_of_week,
            "index": p.index,
        },
        "range": {
            "type": r.type,
            "startDate": r.start_date.isoformat(),
            "endDate": (r.end_date or date(1, 1, 1)).isoformat(),
            "recurrenceTimeZone": r.time_zone,
            "numberOfOccurrences": r.number_of_occurrences,
        },
    }


def graph_series(
    rec: Recurrence, start: datetime, end: datetime, count: int, horizon: datetime = FOREVER
) -> list[tuple[datetime, datetime]]:
    """The first `count` occurrences (start, end) before `horizon` of a series whose first instance is
    `start` to `end`, as the Graph emulator lays them out."""
    shape = SeriesShape(start, end, rec.range.time_zone, graph_form(rec), {}, frozenset())
    return [(s, e) for _, s, e in islice(series_dates(shape, horizon), count)]
