"""GraphAdapter.calendar_view: the window, expanded occurrences, every @odata.nextLink page followed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from graph_support import ALICE, ALICE_MAIL, at, meeting

from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.graph.adapter import CALENDAR_VIEW_PAGE, GraphAdapter
from sync_core.errors import NotFoundError, ThrottledError

START = datetime(2030, 1, 1, tzinfo=UTC)
END = datetime(2031, 1, 1, tzinfo=UTC)


async def _daily_series(adapter: GraphAdapter, emu: GraphEmulator, count: int) -> str:
    """A daily series of `count` occurrences, created through the emulator's Graph surface."""
    import httpx

    body = {
        "subject": "Daily stand-up",
        "start": {"dateTime": "2030-02-01T08:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2030-02-01T08:15:00", "timeZone": "UTC"},
        "recurrence": {
            "pattern": {"type": "daily", "interval": 1},
            "range": {"type": "numbered", "startDate": "2030-02-01", "numberOfOccurrences": count},
        },
    }
    async with httpx.AsyncClient(base_url=emu.base_url, headers={"Authorization": "Bearer x"}) as http:
        response = await http.post(f"/users/{ALICE}/events", json=body)
    assert response.status_code == 201, response.text
    master_id: str = response.json()["id"]
    return master_id


async def test_calendar_view_expands_series_and_follows_next_links(
    adapter: GraphAdapter, emu: GraphEmulator
) -> None:
    count = CALENDAR_VIEW_PAGE + 20  # more than one page
    master_id = await _daily_series(adapter, emu, count)
    ours = await adapter.create_event(
        ALICE_MAIL, meeting("Quarterly review", at(15)), transaction_id="tx-cv-1", tag="meeting-key-1"
    )
    outside = await adapter.create_event(
        ALICE_MAIL, meeting("Next year", datetime(2031, 3, 1, 9, tzinfo=UTC)), transaction_id="tx-2", tag="k2"
    )
    emu.clear_requests()

    events = await adapter.calendar_view(ALICE_MAIL, START, END)

    occurrences = [e for e in events if e.type == "occurrence"]
    assert len(occurrences) == count
    assert {e.series_master_id for e in occurrences} == {master_id}
    assert len({e.event_id for e in events}) == len(events) == count + 1
    assert outside.event_id not in {e.event_id for e in events}
    single = next(e for e in events if e.event_id == ours.event_id)
    assert single.written_by_us == "meeting-key-1"  # the tag comes back expanded
    assert single.appointment.subject == "Quarterly review"
    views = [r for r in emu.requests if r["path"].endswith("/calendarView")]
    assert len(views) == 2  # first page, then the nextLink
    for request in views:
        prefer = request["headers"].get("Prefer", "") + "," + request["headers"].get("prefer", "")
        assert 'IdType="ImmutableId"' in prefer and 'outlook.timezone="UTC"' in prefer


async def test_calendar_view_errors_are_translated(adapter: GraphAdapter, emu: GraphEmulator) -> None:
    with pytest.raises(NotFoundError) as missing:
        await adapter.calendar_view("nobody@contoso.com", START, END)
    assert missing.value.mailbox == "nobody@contoso.com"
    emu.set_faults(ALICE_MAIL, throttle_count=10, retry_after=30)
    with pytest.raises(ThrottledError) as throttled:
        await adapter.calendar_view(ALICE_MAIL, START, END)
    assert throttled.value.retry_after == 30
    assert throttled.value.mailbox == ALICE_MAIL
