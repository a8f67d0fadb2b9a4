"""R1/R3 through DataverseConnector against the Dataverse emulator: a series is a recurringappointmentmaster,
an edited occurrence its instance row (an exception), a cancelled occurrence a cancelled instance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.dataverse_emulator import DataverseEmulator
from sync_core.adapters.crm.dataverse import DataverseConnector
from sync_core.domain.model import Appointment, Recurrence, RecurrencePattern, RecurrenceRange, Status
from sync_core.errors import ConcurrencyError, TransientError, UnprocessableError
from tests.crm.test_crm_contract import make_appointment

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, 10:00 in Berlin
WEEK = timedelta(weeks=1)


def weekly(count: int = 4, **pattern: Any) -> Recurrence:
    return Recurrence(
        pattern=RecurrencePattern(type="weekly", days_of_week=("monday",), **pattern),
        range=RecurrenceRange(
            type="numbered", start_date=START.date(), number_of_occurrences=count, time_zone="Europe/Berlin"
        ),
    )


def series(**changes: Any) -> Appointment:
    base = {
        "start": START,
        "end": START + timedelta(hours=1),
        "recurrence": weekly(),
        "time_zone": "Europe/Berlin",
    }
    return make_appointment(**(base | changes))


def instances(backend: DataverseEmulator) -> list[dict[str, Any]]:
    return sorted((r for r in backend.appointments() if r["seriesid"]), key=lambda r: r["originalstartdate"])


async def test_R1_a_series_is_created_once_as_a_master_with_its_instances_and_reads_back_exactly(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    made = await connector.create_appointment(series(), idempotency_key="s", external_ref="ical:S")
    again = await connector.create_appointment(series(), idempotency_key="s", external_ref="ical:S")
    assert again.crm_id == made.crm_id and made.external_ref == "ical:S"
    assert made.appointment.model_dump(exclude={"origin"}) == series().model_dump(exclude={"origin"})
    rows = instances(backend)
    assert [r["originalstartdate"] for r in rows] == [
        (START + i * WEEK).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(4)
    ]
    assert {(r["instancetypecode"], r["seriesid"]) for r in rows} == {(2, made.crm_id)}
    assert await connector.get_appointment(made.crm_id) == made
    assert (await connector.find_by_external_ref("ical:S")) == made
    assert connector.capabilities.recurrence == "native"


async def test_R3_an_occurrence_cancelled_through_the_connector_is_a_cancelled_instance_on_the_series(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    made = await connector.create_appointment(series(), idempotency_key="s", external_ref="ical:S")
    second = START + WEEK
    after = await connector.update_appointment(
        made.crm_id,
        series(cancelled_occurrences=(second,)),
        fields=["cancelled_occurrences"],
        expected_version=made.version,
    )
    assert after.appointment.cancelled_occurrences == (second,) and after.version != made.version
    assert [r["statecode"] for r in instances(backend)] == [3, 2, 3, 3]  # Scheduled, one Canceled
    with pytest.raises(ConcurrencyError):
        await connector.update_appointment(
            made.crm_id, series(subject="x"), fields=["subject"], expected_version=made.version
        )


async def test_R3_an_occurrence_a_dataverse_user_cancels_reads_back_on_its_series_as_a_change(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    made = await connector.create_appointment(series(), idempotency_key="s", external_ref="ical:S")
    third = instances(backend)[2]
    backend.user_cancel(third["activityid"])
    read = await connector.get_appointment(third["activityid"])  # the webhook names the instance
    assert read is not None and read.crm_id == made.crm_id
    assert read.appointment.cancelled_occurrences == (START + 2 * WEEK,)
    assert read.version != made.version  # not taken for our own write (D4)
    page = await connector.list_changed(None)
    assert [r.crm_id for r in page.records] == [made.crm_id]  # the series once, not one record per instance


async def test_R3_an_edited_occurrence_becomes_its_instance_row_once(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    made = await connector.create_appointment(series(), idempotency_key="s", external_ref="ical:S")
    third = START + 2 * WEEK
    moved = make_appointment(
        start=third + timedelta(hours=2),
        end=third + timedelta(hours=3),
        subject="moved",
        series_ref="ical:S",
        original_start=third,
    )
    exception = await connector.create_appointment(moved, idempotency_key="e", external_ref="ical:S|3")
    again = await connector.create_appointment(moved, idempotency_key="e", external_ref="ical:S|3")
    assert again.crm_id == exception.crm_id and exception.crm_id != made.crm_id
    appt = exception.appointment
    assert (appt.subject, appt.start, appt.series_ref, appt.original_start) == (
        "moved",
        third + timedelta(hours=2),
        "ical:S",
        third,
    )
    row = next(r for r in backend.appointments() if r["activityid"] == exception.crm_id)
    assert (row["instancetypecode"], row["seriesid"], row["msync_externalref"]) == (
        3,
        made.crm_id,
        "ical:S|3",
    )
    assert len(instances(backend)) == 4  # the instance itself, no fifth row
    page = await connector.list_changed(None)
    assert sorted(r.crm_id for r in page.records) == sorted([made.crm_id, exception.crm_id])
    feed = {r.crm_id: r for r in page.records}
    assert feed[exception.crm_id].appointment == exception.appointment  # its parties read with the page


async def test_R3_an_occurrence_a_dataverse_user_edits_is_an_exception_of_its_series(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    made = await connector.create_appointment(series(), idempotency_key="s", external_ref="ical:S")
    second = instances(backend)[1]
    backend.user_update(second["activityid"], subject="only this one")
    read = await connector.get_appointment(second["activityid"])
    assert read is not None and read.crm_id == second["activityid"]
    assert (read.appointment.subject, read.appointment.series_ref, read.appointment.original_start) == (
        "only this one",
        "ical:S",
        START + WEEK,
    )
    assert (await connector.get_appointment(made.crm_id)) is not None


async def test_R3_an_exception_with_no_instance_is_refused_and_one_with_no_series_yet_is_retried(
    connector: DataverseConnector,
) -> None:
    await connector.create_appointment(series(), idempotency_key="s", external_ref="ical:S")
    stray = make_appointment(series_ref="ical:S", original_start=START + timedelta(days=1))
    with pytest.raises(UnprocessableError, match="no instance starting"):
        await connector.create_appointment(stray, idempotency_key="e", external_ref="ical:S|x")
    orphan = make_appointment(series_ref="ical:none", original_start=START)
    with pytest.raises(TransientError, match="no series"):  # retried: its series may be on its way
        await connector.create_appointment(orphan, idempotency_key="o", external_ref="ical:none|x")


async def test_R1_series_edits_reach_the_instances_and_an_unchanged_update_writes_nothing(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    made = await connector.create_appointment(series(), idempotency_key="s", external_ref="ical:S")
    before = len(backend.requests)
    same = await connector.update_appointment(
        made.crm_id, series(), fields=["subject", "recurrence", "attendees"], expected_version=made.version
    )
    assert same.version == made.version
    assert [r.method for r in backend.requests[before:] if r.method != "GET"] == []
    renamed = await connector.update_appointment(
        made.crm_id, series(subject="renamed"), fields=["subject"], expected_version=made.version
    )
    assert renamed.appointment.subject == "renamed"
    assert {r["subject"] for r in instances(backend)} == {"renamed"}
    longer = await connector.update_appointment(
        made.crm_id, series(recurrence=weekly(6)), fields=["recurrence"], expected_version=None
    )
    assert longer.appointment.recurrence == weekly(6) and len(instances(backend)) == 6


async def test_L4_a_series_is_cancelled_and_deleted_with_its_instances(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    made = await connector.create_appointment(series(), idempotency_key="s", external_ref="ical:S")
    cancelled = await connector.cancel_appointment(made.crm_id)
    assert cancelled.appointment.status is Status.CANCELLED
    assert {r["statecode"] for r in instances(backend)} == {2}
    await connector.delete_appointment(made.crm_id)
    assert backend.appointments() == [] and await connector.get_appointment(made.crm_id) is None


async def test_R1_a_series_a_dataverse_user_makes_reads_as_one_series_record_with_its_pattern(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    made = backend.user_create_series(
        {
            "subject": "Team standup",
            "starttime": "2026-03-02T08:30:00Z",
            "endtime": "2026-03-02T08:45:00Z",
            "recurrencepatterntype": 1,
            "isweekdaypattern": True,
            "daysofweekmask": 62,
            "interval": 1,
            "patternstartdate": "2026-03-02",
            "patternendtype": 3,
            "patternenddate": "2026-03-13",
            "utcconversiontimezonecode": 110,
        },
        created_by="adele@contoso.example",
    )
    page = await connector.list_changed(None)
    [record] = page.records
    assert (record.crm_id, record.external_ref, record.created_by) == (
        made["activityid"],
        None,
        "adele@contoso.example",
    )
    appt = record.appointment
    assert (appt.subject, appt.start, appt.end) == (
        "Team standup",
        datetime(2026, 3, 2, 8, 30, tzinfo=UTC),
        datetime(2026, 3, 2, 8, 45, tzinfo=UTC),
    )
    assert appt.recurrence == Recurrence(
        pattern=RecurrencePattern(
            type="weekly", days_of_week=("monday", "tuesday", "wednesday", "thursday", "friday")
        ),
        range=RecurrenceRange(
            type="endDate",
            start_date=START.date(),
            end_date=datetime(2026, 3, 13).date(),
            time_zone="Europe/Berlin",
        ),
    )
    assert len(instances(backend)) == 10 and await connector.get_appointment(made["activityid"]) == record


async def test_L4_a_series_a_dataverse_user_deletes_is_named_by_the_change_feed(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    made = await connector.create_appointment(series(), idempotency_key="s", external_ref="ical:S")
    first = await connector.list_changed(None)
    assert [r.crm_id for r in first.records] == [made.crm_id] and not first.more  # once, from both feeds
    backend.user_delete_series(made.crm_id, deleted_by="adele@contoso.example")
    page = await connector.list_changed(first.cursor)
    assert made.crm_id in page.deleted_ids and page.records == ()
    assert len(page.deleted_ids) == 5  # the series and its four instances (which name nothing we map)


async def test_without_change_tracking_on_series_the_feed_still_reads_every_appointment(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    backend.track_changes("recurringappointmentmasters", False)
    made = await connector.create_appointment(series(), idempotency_key="s", external_ref="ical:S")
    single = await connector.create_appointment(make_appointment(), idempotency_key="a", external_ref="a")
    page = await connector.list_changed(None)
    assert sorted(r.crm_id for r in page.records) == sorted([made.crm_id, single.crm_id])
    assert any(r.status == 400 and "recurringappointmentmasters" in r.path for r in backend.requests)


async def test_a_series_in_a_zone_the_connector_has_no_code_for_is_refused_by_id_and_never_stops_the_feed(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    made = backend.user_create_series(
        {
            "subject": "Bengaluru sync",
            "starttime": "2026-03-02T04:30:00Z",
            "endtime": "2026-03-02T05:00:00Z",
            "recurrencepatterntype": 0,
            "interval": 1,
            "patternstartdate": "2026-03-02",
            "patternendtype": 2,
            "occurrences": 2,
            "utcconversiontimezonecode": 190,
        }
    )
    single = await connector.create_appointment(make_appointment(), idempotency_key="a", external_ref="a")
    page = await connector.list_changed(None)
    assert [r.crm_id for r in page.records] == [single.crm_id]
    assert page.unreadable_ids == (made["activityid"],)  # the sweep queues it; the worker's read poisons it
    with pytest.raises(UnprocessableError, match="time zone code 190"):
        await connector.get_appointment(made["activityid"])
