"""Free/busy through getSchedule (msgraph-sdk) and sendMail recorded for the admin API."""

from __future__ import annotations

import httpx
from emulator_support import ALICE, ALICE_MAIL, BOB, leftovers
from msgraph import GraphServiceClient
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.users.item.calendar.get_schedule.get_schedule_post_request_body import (
    GetSchedulePostRequestBody,
)

from devstack.graph_emulator import GraphEmulator


async def test_get_schedule_reports_busy_slots(http: httpx.AsyncClient, graph: GraphServiceClient) -> None:
    await http.post(
        f"/users/{ALICE}/events",
        json={
            "subject": "Focus",
            "start": {"dateTime": "2030-06-03T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2030-06-03T11:00:00", "timeZone": "UTC"},
        },
    )
    body = GetSchedulePostRequestBody(
        schedules=[ALICE_MAIL, "ghost@contoso.com"],
        start_time=DateTimeTimeZone(date_time="2030-06-03T09:00:00", time_zone="UTC"),
        end_time=DateTimeTimeZone(date_time="2030-06-03T12:00:00", time_zone="UTC"),
        availability_view_interval=60,
    )
    result = await graph.users.by_user_id(BOB).calendar.get_schedule.post(body)
    assert result is not None and result.value is not None
    alice, ghost = result.value
    assert leftovers(alice, frozenset()) == set()
    assert alice.availability_view == "020"
    assert [i.subject for i in alice.schedule_items or []] == ["Focus"]
    assert ghost.error is not None and ghost.error.response_code == "ErrorMailRecipientNotFound"


async def test_send_mail_is_recorded(http: httpx.AsyncClient, emu: GraphEmulator) -> None:
    message = {
        "subject": "Hello",
        "body": {"contentType": "Text", "content": "Hi"},
        "toRecipients": [{"emailAddress": {"address": "bob@contoso.com"}}],
    }
    response = await http.post(f"/users/{ALICE}/sendMail", json={"message": message})
    assert response.status_code == 202
    mail = (await http.get(f"{emu.admin_url}/mail")).json()
    assert [m["message"]["subject"] for m in mail] == ["Hello"]
    assert mail[0]["from"] == ALICE_MAIL
