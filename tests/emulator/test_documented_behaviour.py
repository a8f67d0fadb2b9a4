"""The emulator does what Microsoft documents (issue 16 item 8).

Each test names the page it follows as microsoftgraph/microsoft-graph-docs-contrib@<commit>:<path>. Where the
page has a request/response example, the example is stored under tests/fixtures/graph/docs_*.json (with its
source in the file) and replayed against the emulator as a golden transcript: the documented request is sent,
and the properties the behaviour is about are compared with the documented response.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from emulator_support import ALICE, ALICE_MAIL, BOB, Sink

from devstack.graph_emulator import GraphEmulator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "graph"
DOCS = "microsoftgraph/microsoft-graph-docs-contrib"


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    assert loaded["source"]["repository"] == DOCS, "every documented example records where it came from"
    return loaded


def as_emulator_path(url: str) -> str:
    """A documented `https://graph.microsoft.com/v1.0/me/...` URL as the same call for Alice."""
    path = url.removeprefix("https://graph.microsoft.com/v1.0")
    return f"/users/{ALICE}" + path.removeprefix("/me") if path.startswith("/me/") else path


async def create(http: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = await http.post(f"/users/{ALICE}/events", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def occurrence_days(http: httpx.AsyncClient, master_id: str, start: str, end: str) -> list[str]:
    response = await http.get(
        f"/users/{ALICE}/events/{master_id}/instances",
        params={"startDateTime": start, "endDateTime": end, "$top": "100"},
        headers={"Prefer": 'outlook.timezone="Pacific Standard Time"'},
    )
    assert response.status_code == 200, response.text
    return [item["start"]["dateTime"][:10] for item in response.json()["value"]]


# -- 2. recurrence ---------------------------------------------------------------------------------------


async def test_documented_recurrence_examples_expand_as_documented(http: httpx.AsyncClient) -> None:
    """DOCS@15f91f3675c0efce9de541b31911466cfbd2de42:concepts/outlook-schedule-recurring-events.md.

    "the first Thursday of every other month starting August 29, 2017": the first occurrence is in September
    (the next month with a matching day), not in October; "every Monday ... until the end of the year" ends on
    Monday, December 25.
    """
    for case in example("docs_recurrence_examples.json")["examples"]:
        start_date = case["recurrence"]["range"]["startDate"]
        master = await create(
            http,
            {
                "subject": case["title"],
                "start": {
                    "dateTime": f"{start_date}T{case['start_time']}",
                    "timeZone": "Pacific Standard Time",
                },
                "end": {"dateTime": f"{start_date}T{case['end_time']}", "timeZone": "Pacific Standard Time"},
                "recurrence": case["recurrence"],
            },
        )
        days = await occurrence_days(http, master["id"], "2017-08-01T00:00:00Z", "2018-03-31T00:00:00Z")
        assert days[0] == case["first_occurrence"], (case["documented"], days)
        if case["last_occurrence"] is not None:
            assert days[-1] == case["last_occurrence"], (case["documented"], days)
    # The whole relativeMonthly series, every other month from September: Sep, Nov, Jan, Mar.
    assert days == ["2017-09-07", "2017-11-02", "2018-01-04", "2018-03-01"]


async def test_documented_recurring_create_fills_in_recurrence_time_zone(http: httpx.AsyncClient) -> None:
    """DOCS@007852ace71e63cb76552a3471aa71e7dee5f3e8:api-reference/v1.0/api/user-post-events.md, Request 3.

    The request names no recurrenceTimeZone; the documented response has the event's start time zone there
    (and the recurrence in its canonical form). Replayed as a golden transcript.
    """
    documented = example("docs_user_post_events.json")["create_event_recurring"]
    request, response = documented["request"], documented["response"]
    answer = await http.post(
        as_emulator_path(request["url"]), json=request["body"], headers=request["headers"]
    )
    assert answer.status_code == response["status"]
    assert answer.json()["recurrence"] == response["body"]["recurrence"]
    assert answer.json()["type"] == response["body"]["type"]


async def test_every_pattern_starts_on_the_first_matching_day_and_counts_its_interval_from_there(
    http: httpx.AsyncClient,
) -> None:
    """DOCS@7ead8b72fdfcf17b9f9d83e4707ae35bcc47bd81:api-reference/v1.0/resources/recurrencepattern.md and
    DOCS@15f91f3675c0efce9de541b31911466cfbd2de42:concepts/outlook-schedule-recurring-events.md.

    Each range starts on startDate 2030-01-09 (a Wednesday); expected dates worked out by hand from the
    documented meaning of type, interval, daysOfWeek, index, firstDayOfWeek, month and dayOfMonth.
    """
    cases: list[tuple[dict[str, Any], dict[str, Any], list[str]]] = [
        (
            {"type": "daily", "interval": 3},
            {"type": "numbered", "numberOfOccurrences": 4},
            ["2030-01-09", "2030-01-12", "2030-01-15", "2030-01-18"],
        ),
        # Every other week on Sunday and Monday. With weeks starting on Monday, Sunday 13 closes the week of
        # the start; with weeks starting on Sunday, it opens the next one, which the interval skips.
        (
            {"type": "weekly", "interval": 2, "daysOfWeek": ["sunday", "monday"], "firstDayOfWeek": "monday"},
            {"type": "numbered", "numberOfOccurrences": 4},
            ["2030-01-13", "2030-01-21", "2030-01-27", "2030-02-04"],
        ),
        (
            {"type": "weekly", "interval": 2, "daysOfWeek": ["sunday", "monday"], "firstDayOfWeek": "sunday"},
            {"type": "numbered", "numberOfOccurrences": 4},
            ["2030-01-13", "2030-01-14", "2030-01-27", "2030-01-28"],
        ),
        # The 5th of every third month: January's is before the start, so the series starts in February.
        (
            {"type": "absoluteMonthly", "interval": 3, "dayOfMonth": 5},
            {"type": "endDate", "endDate": "2030-12-31"},
            ["2030-02-05", "2030-05-05", "2030-08-05", "2030-11-05"],
        ),
        # The last weekday of every other month.
        (
            {
                "type": "relativeMonthly",
                "interval": 2,
                "index": "last",
                "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
            },
            {"type": "numbered", "numberOfOccurrences": 3},
            ["2030-01-31", "2030-03-29", "2030-05-31"],
        ),
        # The second Thursday or Friday of the month: the second day in the month that is either. January's is
        # Friday 4, before the start; February 1 is a Friday, so February's is Thursday 7.
        (
            {
                "type": "relativeMonthly",
                "interval": 1,
                "index": "second",
                "daysOfWeek": ["thursday", "friday"],
            },
            {"type": "numbered", "numberOfOccurrences": 2},
            ["2030-02-07", "2030-03-07"],
        ),
        # January 8 every second year: 2030's is before the start, so 2031, then 2033.
        (
            {"type": "absoluteYearly", "interval": 2, "month": 1, "dayOfMonth": 8},
            {"type": "numbered", "numberOfOccurrences": 2},
            ["2031-01-08", "2033-01-08"],
        ),
        # The fourth Monday of November, every year.
        (
            {
                "type": "relativeYearly",
                "interval": 1,
                "month": 11,
                "index": "fourth",
                "daysOfWeek": ["monday"],
            },
            {"type": "noEnd"},
            ["2030-11-25", "2031-11-24", "2032-11-22"],
        ),
    ]
    for pattern, rng, expected in cases:
        master = await create(
            http,
            {
                "subject": pattern["type"],
                "start": {"dateTime": "2030-01-09T09:00:00", "timeZone": "Pacific Standard Time"},
                "end": {"dateTime": "2030-01-09T09:30:00", "timeZone": "Pacific Standard Time"},
                "recurrence": {"pattern": pattern, "range": {"startDate": "2030-01-09", **rng}},
            },
        )
        days = await occurrence_days(http, master["id"], "2030-01-01T00:00:00Z", "2032-12-31T00:00:00Z")
        days += await occurrence_days(http, master["id"], "2032-12-31T00:00:00Z", "2034-12-31T00:00:00Z")
        assert days[: len(expected)] == expected, (pattern, rng, days)
        if rng["type"] != "noEnd":
            assert len(days) == len(expected), (pattern, rng, days)


# -- 4. location and locations ---------------------------------------------------------------------------


async def test_location_and_locations_sent_together_keep_the_locations(http: httpx.AsyncClient) -> None:
    """DOCS@007852ace71e63cb76552a3471aa71e7dee5f3e8:api-reference/v1.0/api/user-post-events.md, Request 2;
    DOCS@02eb1a3142fa14e36ac955f10cb8012fcd8d5933:api-reference/v1.0/resources/event.md (locations).

    The documented request sends a joint `location` and three `locations`; the documented response keeps
    both as sent. Replayed as a golden transcript.
    """
    documented = example("docs_user_post_events.json")["create_event_from_user_multiple_locations"]
    request, response = documented["request"], documented["response"]
    answer = await http.post(
        as_emulator_path(request["url"]), json=request["body"], headers=request["headers"]
    )
    assert answer.status_code == response["status"]
    for key in ("location", "locations", "subject", "start", "end", "type"):
        assert answer.json()[key] == response["body"][key], key
    # A later PATCH of `location` alone replaces the list with that location (resources/event.md).
    patched = await http.patch(
        f"/users/{ALICE}/events/{answer.json()['id']}", json={"location": {"displayName": "Harry's Bar"}}
    )
    assert patched.json()["locations"] == [
        {"displayName": "Harry's Bar", "locationType": "default", "uniqueIdType": "unknown"}
    ]


# -- 3. body content type --------------------------------------------------------------------------------


async def test_bodies_are_html_unless_the_request_prefers_text(http: httpx.AsyncClient) -> None:
    """DOCS@02e0226b6ea41ed1d1262311e0e3b2832ff99ef1:api-reference/v1.0/api/event-get.md (Request headers,
    Request 1 / Response 1); the same header on DOCS@042230315ce88a0b11d0a3913859c869f1adc746:
    api-reference/v1.0/api/user-list-calendarview.md.

    Response 1 is replayed as a golden transcript: the event it shows is created, then read with the
    documented request (its $select and Prefer header); the HTML body comes back unchanged and
    Preference-Applied names only the time zone.
    """
    documented = example("docs_event_get.json")
    request, response = documented["request"], documented["response"]
    shown = response["body"]
    created = await create(
        http,
        {
            "subject": shown["subject"],
            "body": shown["body"],
            "start": {"dateTime": "2014-11-03T17:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2014-11-03T17:30:00", "timeZone": "UTC"},
            "location": {"displayName": shown["location"]["displayName"]},
            "attendees": [{"type": a["type"], "emailAddress": a["emailAddress"]} for a in shown["attendees"]],
        },
    )
    select = request["url"].partition("?")[2].removeprefix("$select=")
    answer = await http.get(
        f"/users/{ALICE}/events/{created['id']}", params={"$select": select}, headers=request["headers"]
    )
    assert answer.status_code == response["status"]
    assert answer.headers["Preference-Applied"] == response["headers"]["Preference-Applied"]
    for key in ("subject", "body", "location", "attendees", "hideAttendees"):
        assert answer.json()[key] == shown[key], key

    as_text = await http.get(
        f"/users/{ALICE}/events/{created['id']}",
        headers={"Prefer": 'outlook.body-content-type="text"'},
    )
    assert as_text.headers["Preference-Applied"] == 'outlook.body-content-type="text"'
    assert as_text.json()["body"]["contentType"] == "text"
    assert as_text.json()["body"]["content"].startswith(
        "New Product Regulations Strategy Online Touchpoint Meeting\n"
    )
    assert "<" not in as_text.json()["body"]["content"]

    # A body written as text is read back as HTML by default, and as the same text when text is preferred,
    # in every way of reading events (get, list, calendarView, delta).
    plain = await create(
        http,
        {
            "subject": "Text body",
            "body": {"contentType": "text", "content": "Line one & <two>\nLine three"},
            "start": {"dateTime": "2030-01-07T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2030-01-07T09:30:00", "timeZone": "UTC"},
        },
    )
    assert plain["body"]["contentType"] == "html"
    assert "Line one &amp; &lt;two&gt;<br>Line three" in plain["body"]["content"]
    window = {"startDateTime": "2030-01-01T00:00:00Z", "endDateTime": "2030-02-01T00:00:00Z"}
    prefer_text = {"Prefer": 'outlook.body-content-type="text"'}
    for path, params in (
        (f"/users/{ALICE}/events/{plain['id']}", {}),
        (f"/users/{ALICE}/events", {"$filter": "subject eq 'Text body'"}),
        (f"/users/{ALICE}/calendarView", window),
        (f"/users/{ALICE}/calendarView/delta", window),
    ):
        html_answer = await http.get(path, params=params)
        text_answer = await http.get(path, params=params, headers=prefer_text)
        assert "Preference-Applied" not in html_answer.headers, path
        assert text_answer.headers["Preference-Applied"] == 'outlook.body-content-type="text"', path
        html_event = (
            html_answer.json() if "value" not in html_answer.json() else html_answer.json()["value"][0]
        )
        text_event = (
            text_answer.json() if "value" not in text_answer.json() else text_answer.json()["value"][0]
        )
        assert html_event["body"] == plain["body"], path
        assert text_event["body"] == {"contentType": "text", "content": "Line one & <two>\nLine three"}, path


# -- 1. moving an occurrence -----------------------------------------------------------------------------


async def test_an_occurrence_cannot_be_moved_onto_or_past_a_neighbours_day(http: httpx.AsyncClient) -> None:
    """DOCS@0713c450496046d1f357f9afae7a914ac6ab4277:api-reference/v1.0/api/event-update.md (Response note):
    400 ErrorOccurrenceCrossingBoundary, "Modified occurrence is crossing or overlapping adjacent occurrence."
    """
    documented = example("docs_event_update_crossing_boundary.json")["response"]
    master = await create(
        http,
        {
            "subject": "Standup",
            "start": {"dateTime": "2030-01-07T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2030-01-07T09:30:00", "timeZone": "UTC"},
            "recurrence": {
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday", "wednesday", "friday"]},
                "range": {"type": "numbered", "startDate": "2030-01-07", "numberOfOccurrences": 4},
            },
        },
    )
    listed = await http.get(
        f"/users/{ALICE}/events/{master['id']}/instances",
        params={"startDateTime": "2030-01-01T00:00:00Z", "endDateTime": "2030-02-01T00:00:00Z"},
    )
    monday, wednesday, friday, next_monday = (item["id"] for item in listed.json()["value"])

    def moved_to(day: str) -> dict[str, Any]:
        return {
            "start": {"dateTime": f"{day}T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": f"{day}T10:30:00", "timeZone": "UTC"},
        }

    for target, day in (
        (wednesday, "2030-01-07"),  # onto the previous occurrence's day
        (wednesday, "2030-01-06"),  # past it
        (wednesday, "2030-01-11"),  # onto the following occurrence's day
        (monday, "2030-01-10"),  # past the following one
    ):
        refused = await http.patch(f"/users/{ALICE}/events/{target}", json=moved_to(day))
        assert refused.status_code == documented["status"], (day, refused.text)
        error = refused.json()["error"]
        assert {k: error[k] for k in ("code", "message")} == documented["body"]["error"], day

    # Between its neighbours' days it moves; the first occurrence has no previous one to cross.
    assert (
        await http.patch(f"/users/{ALICE}/events/{wednesday}", json=moved_to("2030-01-10"))
    ).status_code == 200
    assert (
        await http.patch(f"/users/{ALICE}/events/{monday}", json=moved_to("2030-01-01"))
    ).status_code == 200
    # A moved neighbour counts where it now is: Friday may not go back onto Wednesday's new day (Thursday 10).
    refused = await http.patch(f"/users/{ALICE}/events/{friday}", json=moved_to("2030-01-10"))
    assert refused.json()["error"]["code"] == "ErrorOccurrenceCrossingBoundary"
    assert (
        await http.patch(f"/users/{ALICE}/events/{next_monday}", json=moved_to("2030-01-13"))
    ).status_code == 200


# -- 5. proposedNewTime ----------------------------------------------------------------------------------


async def test_proposed_new_time_needs_send_response_and_an_organizer_who_allows_it(
    http: httpx.AsyncClient, emu: GraphEmulator
) -> None:
    """DOCS@0273c463ba400fd1c477eb6800edb2eee57b1773:api-reference/v1.0/api/event-tentativelyaccept.md and
    DOCS@01a031ad3ba6cef9ca62f1ea0435eb363dcf9824:api-reference/v1.0/api/event-decline.md: 400 when
    proposedNewTime comes with sendResponse false, or when the event's allowNewTimeProposals is false. The
    documented requests are replayed (202) on an invitation Bob sent Alice.
    """
    documented = example("docs_event_respond_proposed_new_time.json")

    async def invitation(allow: bool) -> str:
        sent = await http.post(
            f"/users/{BOB}/events",
            json={
                "subject": f"Planning (proposals allowed: {allow})",
                "start": {"dateTime": "2019-11-25T18:00:00", "timeZone": "Pacific Standard Time"},
                "end": {"dateTime": "2019-11-25T19:00:00", "timeZone": "Pacific Standard Time"},
                "attendees": [{"type": "required", "emailAddress": {"address": ALICE_MAIL}}],
                "allowNewTimeProposals": allow,
            },
        )
        assert sent.status_code == 201, sent.text
        copies = [e for e in emu.dump_events(ALICE)[ALICE] if e["iCalUId"] == sent.json()["iCalUId"]]
        assert len(copies) == 1
        return str(copies[0]["id"])

    for action in ("tentativelyAccept", "decline"):
        request, response = documented[action]["request"], documented[action]["response"]
        copy_id = await invitation(allow=True)
        url = as_emulator_path(request["url"].replace("{id}", copy_id))
        quiet = {**request["body"], "sendResponse": False}
        refused = await http.post(url, json=quiet, headers=request["headers"])
        assert refused.status_code == 400, (action, refused.text)
        answered = await http.post(url, json=request["body"], headers=request["headers"])
        assert answered.status_code == response["status"], (action, answered.text)

        copy_id = await invitation(allow=False)
        url = as_emulator_path(request["url"].replace("{id}", copy_id))
        refused = await http.post(url, json=request["body"], headers=request["headers"])
        assert refused.status_code == 400, (action, refused.text)
        # Without a proposal the same response is accepted.
        plain = {k: v for k, v in request["body"].items() if k != "proposedNewTime"}
        assert (await http.post(url, json=plain, headers=request["headers"])).status_code == 202


# -- 6. subscriptions ------------------------------------------------------------------------------------


async def test_listing_subscriptions_withholds_client_state_and_failed_validation_is_invalid_request(
    http: httpx.AsyncClient, emu: GraphEmulator, sink: Sink
) -> None:
    """DOCS@083365b1c7e9ee184854ba3904633df94ea91e98:api-reference/v1.0/api/subscription-list.md: "the
    clientState property value is not returned for security purposes" (its example has "clientState": null).
    DOCS@02b4cba04d0426b41fe35819922b100050c5c441:api-reference/v1.0/api/subscription-get.md: its example
    returns the clientState, so a get keeps it.
    DOCS@028e5429a459bb221e14d2197119f5cb109ceaea:api-reference/v1.0/api/subscription-post-subscriptions.md:
    a failed validation is 400 Bad Request; the code, InvalidRequest, as Graph answers it in
    microsoftgraph/nodejs-webhooks-sample#350 (the pages name only the status).
    """
    documented = example("docs_subscriptions.json")
    body = {
        "changeType": "created,updated,deleted",
        "notificationUrl": sink.url,
        "resource": f"/users/{ALICE}/events",
        "expirationDateTime": (emu.clock.now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "clientState": "secretClientValue",
    }
    created = await http.post("/subscriptions", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["clientState"] == "secretClientValue"

    listed = await http.get("/subscriptions")
    shown = documented["list"]["response"]["body"]["value"][0]
    assert listed.status_code == documented["list"]["response"]["status"]
    (item,) = listed.json()["value"]
    assert set(shown) <= set(item)
    assert item["clientState"] is None and shown["clientState"] is None

    fetched = await http.get(f"/subscriptions/{created.json()['id']}")
    assert fetched.status_code == documented["get"]["response"]["status"]
    assert set(documented["get"]["response"]["body"]) <= set(fetched.json())
    assert fetched.json()["clientState"] == documented["get"]["response"]["body"]["clientState"]

    sink.mode = "error"
    failed = await http.post("/subscriptions", json={**body, "changeType": "created"})
    assert failed.status_code == documented["failed_validation"]["response"]["status"]
    assert (
        failed.json()["error"]["code"] == documented["failed_validation"]["response"]["body"]["error"]["code"]
    )


# -- 7. paging links -------------------------------------------------------------------------------------


async def test_next_links_keep_the_documented_parameter_names(http: httpx.AsyncClient) -> None:
    """DOCS@042230315ce88a0b11d0a3913859c869f1adc746:api-reference/v1.0/api/user-list-calendarview.md (the
    parameters are startDateTime and endDateTime); DOCS@028b8e354879f1054adbd96bfa8d16fff4330811:
    api-reference/v1.0/api/event-delta.md (the delta nextLink carries only $skiptoken; replayed with its
    documented request, `startdatetime` spelled as there and `Prefer: odata.maxpagesize=2`).
    """
    documented = example("docs_calendarview_links.json")
    for day in ("2020-01-02", "2020-01-02", "2020-01-02"):
        await create(
            http,
            {
                "subject": "Paged",
                "start": {"dateTime": f"{day}T09:00:00", "timeZone": "UTC"},
                "end": {"dateTime": f"{day}T09:30:00", "timeZone": "UTC"},
            },
        )
    url = as_emulator_path(documented["calendarView"]["request"]["url"])
    first = await http.get(url + "&$top=2")
    assert first.status_code == 200, first.text
    link = httpx.URL(first.json()["@odata.nextLink"])
    assert list(link.params) == ["startDateTime", "endDateTime", "$top", "$skip"]
    assert link.params["startDateTime"] == "2020-01-01T19:00:00-08:00"
    second = await http.get(str(link))
    assert len(first.json()["value"]) + len(second.json()["value"]) == 3

    delta = documented["delta"]
    delta_url = (
        as_emulator_path(delta["request"]["url"])
        .replace("{start_datetime}", "2020-01-01T00:00:00Z")
        .replace("{end_datetime}", "2020-01-03T00:00:00Z")
    )
    page = await http.get(delta_url, headers=delta["request"]["headers"])
    assert page.status_code == delta["response"]["status"]
    shown = httpx.URL(delta["response"]["body"]["@odata.nextLink"])
    got = httpx.URL(page.json()["@odata.nextLink"])
    assert got.path.endswith(shown.path.removeprefix("/v1.0/me"))
    assert list(got.params) == list(shown.params) == ["$skiptoken"]
