"""Event series through SalesforceConnector and the Salesforce emulator (R3): a series is written with its
Recurrence2 fields and read back exactly; an exception is its occurrence row, edited; a cancelled occurrence
is a deleted occurrence row; a recurring event holds at most 100 invitees. The emulator's own expansion
follows the Change Data Capture guide's "Recurring Activities" example (cited in devstack's series.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from devstack.salesforce_emulator import API_VERSION, SalesforceEmulator
from sync_core.adapters.crm.salesforce import SalesforceConnector, create_key
from sync_core.adapters.crm.salesforce_wire import FieldProfile
from sync_core.domain.model import (
    Appointment,
    Attendee,
    Recurrence,
    RecurrencePattern,
    RecurrenceRange,
    Status,
)
from sync_core.errors import UnprocessableError
from tests.crm.test_crm_contract import T0, make_appointment
from tests.salesforce.conftest import connect

PROFILES = {"upsert": FieldProfile.of("standard", (), "msync_Key__c"), "lookup": FieldProfile()}


@pytest.fixture(params=sorted(PROFILES))
async def connector(
    backend: SalesforceEmulator, request: pytest.FixtureRequest
) -> AsyncIterator[SalesforceConnector]:
    async with connect(backend, PROFILES[request.param]) as conn:
        yield conn


def weekly(count: int = 5, zone: str = "Europe/Paris", **changes: object) -> Appointment:
    """Mondays at 10:30 Paris time (T0 is Monday 2 March 2026, 09:30 UTC), `count` times."""
    rec = Recurrence(
        pattern=RecurrencePattern(type="weekly", days_of_week=("monday",)),
        range=RecurrenceRange(
            type="numbered", start_date=date(2026, 3, 2), number_of_occurrences=count, time_zone=zone
        ),
    )
    return make_appointment(recurrence=rec, **changes)


def series_rows(backend: SalesforceEmulator) -> tuple[dict[str, object], list[dict[str, object]]]:
    rows = backend.events()
    (head,) = [r for r in rows if r["GroupEventType"] == "3"]
    occurrences = sorted(
        (r for r in rows if r["ActivityRecurrence2Id"] == head["ActivityRecurrence2Id"] and r is not head),
        key=lambda r: str(r["StartDateTime"]),
    )
    return head, [r for r in occurrences if r["Id"] != head["Id"]]


async def test_R3_a_series_is_written_with_its_rrule_and_reads_back_exactly(
    connector: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    appt = weekly()
    made = await connector.create_appointment(appt, idempotency_key="k", external_ref="series-1")
    assert made.appointment == appt
    head, occurrences = series_rows(backend)
    assert head["IsRecurrence2"] is True and head["Recurrence2PatternVersion"] == "1"
    assert head["Recurrence2PatternText"] == "RRULE:FREQ=WEEKLY;BYDAY=MO;WKST=SU;INTERVAL=1;COUNT=5"
    assert head["Recurrence2PatternTimeZone"] == "Europe/Paris"
    assert [r["StartDateTime"] for r in occurrences] == [
        f"2026-03-{d:02d}T09:30:00.000+0000" for d in (2, 9, 16, 23)
    ] + ["2026-03-30T08:30:00.000+0000"]  # 10:30 in Paris, after the clocks went forward on 29 March
    assert await connector.get_appointment(made.crm_id) == made
    assert await connector.find_by_external_ref("series-1") == made  # not one of the occurrence rows
    again = await connector.create_appointment(appt, idempotency_key="k", external_ref="series-1")
    assert again == made  # the occurrences carry copies of the series' keys, yet it is one record
    page = await connector.list_changed(None)
    assert [r.crm_id for r in page.records] == [made.crm_id]


async def test_R3_a_windows_zone_name_and_a_start_before_the_first_occurrence_are_kept(
    connector: SalesforceConnector,
) -> None:
    appt = weekly(zone="W. Europe Standard Time")
    rec = appt.recurrence
    assert rec is not None
    shifted = appt.model_copy(
        update={
            "recurrence": rec.model_copy(
                update={"range": rec.range.model_copy(update={"start_date": date(2026, 2, 26)})}
            )
        }
    )
    made = await connector.create_appointment(shifted, idempotency_key="k", external_ref="m")
    assert made.appointment.recurrence == shifted.recurrence


async def test_R3_one_occurrence_cancelled_is_its_occurrence_row_deleted(
    connector: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    made = await connector.create_appointment(weekly(), idempotency_key="k", external_ref="m")
    cursor = (await connector.list_changed(None)).cursor
    third = datetime(2026, 3, 16, 9, 30, tzinfo=UTC)
    cancelled = made.appointment.model_copy(update={"cancelled_occurrences": (third,)})
    updated = await connector.update_appointment(
        made.crm_id, cancelled, fields=["cancelled_occurrences"], expected_version=made.version
    )
    assert updated.appointment.cancelled_occurrences == (third,)
    _, occurrences = series_rows(backend)
    assert [r["StartDateTime"] for r in occurrences] == [
        f"2026-03-{d:02d}T09:30:00.000+0000" for d in (2, 9, 23)
    ] + ["2026-03-30T08:30:00.000+0000"]
    backend.user_delete(str(occurrences[0]["Id"]))  # a CRM user deletes the first occurrence
    page = await connector.list_changed(cursor)
    assert [r.crm_id for r in page.records] == [made.crm_id] and page.deleted_ids == ()
    assert page.records[0].appointment.cancelled_occurrences == (T0, third)


async def test_R3_an_exception_is_its_occurrence_row_edited(
    connector: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    series = await connector.create_appointment(weekly(), idempotency_key="k", external_ref="series-1")
    second = T0 + timedelta(days=7)
    moved = make_appointment(
        subject="Quarterly review (moved)",
        start=second + timedelta(hours=2),
        end=second + timedelta(hours=3),
        series_ref="series-1",
        original_start=second,
    )
    made = await connector.create_appointment(moved, idempotency_key="x", external_ref="series-1|2")
    assert made.appointment == moved
    _, occurrences = series_rows(backend)
    row = next(r for r in occurrences if r["Id"] == made.crm_id)
    assert row["IsRecurrence2Exception"] is True and row["Subject"] == "Quarterly review (moved)"
    assert sum(1 for r in occurrences if r["Subject"] == "Quarterly review") == 4
    assert await connector.create_appointment(moved, idempotency_key="x", external_ref="series-1|2") == made
    renamed = series.appointment.model_copy(update={"subject": "Weekly review"})
    await connector.update_appointment(series.crm_id, renamed, fields=["subject"], expected_version=None)
    _, occurrences = series_rows(backend)
    assert (
        sorted(str(r["Subject"]) for r in occurrences) == ["Quarterly review (moved)"] + ["Weekly review"] * 4
    )
    assert (await connector.get_appointment(made.crm_id)) == made  # an exception keeps its own fields
    with pytest.raises(UnprocessableError, match="no occurrence row"):
        await connector.create_appointment(
            moved.model_copy(update={"original_start": second + timedelta(hours=1)}),
            idempotency_key="y",
            external_ref="series-1|3",
        )


async def test_R3_a_new_pattern_recreates_the_occurrences_and_the_series_is_deleted_whole(
    connector: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    made = await connector.create_appointment(weekly(), idempotency_key="k", external_ref="m")
    longer = weekly(count=8)
    updated = await connector.update_appointment(
        made.crm_id, longer, fields=["recurrence"], expected_version=made.version
    )
    assert updated.appointment.recurrence == longer.recurrence
    assert updated.appointment.cancelled_occurrences == ()  # rows the new pattern replaced are not cancelled
    assert len(series_rows(backend)[1]) == 8
    await connector.delete_appointment(made.crm_id)
    assert backend.events() == []


async def test_a_recurring_event_holds_at_most_100_invitees_and_a_cancel_is_our_status(
    connector: SalesforceConnector,
) -> None:
    crowd = tuple(Attendee(email=f"guest{i}@fabrikam.example") for i in range(101))
    with pytest.raises(UnprocessableError, match="recurring event holds at most 100 invitees, got 101"):
        await connector.create_appointment(weekly(attendees=crowd), idempotency_key="k", external_ref="m")
    made = await connector.create_appointment(
        weekly(attendees=crowd[:100]), idempotency_key="k", external_ref="m"
    )
    assert len(made.appointment.attendees) == 100
    assert (await connector.cancel_appointment(made.crm_id)).appointment.status is Status.CANCELLED


async def test_a_series_never_becomes_a_single_event_by_an_update(connector: SalesforceConnector) -> None:
    made = await connector.create_appointment(weekly(), idempotency_key="k", external_ref="m")
    single = made.appointment.model_copy(update={"recurrence": None})
    with pytest.raises(UnprocessableError, match="only by a new record"):
        await connector.update_appointment(made.crm_id, single, fields=["recurrence"], expected_version=None)


def test_the_emulator_expands_the_documented_series_example(backend: SalesforceEmulator) -> None:
    """The Change Data Capture guide's "Recurring Activities" example: RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=MO;
    COUNT=13 makes the series record (GroupEventType 3, Recurrence2PatternVersion 1) and one Event record per
    occurrence, all with one ActivityRecurrence2Id (https://developer.salesforce.com/docs/atlas.en-us.234.0.
    change_data_capture.meta/change_data_capture/cdc_standard_objects_task_event_recurring.htm)."""
    token = httpx.post(
        f"{backend.base_url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": backend.client_id,
            "client_secret": backend.client_secret,
        },
    ).json()["access_token"]
    body = {
        "Subject": "Product Planning",
        "StartDateTime": "2019-08-12T19:00:00.000+0000",
        "EndDateTime": "2019-08-12T20:00:00.000+0000",
        "IsRecurrence2": True,
        "Recurrence2PatternText": "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=MO;COUNT=13",
        "Recurrence2PatternTimeZone": "America/Los_Angeles",
    }
    url = f"{backend.base_url}/services/data/{API_VERSION}/sobjects/Event/"
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.post(url, json=body, headers=headers).status_code == 201
    head, occurrences = series_rows(backend)
    assert head["Recurrence2PatternVersion"] == "1" and str(head["ActivityRecurrence2Id"]).startswith("828")
    assert len(occurrences) == 13 and {r["GroupEventType"] for r in occurrences} == {"0"}
    assert occurrences[-1]["StartDateTime"] == "2019-11-04T20:00:00.000+0000"  # 12:00 in LA, after DST ends
    refused = httpx.post(
        url, json=body | {"Recurrence2PatternText": "RRULE:FREQ=MONTHLY;BYDAY=MO;BYSETPOS=1"}, headers=headers
    )
    assert refused.status_code == 400 and refused.json()[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"


async def test_R3_a_series_a_crm_user_made_reads_as_one_record_with_its_pattern(
    connector: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    body = {
        "Subject": "Product Planning",
        "StartDateTime": "2026-03-02T17:00:00.000+0000",
        "EndDateTime": "2026-03-02T18:00:00.000+0000",
        "IsRecurrence2": True,
        "Recurrence2PatternText": "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=MO;COUNT=13",  # the guide's example
        "Recurrence2PatternTimeZone": "America/Los_Angeles",
    }
    await connector._send("POST", "sobjects/Event/", item_id=None, json_body=body)
    page = await connector.list_changed(None)
    (record,) = page.records  # the series, not its thirteen occurrence rows
    rec = record.appointment.recurrence
    assert (
        rec is not None
        and rec.pattern.days_of_week == ("monday",)
        and rec.pattern.first_day_of_week == "monday"
    )
    assert rec.range.number_of_occurrences == 13 and rec.range.time_zone == "America/Los_Angeles"
    assert record.appointment.time_zone == "America/Los_Angeles"  # the series' zone, as Outlook will show it
    _, occurrences = series_rows(backend)
    backend.user_update(str(occurrences[1]["Id"]), subject="Planning (moved)")  # a CRM user's exception
    again = await connector.list_changed(page.cursor)
    assert [r.crm_id for r in again.records] == [record.crm_id]  # news of the series, never a new record


async def test_R3_I3_an_exception_whose_write_stopped_after_our_keys_is_made_whole_on_retry(
    connector: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    await connector.create_appointment(weekly(), idempotency_key="k", external_ref="series-1")
    _, occurrences = series_rows(backend)
    second = occurrences[1]
    keys = {"msync_ExternalRef__c": "series-1|2", connector.profile.create_key_field: create_key("x")}
    backend.user_update(str(second["Id"]), **keys)  # the first write of the exception, then a crash
    start = T0 + timedelta(days=7)
    moved = make_appointment(
        subject="Moved",
        series_ref="series-1",
        original_start=start,
        start=start,
        end=start + timedelta(hours=1),
    )
    made = await connector.create_appointment(moved, idempotency_key="x", external_ref="series-1|2")
    assert made.crm_id == second["Id"] and made.appointment == moved
