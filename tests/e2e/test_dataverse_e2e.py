"""Microsoft 365 <-> Dataverse end to end, through the real stack with CRM_CONNECTOR=dataverse: the Graph
emulator, the development host serving function_app on Azurite, and the Dataverse emulator, whose registered
webhook posts a RemoteExecutionContext to POST /api/crm/dataverse/webhook (HttpHeader authentication: the
function key and a CRM_WEBHOOK_SECRETS secret).

One meeting's life: made in Outlook, it becomes a Dataverse appointment with its activity parties; a
Dataverse user's edit (the emulator's user route, over HTTP) reaches Outlook through the webhook; a cancel
in Dataverse cancels the Outlook meeting. And the other way: an appointment made in Dataverse (its Create
webhook delivered twice) becomes one Outlook meeting. A series with a moved occurrence becomes a
recurringappointmentmaster and an exception instance; a Dataverse user's rename of the series comes back; a
series made in Dataverse becomes one Outlook series.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devstack.azurite import Azurite
from devstack.dataverse_emulator import APP_USER_ID
from devstack.run import dataverse_id
from devstack.stack import LocalStack
from tests.e2e.conftest import settle, started, wait_for
from tests.e2e.outlook import (
    ADELE,
    BRUNO,
    MEGAN,
    STRANGER,
    events,
    post,
    pricing_meeting,
    series,
    weekly,
    when,
)

pytestmark = pytest.mark.e2e

BASE = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=20)
WAIT = 20.0
REQUIRED, OPTIONAL, ORGANIZER = 5, 6, 7
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def stack(azurite: Azurite) -> Iterator[LocalStack]:
    yield from started(LocalStack(azurite=azurite, connector="dataverse"))


def _at(day: int, hour: float) -> datetime:
    return BASE + timedelta(days=day, hours=hour)


def _wire(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _appointments(stack: LocalStack, subject: str) -> list[dict[str, Any]]:
    """Dataverse appointments with this subject, each with its `parties`, as the emulator's user route
    lists them."""
    r = httpx.get(f"{stack.dataverse.base_url}/_emulator/appointments", timeout=10)
    r.raise_for_status()
    return [a for a in r.json() if a.get("subject") == subject]


def _user(stack: LocalStack, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Dataverse user's action, through the emulator's user route (over HTTP, as `make run` offers)."""
    r = httpx.request(method, f"{stack.dataverse.base_url}/_emulator/user/{path}", json=body, timeout=10)
    r.raise_for_status()
    return dict(r.json()) if r.content else {}


def _organizer_and_contact() -> list[dict[str, Any]]:
    """Activity parties: Adele (a system user) organizes, Megan (a contact) is required."""
    return [
        {
            "partyid_systemuser@odata.bind": f"/systemusers({dataverse_id(ADELE)})",
            "participationtypemask": ORGANIZER,
        },
        {
            "partyid_contact@odata.bind": f"/contacts({dataverse_id(MEGAN)})",
            "participationtypemask": REQUIRED,
        },
    ]


def _book(stack: LocalStack, subject: str, day: int) -> str:
    """A Dataverse user makes an appointment with Megan and books it; its activityid. A new row is Open;
    saving it in the app books it: Scheduled, Busy (appointment.md StateCode 3)."""
    made = _user(
        stack,
        "POST",
        "appointments",
        {
            "subject": subject,
            "scheduledstart": _wire(_at(day, 9)),
            "scheduledend": _wire(_at(day, 10)),
            "created_by": ADELE,
            "appointment_activity_parties": _organizer_and_contact(),
        },
    )
    activity_id = str(made["activityid"])
    _user(
        stack, "PATCH", f"appointments/{activity_id}", {"statecode": 3, "statuscode": 5, "updated_by": ADELE}
    )
    return activity_id


def _webhooks(stack: LocalStack, message: str, activity_id: str) -> list[int | None]:
    """The answers our door gave to the emulator's `message` webhooks about this appointment."""
    return [
        d.status
        for d in stack.dataverse.webhook_deliveries
        if d.message == message and d.entity_id == activity_id
    ]


def _settle(stack: LocalStack) -> None:
    """Until nothing moves: every Dataverse webhook answered and the queues drained, twice in a row."""
    settle(stack, stack.dataverse.wait_for_webhooks, WAIT)


def _parties(row: dict[str, Any]) -> set[tuple[int, str | None, str | None]]:
    return {
        (
            p["participationtypemask"],
            p.get("_partyid_value@Microsoft.Dynamics.CRM.lookuplogicalname"),
            p.get("_partyid_value") or p.get("addressused"),
        )
        for p in row["parties"]
    }


def test_an_outlook_meeting_becomes_an_appointment_a_dataverse_edit_and_cancel_reach_outlook(
    stack: LocalStack,
) -> None:
    post(stack, ADELE, pricing_meeting("Fabrikam pricing", _at(1, 10), _at(1, 11)))

    # Outlook -> Dataverse: one appointment, its parties resolved to the system user and the contact.
    row = wait_for(lambda: _appointments(stack, "Fabrikam pricing"), timeout=WAIT, what="the appointment")[0]
    assert len(_appointments(stack, "Fabrikam pricing")) == 1
    assert (row["scheduledstart"], row["scheduledend"]) == (_wire(_at(1, 10)), _wire(_at(1, 11)))
    assert _parties(row) == {
        (ORGANIZER, "systemuser", dataverse_id(ADELE)),
        (REQUIRED, "systemuser", dataverse_id(BRUNO)),
        (REQUIRED, "contact", dataverse_id(MEGAN)),
        (OPTIONAL, None, STRANGER),
    }
    assert row["_createdby_value"] == APP_USER_ID and row["msync_externalref"]
    activity_id = row["activityid"]

    # A Dataverse user's edit -> the webhook -> the worker -> Outlook.
    _user(
        stack,
        "PATCH",
        f"appointments/{activity_id}",
        {
            "subject": "Fabrikam pricing (moved)",
            "scheduledstart": _wire(_at(1, 14)),
            "scheduledend": _wire(_at(1, 15)),
            "updated_by": ADELE,
        },
    )
    moved = wait_for(lambda: events(stack, ADELE, "Fabrikam pricing (moved)"), timeout=WAIT, what="the edit")
    assert moved[0]["start"]["dateTime"].startswith(_at(1, 14).strftime("%Y-%m-%dT%H:%M"))
    assert 202 in _webhooks(stack, "Update", activity_id), "the edit came through the Dataverse webhook"
    assert wait_for(
        lambda: events(stack, BRUNO, "Fabrikam pricing (moved)"), timeout=WAIT
    )  # Exchange updated
    # No settling first: a cancel landing while the app writes an answer to the same row is read as the
    # cancel, not as our echo (tests/dataverse/test_dataverse_cancel_race.py).

    # A cancel in Dataverse (statecode Canceled) -> the Outlook meeting is cancelled, the attendees told.
    _user(stack, "POST", f"appointments/{activity_id}/cancel", {"updated_by": ADELE})
    wait_for(lambda: events(stack, ADELE, "Fabrikam pricing (moved)") == [], timeout=WAIT, what="the cancel")
    told = wait_for(
        lambda: [e for e in events(stack, BRUNO, "Canceled: Fabrikam pricing (moved)") if e["isCancelled"]],
        timeout=WAIT,
    )
    assert len(told) == 1
    assert (
        _appointments(stack, "Fabrikam pricing (moved)")[0]["statecode"] == 2
    )  # still cancelled in Dataverse


def test_an_appointment_made_in_dataverse_becomes_one_outlook_meeting_though_its_webhook_came_twice(
    stack: LocalStack,
) -> None:
    stack.dataverse.duplicate_webhooks()
    try:
        activity_id = _book(stack, "Contoso x Fabrikam kickoff", 2)
        assert stack.dataverse.wait_for_webhooks(WAIT)
    finally:
        stack.dataverse.duplicate_webhooks(False)
    for message in ("Create", "Update"):  # each delivered twice, queued once
        assert sorted(s or 0 for s in _webhooks(stack, message, activity_id)) == [200, 202]
    event = wait_for(lambda: events(stack, ADELE, "Contoso x Fabrikam kickoff"), timeout=WAIT)
    assert [a["emailAddress"]["address"] for a in event[0]["attendees"]] == [MEGAN]
    stack.dataverse.wait_for_webhooks(WAIT)  # the echo of our own write back to Dataverse, if any
    assert len(events(stack, ADELE, "Contoso x Fabrikam kickoff")) == 1
    assert len(_appointments(stack, "Contoso x Fabrikam kickoff")) == 1


def test_a_webhook_without_the_secret_is_refused_and_queues_nothing(stack: LocalStack) -> None:
    from tests.dataverse.test_dataverse_webhook import context

    body = context("Update")
    answer = stack.post_to_ingress("crm/dataverse/webhook", body, {"Content-Type": "application/json"})
    assert answer.status_code == 401 and "x-msync-webhook-key" in answer.json()["error"]
    no_key = httpx.post(f"{stack.host.base_url}/api/crm/dataverse/webhook", content=body, timeout=10)
    assert no_key.status_code == 401  # the host's own check: no function key


def _masters(stack: LocalStack, subject: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{stack.dataverse.base_url}/_emulator/recurringappointmentmasters", timeout=10)
    r.raise_for_status()
    return [m for m in r.json() if m.get("subject") == subject]


def test_R3_an_outlook_series_and_its_exception_become_master_and_exception_and_a_series_edit_comes_back(
    stack: LocalStack,
) -> None:
    subject = "Fabrikam weekly sync"
    first = _at(3, 13)
    second = first + timedelta(weeks=1)
    moved = second + timedelta(hours=2)
    with stack.graph_http() as g:
        g.post(
            f"/users/{ADELE}/events", json=series(subject, first, HOUR, [MEGAN], weekly(first), 4)
        ).raise_for_status()
        [master] = wait_for(lambda: _masters(stack, subject), timeout=WAIT, what="the series")
        window = {"startDateTime": _wire(second), "endDateTime": _wire(second + timedelta(hours=1))}
        [occurrence] = [
            e
            for e in g.get(f"/users/{ADELE}/calendarView", params=window).json()["value"]
            if e["subject"] == subject
        ]
        g.patch(
            f"/users/{ADELE}/events/{occurrence['id']}",
            json={"start": when(moved), "end": when(moved + HOUR)},
        ).raise_for_status()

    # Outlook -> Dataverse: one recurringappointmentmaster, its four instances, the moved one an exception.
    assert (master["recurrencepatterntype"], master["occurrences"], master["patternendtype"]) == (1, 4, 2)
    assert master["starttime"] == _wire(first) and master["msync_externalref"]

    def instances() -> list[dict[str, Any]]:
        rows = [a for a in _appointments(stack, subject) if a["seriesid"] == master["activityid"]]
        return sorted(rows, key=lambda r: r["originalstartdate"])

    def moved_instance() -> list[dict[str, Any]]:
        return [r for r in instances() if r["scheduledstart"] == _wire(moved)]

    [exception] = wait_for(moved_instance, timeout=WAIT, what="the exception")
    assert (exception["instancetypecode"], exception["originalstartdate"]) == (3, _wire(second))
    _settle(stack)
    assert len(_masters(stack, subject)) == 1 and len(instances()) == 4
    assert [r["instancetypecode"] for r in instances()] == [2, 3, 2, 2]

    # A Dataverse user renames the series -> its instances change -> their webhooks -> the Outlook series.
    _user(
        stack,
        "PATCH",
        f"recurringappointmentmasters/{master['activityid']}",
        {
            "subject": "Fabrikam weekly sync (renamed)",
            "updated_by": ADELE,
        },
    )
    renamed = wait_for(
        lambda: [
            e for e in events(stack, ADELE, "Fabrikam weekly sync (renamed)") if e["type"] == "seriesMaster"
        ],
        timeout=WAIT,
        what="the series edit in Outlook",
    )
    assert len(renamed) == 1 and renamed[0]["recurrence"]["range"]["numberOfOccurrences"] == 4
    _settle(stack)
    assert len(_masters(stack, "Fabrikam weekly sync (renamed)")) == 1
    assert len(events(stack, ADELE, "Fabrikam weekly sync (renamed)")) == 1  # one series, not flattened


def test_R1_a_series_made_in_dataverse_becomes_one_outlook_series(stack: LocalStack) -> None:
    """Its instances' Create webhooks (one per instance) each read the series: one Outlook series, once."""
    subject = "Contoso monthly board"
    first = _at(5, 15)
    _user(
        stack,
        "POST",
        "recurringappointmentmasters",
        {
            "subject": subject,
            "starttime": _wire(first),
            "endtime": _wire(first + timedelta(hours=1)),
            "recurrencepatterntype": 2,  # monthly, on the first's day of the month
            "dayofmonth": first.day,
            "interval": 1,
            "patternstartdate": first.date().isoformat(),
            "patternendtype": 2,
            "occurrences": 3,
            "utcconversiontimezonecode": 92,
            "created_by": ADELE,
            "recurringappointmentmaster_activity_parties": _organizer_and_contact(),
        },
    )
    [master] = _masters(stack, subject)
    # A new series is Open; saving it in the app books it: Scheduled, Busy (its instances follow).
    _user(
        stack,
        "PATCH",
        f"recurringappointmentmasters/{master['activityid']}",
        {"statecode": 3, "statuscode": 5, "updated_by": ADELE},
    )
    series = wait_for(
        lambda: [e for e in events(stack, ADELE, subject) if e["type"] == "seriesMaster"],
        timeout=WAIT,
        what="the Outlook series",
    )
    _settle(stack)
    assert len(events(stack, ADELE, subject)) == 1
    pattern = series[0]["recurrence"]["pattern"]
    assert (pattern["type"], pattern["dayOfMonth"]) == ("absoluteMonthly", first.day)
    assert series[0]["recurrence"]["range"]["numberOfOccurrences"] == 3
    assert [a["emailAddress"]["address"] for a in series[0]["attendees"]] == [MEGAN]
    assert len(_masters(stack, subject)) == 1 and master["activityid"]


def test_R3_an_occurrence_a_dataverse_user_cancels_is_cancelled_in_the_outlook_series(
    stack: LocalStack,
) -> None:
    subject = "Northwind daily check-in"
    first = _at(8, 8)
    daily = {"type": "daily", "interval": 1}
    post(stack, ADELE, series(subject, first, timedelta(minutes=15), [MEGAN], daily, 3))
    [master] = wait_for(lambda: _masters(stack, subject), timeout=WAIT, what="the series")
    _settle(stack)
    second = first + timedelta(days=1)
    [instance] = [
        a
        for a in _appointments(stack, subject)
        if a["seriesid"] == master["activityid"] and a["originalstartdate"] == _wire(second)
    ]
    _user(stack, "POST", f"appointments/{instance['activityid']}/cancel", {"updated_by": ADELE})

    def occurrences() -> list[str]:
        window = {"startDateTime": _wire(first), "endDateTime": _wire(first + timedelta(days=3))}
        with stack.graph_http() as g:
            view = g.get(f"/users/{ADELE}/calendarView", params=window).json()["value"]
        return sorted(e["start"]["dateTime"][:16] for e in view if e["subject"] == subject)

    wait_for(lambda: len(occurrences()) == 2, timeout=WAIT, what="the occurrence cancelled in Outlook")
    assert occurrences() == [
        first.strftime("%Y-%m-%dT%H:%M"),
        (first + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M"),
    ]
    _settle(stack)
    assert [
        a["statecode"] for a in _appointments(stack, subject) if a["originalstartdate"] == _wire(second)
    ] == [2]
    assert len(_masters(stack, subject)) == 1


def test_L4_a_series_a_dataverse_user_deletes_is_cancelled_in_outlook_by_the_sweep(stack: LocalStack) -> None:
    """The Delete webhooks name the series' instances, which no mapping knows; the series' own change
    tracking names the series itself, and the sweep reading it cancels the Outlook series."""
    subject = "Fabrikam fortnightly forecast"
    first = _at(10, 16)
    post(stack, ADELE, series(subject, first, HOUR, [BRUNO], weekly(first, interval=2), 3))
    [master] = wait_for(lambda: _masters(stack, subject), timeout=WAIT, what="the series")
    _settle(stack)
    stack.host.invoke_timer("reconcile_sweep").result(timeout=60)  # the feeds read up to now
    _settle(stack)
    r = httpx.delete(
        f"{stack.dataverse.base_url}/_emulator/user/recurringappointmentmasters/{master['activityid']}",
        params={"deleted_by": ADELE},
        timeout=10,
    )
    r.raise_for_status()
    _settle(stack)
    assert events(stack, ADELE, subject), "the instances' Delete webhooks alone change nothing"
    stack.host.invoke_timer("reconcile_sweep").result(timeout=60)
    wait_for(
        lambda: events(stack, ADELE, subject) == [], timeout=WAIT, what="the series cancelled in Outlook"
    )
    assert wait_for(
        lambda: [e for e in events(stack, BRUNO, f"Canceled: {subject}") if e["isCancelled"]], timeout=WAIT
    )
