"""Graph lifecycle events end to end (facts §5): the HTTP function answers 202 and queues the work; the worker
re-creates a removed subscription and resyncs, resyncs on `missed`, and reauthorizes once per 10 minutes.

Changes are made while the emulator drops the mailbox's notifications, so only the resync can find them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest

from sync_core.domain.subscription import SubscriptionRow
from tests.clock import days_ahead, graph_time
from tests.e2e.conftest import Stack, drained, on_container, wait_for

pytestmark = pytest.mark.e2e


def _active(mailbox: str) -> list[SubscriptionRow]:
    async def work(c: Any) -> list[SubscriptionRow]:
        return [r for r in await c.subscriptions.for_mailbox(mailbox) if r.status == "active"]

    return on_container(work)


def _event(subject: str, day: int) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": graph_time(days_ahead(day, 14)),
        "end": graph_time(days_ahead(day, 15)),
        "attendees": [{"emailAddress": {"address": "megan@fabrikam.example"}, "type": "required"}],
    }


def _records(stack: Stack, subject: str) -> list[dict[str, Any]]:
    return [a for a in stack.crm_appointments() if a.get("subject") == subject]


def _change_unnoticed(stack: Stack, mailbox: str, subject: str, day: int) -> str:
    """Create an event while Graph drops every notification for the mailbox; return its id."""
    admin = stack.graph.admin_url
    httpx.post(
        f"{admin}/faults", json={"mailbox": mailbox, "notify_drop_rate": 1.0}, timeout=10
    ).raise_for_status()
    try:
        with stack.graph_http() as g:
            created = g.post(f"/users/{mailbox}/events", json=_event(subject, day)).json()
        wait_for(
            lambda: [
                n
                for n in stack.graph.notifications_sent
                if created["id"] in str(n["payload"]) and n.get("error") == "dropped by fault"
            ]
        )
    finally:
        httpx.delete(f"{admin}/faults", params={"mailbox": mailbox}, timeout=10).raise_for_status()
    return str(created["id"])


def _lifecycle(stack: Stack, subscription_id: str, event: str) -> None:
    r = httpx.post(
        f"{stack.graph.admin_url}/subscriptions/{subscription_id}/lifecycle",
        json={"event": event},
        timeout=10,
    )
    r.raise_for_status()
    assert r.json()["sent"]


def _lifecycle_deliveries(stack: Stack, subscription_id: str) -> list[dict[str, Any]]:
    return [
        n
        for n in stack.graph.notifications_sent
        if n["kind"] == "lifecycle" and n["subscription_id"] == subscription_id and n["status"]
    ]


def test_X2_subscription_removed_leads_to_a_new_subscription_and_a_resync_without_an_operator(
    stack: Stack,
) -> None:
    mailbox = "adele@contoso.example"
    (old,) = _active(mailbox)
    _change_unnoticed(stack, mailbox, "Lifecycle gap", 7)
    assert _records(stack, "Lifecycle gap") == []

    _lifecycle(stack, old.subscription_id, "subscriptionRemoved")  # Graph deletes it and tells us

    delivered = wait_for(lambda: _lifecycle_deliveries(stack, old.subscription_id))
    assert [n["status"] for n in delivered] == [202]  # answered at once; the work went through the queue
    (new,) = wait_for(lambda: [r for r in _active(mailbox) if r.subscription_id != old.subscription_id])
    graph_ids = {s["id"] for s in stack.graph.subscriptions}
    assert new.subscription_id in graph_ids and old.subscription_id not in graph_ids
    record = wait_for(lambda: _records(stack, "Lifecycle gap"))
    assert len(record) == 1


def test_X2_missed_lifecycle_event_resyncs_the_mailbox(stack: Stack) -> None:
    mailbox = "chen@contoso.example"
    (sub,) = _active(mailbox)
    _change_unnoticed(stack, mailbox, "Lifecycle missed", 8)
    _lifecycle(stack, sub.subscription_id, "missed")
    assert len(wait_for(lambda: _records(stack, "Lifecycle missed"))) == 1
    assert [r.subscription_id for r in _active(mailbox)] == [sub.subscription_id]  # kept: not removed


def test_reauthorization_required_twice_reauthorizes_once_and_never_also_renews(stack: Stack) -> None:
    mailbox = "bruno@contoso.example"
    (sub,) = _active(mailbox)
    hour_ago = sub.last_renewal - timedelta(hours=1) if sub.last_renewal else None
    # Created moments ago, which authorized it: age the row so the event asks for a reauthorization.
    on_container(lambda c: c.subscriptions.save(replace(sub, last_renewal=hour_ago)))
    stack.graph.clear_requests()
    _lifecycle(stack, sub.subscription_id, "reauthorizationRequired")
    _lifecycle(stack, sub.subscription_id, "reauthorizationRequired")
    wait_for(lambda: len(_lifecycle_deliveries(stack, sub.subscription_id)) == 2)

    def writes() -> list[tuple[str, str]]:
        return [
            (r["method"], r["path"])
            for r in stack.graph.requests
            if r["path"].startswith("/subscriptions/") and r["method"] in ("PATCH", "POST")
        ]

    wait_for(lambda: writes() and drained(), timeout=60)
    assert writes() == [("POST", f"/subscriptions/{sub.subscription_id}/reauthorize")]
    (after,) = _active(mailbox)
    assert after.last_reauthorization is not None and after.subscription_id == sub.subscription_id
