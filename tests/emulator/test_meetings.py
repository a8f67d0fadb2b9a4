"""Exchange meeting behaviour: attendee copies, responses, rooms, cancellation."""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any

import httpx
from emulator_support import (
    ALICE,
    BOB,
    BOB_MAIL,
    MODERATED_ROOM,
    MODERATED_ROOM_MAIL,
    ROOM,
    ROOM_MAIL,
    Sink,
    leftovers,
)
from msgraph import GraphServiceClient

from devstack.graph_emulator import GraphEmulator


def meeting(subject: str, hour: int, *attendees: str, day: int = 10) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": {"dateTime": f"2030-03-{day:02d}T{hour:02d}:00:00", "timeZone": "UTC"},
        "end": {"dateTime": f"2030-03-{day:02d}T{hour + 1:02d}:00:00", "timeZone": "UTC"},
        "attendees": [
            {"emailAddress": {"address": a}, "type": "resource" if a.startswith("room") else "required"}
            for a in attendees
        ],
    }


async def post(http: httpx.AsyncClient, user: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(f"/users/{user}/events", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def only_event(http: httpx.AsyncClient, user: str) -> dict[str, Any]:
    events = (await http.get(f"/users/{user}/events")).json()["value"]
    assert len(events) == 1
    found: dict[str, Any] = events[0]
    return found


async def statuses(http: httpx.AsyncClient, event_id: str) -> dict[str, str]:
    organiser = (await http.get(f"/users/{ALICE}/events/{event_id}")).json()
    return {a["emailAddress"]["address"]: a["status"]["response"] for a in organiser["attendees"]}


async def test_attendee_copies_share_the_ical_uid_and_have_their_own_ids(
    http: httpx.AsyncClient, graph: GraphServiceClient
) -> None:
    organiser = await post(http, ALICE, meeting("Review", 9, BOB_MAIL, "stranger@fabrikam.com"))
    copy = await only_event(http, BOB)
    assert copy["iCalUId"] == organiser["iCalUId"]
    assert copy["id"] != organiser["id"]
    assert copy["isOrganizer"] is False
    assert copy["responseStatus"]["response"] == "notResponded"
    assert copy["organizer"] == organiser["organizer"]
    parsed = await graph.users.by_user_id(BOB).events.by_event_id(copy["id"]).get()
    assert parsed is not None and leftovers(parsed) == set()


async def test_accept_updates_the_copy_and_the_organisers_attendee_status(http: httpx.AsyncClient) -> None:
    organiser = await post(http, ALICE, meeting("Review", 9, BOB_MAIL))
    copy = await only_event(http, BOB)
    response = await http.post(
        f"/users/{BOB}/events/{copy['id']}/accept", json={"comment": "ok", "sendResponse": True}
    )
    assert response.status_code == 202
    assert (await only_event(http, BOB))["responseStatus"]["response"] == "accepted"
    assert (await statuses(http, organiser["id"]))[BOB_MAIL] == "accepted"
    declined = await http.post(f"/users/{BOB}/events/{copy['id']}/decline", json={})
    assert declined.status_code == 202
    assert (await statuses(http, organiser["id"]))[BOB_MAIL] == "declined"
    refused = await http.post(f"/users/{ALICE}/events/{organiser['id']}/accept", json={})
    assert refused.status_code == 400


async def test_organiser_updates_reach_copies_and_cancel_marks_them_cancelled(
    http: httpx.AsyncClient,
) -> None:
    organiser = await post(http, ALICE, meeting("Review", 9, BOB_MAIL))
    await http.patch(f"/users/{ALICE}/events/{organiser['id']}", json={"subject": "Design review"})
    assert (await only_event(http, BOB))["subject"] == "Design review"
    not_organiser = await http.post(
        f"/users/{BOB}/events/{(await only_event(http, BOB))['id']}/cancel", json={}
    )
    assert not_organiser.status_code == 400
    cancelled = await http.post(f"/users/{ALICE}/events/{organiser['id']}/cancel", json={"comment": "sorry"})
    assert cancelled.status_code == 202
    assert (await http.get(f"/users/{ALICE}/events/{organiser['id']}")).status_code == 404
    copy = await only_event(http, BOB)
    assert copy["isCancelled"] is True and copy["subject"].startswith("Canceled: ")


async def test_auto_accept_room_accepts_then_declines_a_clashing_booking(http: httpx.AsyncClient) -> None:
    first = await post(http, ALICE, meeting("First", 9, ROOM_MAIL))
    second = await post(http, BOB, meeting("Clash", 9, ROOM_MAIL))
    third = await post(http, BOB, meeting("Later", 11, ROOM_MAIL))
    assert (await statuses(http, first["id"]))[ROOM_MAIL] == "accepted"
    bob_events = {e["subject"]: e for e in (await http.get(f"/users/{BOB}/events")).json()["value"]}
    clash = {a["emailAddress"]["address"]: a["status"]["response"] for a in bob_events["Clash"]["attendees"]}
    later = {a["emailAddress"]["address"]: a["status"]["response"] for a in bob_events["Later"]["attendees"]}
    assert clash[ROOM_MAIL] == "declined" and later[ROOM_MAIL] == "accepted"
    assert second["id"] and third["id"]
    room_events = (await http.get(f"/users/{ROOM}/events")).json()["value"]
    assert sorted(e["responseStatus"]["response"] for e in room_events) == [
        "accepted",
        "accepted",
        "declined",
    ]
    assert first["location"]["displayName"] == "Harbour Room"


async def test_moderated_room_waits_for_a_delegate(http: httpx.AsyncClient) -> None:
    organiser = await post(http, ALICE, meeting("Board", 9, MODERATED_ROOM_MAIL))
    assert (await statuses(http, organiser["id"]))[MODERATED_ROOM_MAIL] == "none"
    booking = await only_event(http, MODERATED_ROOM)
    assert booking["responseStatus"]["response"] == "notResponded"
    await http.post(f"/users/{MODERATED_ROOM}/events/{booking['id']}/accept", json={})
    assert (await statuses(http, organiser["id"]))[MODERATED_ROOM_MAIL] == "accepted"


async def test_copies_in_other_mailboxes_notify_their_subscribers(
    http: httpx.AsyncClient, emu: GraphEmulator, sink: Sink
) -> None:
    expiry = (emu.clock.now() + timedelta(days=1)).isoformat()
    subscribed = await http.post(
        "/subscriptions",
        json={
            "changeType": "created,updated",
            "notificationUrl": sink.url,
            "resource": f"users/{BOB_MAIL}/events",
            "expirationDateTime": expiry,
            "clientState": "bob",
        },
    )
    assert subscribed.status_code == 201, subscribed.text
    await post(http, ALICE, meeting("Review", 9, BOB_MAIL))
    copy = await only_event(http, BOB)
    items = await sink.wait_for(1)
    assert items[0]["changeType"] == "created"
    assert items[0]["resource"] == f"Users/{BOB}/Events/{copy['id']}"


async def test_tentative_accept_through_msgraph_sdk(
    http: httpx.AsyncClient, graph: GraphServiceClient
) -> None:
    module = importlib.import_module(
        "msgraph.generated.users.item.events.item.tentatively_accept.tentatively_accept_post_request_body"
    )
    organiser = await post(http, ALICE, meeting("Review", 9, BOB_MAIL))
    copy = await only_event(http, BOB)
    await (
        graph.users.by_user_id(BOB)
        .events.by_event_id(copy["id"])
        .tentatively_accept.post(module.TentativelyAcceptPostRequestBody(comment="maybe", send_response=True))
    )
    assert (await statuses(http, organiser["id"]))[BOB_MAIL] == "tentativelyAccepted"
