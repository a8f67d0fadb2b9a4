"""The Dataverse emulator's recurring series against what Microsoft documents, over the Web API. Microsoft
publishes no Web API transcript for recurringappointmentmasters, so each test names the page it follows:

* CRUD: the CRUDRecurringAppointment sample (powerapps-docs developer/data-platform/org-service/samples/
  create-retrieve-update-delete-recurring-appointment.md; its values: weekly on Thursday, 10 occurrences,
  then 5 occurrences every 2 weeks), sent as Web API requests;
* instances, exceptions, deleted instances: create-recurring-appointment-series-instance-exception.md;
* basic and recurrence updates: update-recurring-appointment.md;
* column ranges: reference/entities/recurringappointmentmaster.md (MicrosoftDocs/powerapps-docs@
  05cfff5341d4db7cec326318fdd63b9618e9c206).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

SERIES = "11111111-2222-4333-8444-555555555555"
THURSDAY = 0x10  # the sample's DayOfWeek.Thursday
SAMPLE = {
    "subject": "Sample Recurring Appointment",
    "starttime": "2026-03-05T10:00:00Z",  # a Thursday
    "endtime": "2026-03-05T11:00:00Z",
    "recurrencepatterntype": 1,  # Weekly
    "interval": 1,
    "daysofweekmask": THURSDAY,
    "patternstartdate": "2026-03-05",
    "occurrences": 10,
    "patternendtype": 2,  # Occurrences
    "utcconversiontimezonecode": 92,
}


def instances(client: httpx.Client) -> list[dict[str, Any]]:
    query = {
        "$select": "activityid,subject,scheduledstart,instancetypecode,seriesid,originalstartdate,statecode",
        "$filter": f"seriesid eq {SERIES}",
    }
    rows = client.get("appointments", params=query).json()["value"]
    return sorted(rows, key=lambda r: r["originalstartdate"])


def create(client: httpx.Client, **changes: Any) -> httpx.Response:
    return client.patch(
        f"recurringappointmentmasters({SERIES})", json=SAMPLE | changes, headers={"If-None-Match": "*"}
    )


def test_the_sample_series_expands_into_instance_rows_of_the_series(client: httpx.Client) -> None:
    assert create(client).status_code == 204
    rows = instances(client)
    assert len(rows) == 10
    assert {(r["instancetypecode"], r["seriesid"]) for r in rows} == {(2, SERIES)}  # Recurring Instance
    assert [r["scheduledstart"][:10] for r in rows[:3]] == ["2026-03-05", "2026-03-12", "2026-03-19"]
    master = client.get(f"recurringappointmentmasters({SERIES})").json()
    assert master["scheduledstart"] == "2026-03-05T10:00:00Z"  # read-only, derived from the pattern


def test_the_sample_update_of_occurrences_and_interval_expands_the_series_again(client: httpx.Client) -> None:
    create(client)
    updated = client.patch(
        f"recurringappointmentmasters({SERIES})",
        json={"subject": "Updated Recurring Appointment", "occurrences": 5, "interval": 2},
        headers={"If-Match": "*"},
    )
    assert updated.status_code == 204
    rows = instances(client)
    assert [r["scheduledstart"][:10] for r in rows] == [
        "2026-03-05",
        "2026-03-19",
        "2026-04-02",
        "2026-04-16",
        "2026-04-30",
    ]
    assert {r["subject"] for r in rows} == {"Updated Recurring Appointment"}


def test_an_updated_instance_is_an_exception_kept_when_the_series_basic_information_changes(
    client: httpx.Client,
) -> None:
    create(client)
    second = instances(client)[1]["activityid"]
    client.patch(f"appointments({second})", json={"subject": "just this one"}, headers={"If-Match": "*"})
    client.patch(
        f"recurringappointmentmasters({SERIES})", json={"subject": "everyone else"}, headers={"If-Match": "*"}
    )
    rows = instances(client)
    assert [(r["instancetypecode"], r["subject"]) for r in rows[:3]] == [
        (2, "everyone else"),
        (3, "just this one"),  # Recurring Exception
        (2, "everyone else"),
    ]


def test_a_deleted_instance_is_listed_in_the_series_deleted_exceptions(client: httpx.Client) -> None:
    create(client)
    third = instances(client)[2]
    assert client.delete(f"appointments({third['activityid']})").status_code == 204
    master = client.get(f"recurringappointmentmasters({SERIES})", params={"$select": "deletedexceptionslist"})
    assert third["originalstartdate"] in master.json()["deletedexceptionslist"]
    assert len(instances(client)) == 9


def test_deleting_the_series_deletes_its_instances_and_change_tracking_names_them(
    client: httpx.Client,
) -> None:
    create(client)
    tracked = client.get(
        "appointments", params={"$select": "subject"}, headers={"Prefer": "odata.track-changes"}
    )
    delta = tracked.json()["@odata.deltaLink"]
    ids = {r["activityid"] for r in instances(client)}
    assert client.delete(f"recurringappointmentmasters({SERIES})").status_code == 204
    assert client.get(f"recurringappointmentmasters({SERIES})").status_code == 404
    changes = client.get(delta, headers={"Prefer": "odata.track-changes"}).json()["value"]
    assert {c["id"] for c in changes if c["@odata.context"].endswith("$deletedEntity")} == ids


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"occurrences": 1000}, "'occurrences'"),
        ({"interval": 1001}, "'interval'"),
        ({"daysofweekmask": 128}, "'daysofweekmask'"),
        ({"daysofweekmask": None}, "needs daysofweekmask"),
        ({"patternendtype": 3}, "patternenddate"),
        ({"statecode": 3}, "statecode is not valid for create"),
        ({"patternstartdate": None}, "'patternstartdate' cannot be NULL"),
    ],
)
def test_a_series_outside_the_documented_columns_is_refused_with_400(
    client: httpx.Client, changes: dict[str, Any], message: str
) -> None:
    answer = create(client, **changes)
    assert answer.status_code == 400 and message in answer.json()["error"]["message"]
    assert client.get(f"recurringappointmentmasters({SERIES})").status_code == 404
    assert instances(client) == []


def test_a_second_create_of_the_same_series_is_412_and_a_stale_etag_too(client: httpx.Client) -> None:
    create(client)
    assert create(client).status_code == 412
    stale = client.patch(
        f"recurringappointmentmasters({SERIES})", json={"subject": "x"}, headers={"If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412
