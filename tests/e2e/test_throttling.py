"""Done-when of issue 4: with the Graph emulator throttling 30 % of requests (429 with Retry-After), every
change made in Outlook reaches the CRM exactly once, and no mailbox ever has more than 4 requests in flight.

Faults are injected through the emulator's admin endpoint; the emulator itself measures in-flight requests.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from azure.storage.queue import QueueClient

from sync_core.adapters.storage.core import POISON_QUEUE
from tests.clock import days_ahead, graph_time
from tests.e2e.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e

MAILBOXES = ("adele@contoso.example", "bruno@contoso.example", "chen@contoso.example")
PER_MAILBOX = 8


def _event(subject: str, n: int) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": graph_time(days_ahead(1 + n, 9)),
        "end": graph_time(days_ahead(1 + n, 9, 30)),
        "attendees": [{"emailAddress": {"address": "megan@fabrikam.example"}, "type": "required"}],
    }


def _post_through_throttling(g: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """The test's own writes are throttled too; it honours Retry-After like any client."""
    for _ in range(50):
        reply = g.post(url, json=body)
        if reply.status_code != 429:
            assert reply.status_code == 201, reply.text
            created: dict[str, Any] = reply.json()
            return created
        time.sleep(float(reply.headers.get("Retry-After", "1")))
    raise AssertionError(f"still throttled after 50 tries: {url}")


def _queue_depth(stack: Stack, name: str) -> int:
    assert stack.azurite is not None
    client = QueueClient.from_connection_string(stack.azurite.connection_string, name)
    try:
        return int(client.get_queue_properties().approximate_message_count or 0)
    finally:
        client.close()


def test_every_change_syncs_exactly_once_under_30_percent_throttling_and_4_in_flight(stack: Stack) -> None:
    admin = stack.graph.admin_url
    # The notifications are held back so they land together and the worker reads many events of one
    # mailbox at once; throttling and latency start once the test's own writes are done.
    hold = {"notify_delay_ms": 1500}
    httpx.post(f"{admin}/faults", json=hold).raise_for_status()
    subjects: list[str] = []
    try:
        with stack.graph_http() as g:
            for n in range(PER_MAILBOX):
                for mailbox in MAILBOXES:
                    subject = f"Throttled {mailbox.split('@')[0]} {n}"
                    _post_through_throttling(g, f"/users/{mailbox}/events", _event(subject, n))
                    subjects.append(subject)
        httpx.delete(f"{admin}/requests").raise_for_status()
        httpx.delete(f"{admin}/concurrency").raise_for_status()
        faults = {**hold, "throttle_rate": 0.3, "retry_after": 1, "latency_ms": 50, "seed": 4}
        httpx.post(f"{admin}/faults", json=faults).raise_for_status()

        def synced() -> bool:
            have = {a.get("subject") for a in stack.crm_appointments()}
            return all(s in have for s in subjects)

        wait_for(synced, timeout=120)
        wait_for(
            lambda: _queue_depth(stack, "sync-changes") + _queue_depth(stack, "sync-bulk") == 0, timeout=60
        )
        log = httpx.get(f"{admin}/requests").json()
        peaks = httpx.get(f"{admin}/concurrency").json()
    finally:
        httpx.delete(f"{admin}/faults").raise_for_status()

    records = stack.crm_appointments()
    for subject in subjects:
        assert len([r for r in records if r.get("subject") == subject]) == 1, subject
    throttled = [r for r in log if r["status"] == 429]
    app_reads = [r for r in log if r["method"] == "GET" and "/events/" in r["path"]]
    assert throttled and app_reads, "the app met the throttling it had to get through"
    for mailbox in MAILBOXES:
        assert 1 <= peaks[mailbox] <= 4, (mailbox, peaks)
    assert _queue_depth(stack, POISON_QUEUE) == 0
    print(f"\n{len(subjects)} changes, {len(log)} Graph requests, {len(throttled)} throttled, peaks {peaks}")
