"""Reconciliation end to end: the hourly sweep (the real timer function, fired on demand) finds what the
notifications missed (X2), a mailbox Graph refuses a subscription is polled instead and says so (X3), and the
initial backfill is the reconciliation path and adopts instead of duplicating (I5)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.clock import days_ahead, graph_time
from tests.e2e.conftest import Stack, drained, on_container, wait_for

pytestmark = pytest.mark.e2e


def _event(subject: str, day: int) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": graph_time(days_ahead(day, 9)),
        "end": graph_time(days_ahead(day, 10)),
        "attendees": [{"emailAddress": {"address": "megan@fabrikam.example"}, "type": "required"}],
    }


def _records(stack: Stack, subject: str) -> list[dict[str, Any]]:
    return [a for a in stack.crm_appointments() if a.get("subject") == subject]


def _sweep(stack: Stack) -> None:
    stack.host.invoke_timer("reconcile_sweep").result(timeout=60)


def _state(mailbox: str) -> Any:
    return on_container(lambda c: c.mailbox_states.get(mailbox))


def test_X2_every_notification_dropped_still_in_sync_after_one_sweep(stack: Stack) -> None:
    mailbox = "bruno@contoso.example"
    _sweep(stack)  # the baseline round of every mailbox
    wait_for(lambda: _state(mailbox).last_sweep is not None and drained(), timeout=30)
    admin = stack.graph.admin_url
    httpx.post(
        f"{admin}/faults", json={"mailbox": mailbox, "notify_drop_rate": 1.0}, timeout=10
    ).raise_for_status()
    try:
        with stack.graph_http() as g:
            created = g.post(f"/users/{mailbox}/events", json=_event("Dropped notification", 9)).json()
            g.patch(f"/users/{mailbox}/events/{created['id']}", json={"subject": "Dropped, then edited"})
        dropped = wait_for(
            lambda: [
                n
                for n in stack.graph.notifications_sent
                if created["id"] in str(n["payload"]) and n.get("error") == "dropped by fault"
            ]
        )
        assert len(dropped) == 2 and drained() and _records(stack, "Dropped, then edited") == []

        _sweep(stack)

        record = wait_for(lambda: _records(stack, "Dropped, then edited"), timeout=30)
        assert len(record) == 1 and _records(stack, "Dropped notification") == []
        state = wait_for(lambda: (s := _state(mailbox)).silent_sweeps and s)
        assert state.silent_since is not None  # flagged: delta showed changes no notification announced
        assert state.last_confirmed is not None and state.last_confirmed >= state.last_sweep
    finally:
        httpx.delete(f"{admin}/faults", params={"mailbox": mailbox}, timeout=10).raise_for_status()


def test_X2_L4_a_deletion_whose_notification_was_lost_cancels_the_crm_record_after_a_410(
    stack: Stack,
) -> None:
    """No incremental round can report this deletion: the delta state is lost (410), so the round that
    follows lists only live events. The mapped event it no longer returns is checked, found gone (L4)."""
    mailbox = "bruno@contoso.example"
    with stack.graph_http() as g:
        created = g.post(f"/users/{mailbox}/events", json=_event("Synced, then deleted unheard", 14)).json()
    record = wait_for(lambda: _records(stack, "Synced, then deleted unheard"), timeout=30)[0]
    assert record["status"] != "cancelled"
    wait_for(drained, timeout=30)  # the mapping is saved
    admin = stack.graph.admin_url
    httpx.post(
        f"{admin}/faults", json={"mailbox": mailbox, "notify_drop_rate": 1.0}, timeout=10
    ).raise_for_status()
    try:
        with stack.graph_http() as g:
            g.delete(f"/users/{mailbox}/events/{created['id']}").raise_for_status()
        wait_for(
            lambda: [
                n
                for n in stack.graph.notifications_sent
                if created["id"] in str(n["payload"])
                and "deleted" in str(n["payload"])
                and n.get("error") == "dropped by fault"
            ]
        )
        stack.graph.invalidate_delta_tokens(mailbox)  # the stored delta link now answers 410

        _sweep(stack)

        cancelled = wait_for(
            lambda: [
                r for r in stack.crm_appointments() if r["id"] == record["id"] and r["status"] == "cancelled"
            ],
            timeout=30,
        )
        assert len(cancelled) == 1 and len(_records(stack, "Synced, then deleted unheard")) == 1
    finally:
        httpx.delete(f"{admin}/faults", params={"mailbox": mailbox}, timeout=10).raise_for_status()


def test_X3_a_mailbox_graph_refuses_a_subscription_is_polled_by_delta_and_reported(stack: Stack) -> None:

    mailbox = "chen@contoso.example"

    async def refuse(c: Any) -> Any:
        for row in await c.subscriptions.for_mailbox(mailbox):  # an operator removes the working one
            await c.graph.delete_subscription(row.subscription_id, mailbox)
            await c.subscriptions.save(row.retired("removed", c.clock.now()))
        # Graph cannot validate this notification URL, so it refuses the subscription (400).
        dead = "http://127.0.0.1:9"
        c.settings = c.settings.model_copy(update={"public_base_url": dead})
        manager = c.subscription_manager()
        return await manager.ensure(mailbox)

    row = on_container(refuse)
    assert row.status == "polling" and "Graph" in row.reason
    state = _state(mailbox)
    assert state.status == "polling" and "refused" in state.status_reason  # reported as such

    with stack.graph_http() as g:
        g.post(f"/users/{mailbox}/events", json=_event("Polled, not notified", 10))
    assert not [s for s in stack.graph.subscriptions if mailbox in s["resource"]]
    stack.host.invoke_timer("poll_unsubscribed").result(timeout=60)
    assert len(wait_for(lambda: _records(stack, "Polled, not notified"), timeout=30)) == 1


def test_I5_initial_backfill_is_the_reconciliation_path_and_adopts_instead_of_duplicating(
    stack: Stack,
) -> None:
    from sync_core.domain.messages import MailboxResync, encode

    mailbox = "adele@contoso.example"
    with stack.graph_http() as g:
        g.post(f"/users/{mailbox}/events", json=_event("Before onboarding", 11))
    wait_for(lambda: _records(stack, "Before onboarding"))
    backfill = MailboxResync(
        correlation_id="onboard-adele",
        received_at=datetime.now(UTC),
        mailbox=mailbox,
        reason="backfill",
        full=True,
    )  # what the renewal run enqueues when it subscribes a newly enabled mailbox
    on_container(lambda c: c.storage.enqueue(encode(backfill)))
    wait_for(lambda: (s := _state(mailbox)).last_confirmed and s.last_confirmed >= backfill.received_at)
    wait_for(drained, timeout=30)
    assert len(_records(stack, "Before onboarding")) == 1
