"""A calendar change in a Microsoft 365 mailbox reaches the CRM end to end, once, through the real path:
Graph emulator -> notification -> HTTP ingress -> Azurite queue -> worker -> CRM emulator."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest

from tests.clock import days_ahead, graph_time
from tests.e2e.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e


def _event(subject: str, day: int = 4) -> dict[str, Any]:
    """A one-hour meeting `day` days from today, at 10:00 UTC."""
    start = days_ahead(day, 10)
    return {
        "subject": subject,
        "body": {"contentType": "text", "content": "Agenda: numbers"},
        "start": graph_time(start),
        "end": graph_time(start + timedelta(hours=1)),
        "attendees": [
            {"emailAddress": {"address": "megan@fabrikam.example", "name": "Megan Bowen"}, "type": "required"}
        ],
    }


def _records(stack: Stack, subject: str) -> list[dict[str, Any]]:
    return [a for a in stack.crm_appointments() if a.get("subject") == subject]


def test_an_event_created_in_outlook_appears_once_in_the_crm(stack: Stack) -> None:
    with stack.graph_http() as g:
        sent = _event("Skeleton create")
        created = g.post("/users/adele@contoso.example/events", json=sent).json()
    record = wait_for(lambda: _records(stack, "Skeleton create"))[0]
    assert record["start"].startswith(sent["start"]["dateTime"])
    assert {a["email"] for a in record["attendees"]} >= {"megan@fabrikam.example"}
    assert record["external_ref"]
    assert created["id"]


def test_I3_three_copies_of_the_same_notification_produce_exactly_one_crm_record(stack: Stack) -> None:
    with stack.graph_http() as g:
        created = g.post("/users/bruno@contoso.example/events", json=_event("Skeleton triplicate", 5)).json()
    wait_for(lambda: _records(stack, "Skeleton triplicate"))
    sent = [n for n in stack.graph.notifications_sent if created["id"] in json.dumps(n)]
    assert sent, "the emulator notified the app of the new event"
    body = json.dumps(sent[0]["payload"]).encode()
    for _ in range(3):
        assert stack.post_to_ingress("graph/notifications", body).status_code == 202
    time.sleep(1.5)  # let the worker drain the three copies
    assert len(_records(stack, "Skeleton triplicate")) == 1


def test_an_edit_and_a_delete_in_outlook_update_then_cancel_the_crm_record(stack: Stack) -> None:
    with stack.graph_http() as g:
        created = g.post("/users/chen@contoso.example/events", json=_event("Skeleton edit", 6)).json()
        wait_for(lambda: _records(stack, "Skeleton edit"))
        g.patch(f"/users/chen@contoso.example/events/{created['id']}", json={"subject": "Skeleton edited"})
        wait_for(lambda: _records(stack, "Skeleton edited"))
        g.delete(f"/users/chen@contoso.example/events/{created['id']}")
    cancelled = wait_for(
        lambda: [r for r in _records(stack, "Skeleton edited") if r["status"] == "cancelled"]
    )
    assert len(cancelled) == 1
    assert _records(stack, "Skeleton edit") == []


def test_a_forged_notification_is_answered_202_and_changes_nothing(stack: Stack) -> None:
    before = len(stack.crm_appointments())
    forged = {
        "value": [
            {
                "subscriptionId": "not-ours",
                "clientState": "guess",
                "changeType": "created",
                "resource": "Users/x/Events/y",
                "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "id": "y"},
            }
        ]
    }
    reply = stack.post_to_ingress("graph/notifications", json.dumps(forged).encode())
    assert reply.status_code == 202
    assert stack.post_to_ingress("graph/notifications", b"{oops").status_code == 400
    time.sleep(0.5)
    assert len(stack.crm_appointments()) == before
