"""Onboarding a mailbox adopts what already matches (I5) end to end: a CRM record linked to an Outlook meeting
before the mailbox was synced (its `external_ref` names the meeting key, `ical:<iCalUId>`) is found by the
backfill through `GET /appointments?external_ref=...` and linked, never created a second time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.clock import days_ahead, graph_time, iso_z
from tests.e2e.conftest import Stack, drained, on_container, wait_for

pytestmark = pytest.mark.e2e

MAILBOX = "chen@contoso.example"


def _outlook_event_no_notification_announced(stack: Stack, subject: str, start: datetime) -> dict[str, Any]:
    """An event that was in the mailbox before the sync knew of it: every notification for it dropped."""
    admin = stack.graph.admin_url
    faults = {"mailbox": MAILBOX, "notify_drop_rate": 1.0}
    httpx.post(f"{admin}/faults", json=faults, timeout=10).raise_for_status()
    try:
        with stack.graph_http() as g:
            created: dict[str, Any] = g.post(
                f"/users/{MAILBOX}/events",
                json={
                    "subject": subject,
                    "start": graph_time(start),
                    "end": graph_time(start + timedelta(hours=1)),
                    "attendees": [
                        {"emailAddress": {"address": "megan@fabrikam.example"}, "type": "required"}
                    ],
                },
            ).json()
        wait_for(
            lambda: [
                n
                for n in stack.graph.notifications_sent
                if created["id"] in str(n["payload"]) and n.get("error") == "dropped by fault"
            ]
        )
    finally:
        httpx.delete(f"{admin}/faults", params={"mailbox": MAILBOX}, timeout=10).raise_for_status()
    return created


def test_I5_backfill_adopts_an_unlinked_crm_record_whose_external_ref_names_the_meeting(stack: Stack) -> None:
    from sync_core.ops import cli

    subject = "Onboarding: linked in the CRM beforehand"
    # The stack subscribed the mailbox, which queued its onboarding backfill (I5): let it finish first, so
    # the backfill this test makes is the one that meets the event and the record below.
    wait_for(lambda: on_container(lambda c: c.mailbox_states.get(MAILBOX)).last_confirmed, timeout=30)
    wait_for(drained, timeout=30)
    start = days_ahead(8, 9)
    event = _outlook_event_no_notification_announced(stack, subject, start)
    key = "ical:" + event["iCalUId"]
    # A CRM user (or an import) linked a record to the Outlook meeting before the mailbox was onboarded.
    record = stack.crm.user_create(
        {
            "subject": subject,
            "start": iso_z(start),
            "end": iso_z(start + timedelta(hours=1)),
            "organizer": {"email": MAILBOX},
        },
        external_ref=key,
    )
    assert stack.crm.wait_for_webhooks(30)  # the CRM's own webhook: skipped, the M365 side links (I3)
    wait_for(drained, timeout=30)
    assert on_container(lambda c: c.mappings.get(key)) is None  # nothing links it yet
    stack.crm.clear_requests()

    assert cli.main(["backfill", "--mailbox", MAILBOX, "--wait-seconds", "60"]) == 0
    mapping = wait_for(lambda: on_container(lambda c: c.mappings.get(key)), timeout=30)
    wait_for(drained, timeout=30)

    assert (mapping.crm_id, mapping.graph_event_id) == (record["id"], event["id"])
    assert [a["id"] for a in stack.crm_appointments() if a.get("external_ref") == key] == [record["id"]]
    assert [a["id"] for a in stack.crm_appointments() if a.get("subject") == subject] == [record["id"]]
    creates = [r for r in stack.crm.requests if r.method == "POST" and r.path == "/appointments"]
    assert [r for r in creates if isinstance(r.body, dict) and r.body.get("external_ref") == key] == []
    lookups = [r.query for r in stack.crm.requests if r.method == "GET" and r.path == "/appointments"]
    assert (("external_ref", key),) in lookups
    with stack.graph_http() as g:  # and no second event on the Outlook side either
        view = g.get(
            f"/users/{MAILBOX}/calendarView",
            params={
                "startDateTime": iso_z(start - timedelta(hours=9)),
                "endDateTime": iso_z(start + timedelta(hours=15)),
            },
        ).json()["value"]
    assert [e["id"] for e in view if e["subject"] == subject] == [event["id"]]
