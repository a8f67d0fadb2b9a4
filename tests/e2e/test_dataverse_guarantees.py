"""The sync's guarantees end to end with CRM_CONNECTOR=dataverse, one guarantee per test, on the real stack
(the Graph emulator, the development host on Azurite, the Dataverse emulator and its webhook).

What tests/e2e/test_dataverse_e2e.py already proves is not repeated here: both directions, a Dataverse
user's cancel reaching Outlook as a cancel, and a Create and an Update webhook each delivered twice being
queued once and creating one meeting. Here: our own writes' echoes write nothing to Outlook (D4), a deleted
appointment cancels the Outlook meeting while a Delete hint for a row that still exists cancels nothing
(L3, cancel only on positive evidence), Dataverse's 429 with Retry-After is waited out and nothing is
poisoned, a webhook that was never delivered is caught by the sweep reading the change-tracking feed (X2),
and an expired change-tracking token restarts from a full read without duplicating anything.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bench.common import app_graph_requests, wait_idle
from devstack.azurite import Azurite
from devstack.dataverse_emulator.emulator import ORGANIZATION
from devstack.dataverse_emulator.webhooks import Change, remote_execution_context
from devstack.run import dataverse_webhook
from devstack.stack import CRM_KEY, CRM_SECRET, LocalStack
from tests.e2e.conftest import on_container, started, wait_for
from tests.e2e.outlook import ADELE, BRUNO, MEGAN, events, post, when
from tests.e2e.test_dataverse_e2e import (
    WAIT,
    _appointments,
    _at,
    _book,
    _settle,
    _user,
    _webhooks,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(azurite: Azurite) -> Iterator[LocalStack]:
    yield from started(LocalStack(azurite=azurite, connector="dataverse"))


def _graph_writes(stack: LocalStack, since: int) -> list[tuple[str, str]]:
    """The app's Graph writes (method, path) in the Graph emulator's request log after entry `since`; a
    create sent again with the same transactionId (I3: two hints raced to create) is one write."""
    writes: list[tuple[str, str]] = []
    creates: set[tuple[str, object]] = set()
    for r in app_graph_requests(stack.graph.requests[since:]):
        if r["method"] == "GET":
            continue
        if r["method"] == "POST" and r["path"].endswith("/events"):
            once = (r["path"], (r.get("json") or {}).get("transactionId") or id(r))
            if once in creates:
                continue
            creates.add(once)
        writes.append((r["method"], r["path"]))
    return writes


def _outlook_meeting(stack: LocalStack, subject: str, day: int) -> str:
    """Adele's Outlook meeting with Bruno and Megan, synced to Dataverse; its activityid."""
    post(
        stack,
        ADELE,
        {
            "subject": subject,
            "start": when(_at(day, 10)),
            "end": when(_at(day, 11)),
            "attendees": [
                {"emailAddress": {"address": MEGAN}, "type": "required"},
                {"emailAddress": {"address": BRUNO}, "type": "required"},
            ],
        },
    )
    row = wait_for(lambda: _appointments(stack, subject), timeout=WAIT, what=f"the appointment {subject!r}")
    return str(row[0]["activityid"])


def _sweep(stack: LocalStack) -> None:
    """The hourly reconciliation timer, fired now: a delta resync per mailbox and the CRM's change feed."""
    stack.host.invoke_timer("reconcile_sweep").result(timeout=60)
    _settle(stack)


def _poisoned(stack: LocalStack) -> list[Any]:
    from sync_core.ops.replay import list_poison

    return list(on_container(lambda c: list_poison(c.storage, c.failures, now=c.clock.now())))


def _lose_webhooks(stack: LocalStack) -> None:
    stack.dataverse.register_webhook(None)


def _deliver_webhooks(stack: LocalStack) -> None:
    url, headers = dataverse_webhook(stack.settings["PUBLIC_BASE_URL"], CRM_KEY, CRM_SECRET)
    stack.dataverse.register_webhook(url, headers)


def test_D4_the_echoes_of_our_own_writes_write_nothing_back_to_outlook(stack: LocalStack) -> None:
    # Outlook -> Dataverse: our create (and its status write) post Create and Update webhooks back to us.
    before = len(stack.graph.requests)
    activity_id = _outlook_meeting(stack, "Echo from Outlook", 3)
    _settle(stack)
    assert 202 in _webhooks(stack, "Create", activity_id), "our own create came back as a webhook"
    assert _graph_writes(stack, before) == []

    # Dataverse -> Outlook: one Graph create; the Graph notification of it, and the webhooks of anything we
    # write back to Dataverse, are our echoes.
    before = len(stack.graph.requests)
    activity_id = _book(stack, "Echo from Dataverse", 4)
    wait_for(lambda: events(stack, ADELE, "Echo from Dataverse"), timeout=WAIT, what="the Outlook meeting")
    _settle(stack)
    assert _graph_writes(stack, before) == [("POST", f"/users/{ADELE}/events")]

    # A Dataverse user's edit: one Graph write, and none for its echoes.
    before = len(stack.graph.requests)
    _user(stack, "PATCH", f"appointments/{activity_id}", {"subject": "Echo, edited", "updated_by": ADELE})
    wait_for(lambda: events(stack, ADELE, "Echo, edited"), timeout=WAIT, what="the edit in Outlook")
    _settle(stack)
    writes = _graph_writes(stack, before)
    assert len(writes) == 1 and writes[0][0] == "PATCH", writes


def test_L3_a_deleted_appointment_cancels_the_outlook_meeting_a_delete_hint_for_a_live_row_does_not(
    stack: LocalStack,
) -> None:
    subject = "Deleted in Dataverse"
    activity_id = _outlook_meeting(stack, subject, 5)
    wait_for(lambda: events(stack, BRUNO, subject), timeout=WAIT, what="Bruno's invitation")
    _settle(stack)

    # A Delete webhook for a row that is still there (a stale or misrouted hint): the worker reads the row,
    # finds it, and cancels nothing.
    url, headers = dataverse_webhook(stack.host.base_url, CRM_KEY, CRM_SECRET)
    hint = remote_execution_context(
        Change("Delete", activity_id, {"activityid": activity_id}, subject, ADELE, datetime.now(UTC)),
        ORGANIZATION,
        operation_id=str(uuid.uuid4()),
        correlation_id="00000000-0000-4000-8000-00000000c0de",
        step_id="00000000-0000-4000-8000-00000000de1e",
    )
    answer = httpx.post(url, content=json.dumps(hint).encode(), headers=headers, timeout=10)
    assert answer.status_code == 202, answer.text
    assert wait_idle(stack.settings["AzureWebJobsStorage"], timeout=WAIT)
    assert [e["isCancelled"] for e in events(stack, ADELE, subject)] == [False]
    assert [e["isCancelled"] for e in events(stack, BRUNO, subject)] == [False]

    # The row deleted by a Dataverse user: the organizer's meeting is cancelled, the attendees told.
    _user(stack, "DELETE", f"appointments/{activity_id}")
    wait_for(lambda: events(stack, ADELE, subject) == [], timeout=WAIT, what="the organizer's cancel")
    told = wait_for(
        lambda: [e for e in events(stack, BRUNO, f"Canceled: {subject}") if e["isCancelled"]], timeout=WAIT
    )
    assert len(told) == 1
    assert 202 in _webhooks(stack, "Delete", activity_id)
    _settle(stack)
    assert _appointments(stack, subject) == []  # nothing recreated in Dataverse


def test_a_429_with_retry_after_from_dataverse_is_waited_out_and_the_change_lands_nothing_poisoned(
    stack: LocalStack,
) -> None:
    _settle(stack)
    since = len(stack.dataverse.requests)
    stack.dataverse.set_faults(throttle=3, retry_after_s=1)  # the app's next three Web API requests
    try:
        _book(stack, "Booked while throttled", 6)
        event = wait_for(
            lambda: events(stack, ADELE, "Booked while throttled"), timeout=WAIT, what="the Outlook meeting"
        )
    finally:
        stack.dataverse.set_faults()
    _settle(stack)
    throttled = [r for r in stack.dataverse.requests[since:] if r.status == 429]
    assert len(throttled) == 3, "the app met Dataverse's throttling"
    assert len(event) == 1 and len(events(stack, ADELE, "Booked while throttled")) == 1
    assert _poisoned(stack) == []


def test_X2_a_webhook_never_delivered_is_caught_by_the_sweep_reading_the_change_feed(
    stack: LocalStack,
) -> None:
    activity_id = _book(stack, "Edited unheard", 7)
    wait_for(lambda: events(stack, ADELE, "Edited unheard"), timeout=WAIT, what="the Outlook meeting")
    _sweep(stack)  # the change feed read up to now: the next sweep reads only what changes after
    heard = len(_webhooks(stack, "Update", activity_id))
    _lose_webhooks(stack)
    try:
        _user(
            stack, "PATCH", f"appointments/{activity_id}", {"subject": "Edited, heard", "updated_by": ADELE}
        )
        assert wait_idle(stack.settings["AzureWebJobsStorage"], timeout=WAIT)
    finally:
        _deliver_webhooks(stack)
    assert len(_webhooks(stack, "Update", activity_id)) == heard  # the edit's webhook was never delivered
    _sweep(stack)
    assert len(wait_for(lambda: events(stack, ADELE, "Edited, heard"), timeout=WAIT, what="the edit")) == 1


def test_X2_an_expired_change_tracking_token_restarts_from_a_full_read_without_duplicates(
    stack: LocalStack,
) -> None:
    activity_id = _book(stack, "Before the token expired", 8)
    wait_for(lambda: events(stack, ADELE, "Before the token expired"), timeout=WAIT, what="the meeting")
    _sweep(stack)  # a delta token saved
    _lose_webhooks(stack)
    try:
        _user(
            stack,
            "PATCH",
            f"appointments/{activity_id}",
            {"subject": "After the token expired", "updated_by": ADELE},
        )
        assert wait_idle(stack.settings["AzureWebJobsStorage"], timeout=WAIT)
        stack.dataverse.advance(timedelta(days=8))  # change-tracking tokens live 7 days
        rows, since = len(stack.dataverse.appointments()), len(stack.graph.requests)
        asked = len(stack.dataverse.requests)
        _sweep(stack)
    finally:
        stack.dataverse.advance(timedelta(days=-8))
        _deliver_webhooks(stack)
    assert any(r.status == 400 for r in stack.dataverse.requests[asked:]), "the expired token was refused"
    event = wait_for(lambda: events(stack, ADELE, "After the token expired"), timeout=WAIT, what="the edit")
    assert len(event) == 1
    # Every appointment was read again: none created twice on either side.
    assert len(stack.dataverse.appointments()) == rows
    assert [w for w in _graph_writes(stack, since) if w[0] == "POST"] == []
    subjects = [e["subject"] for events in stack.graph.dump_events(ADELE).values() for e in events]
    assert len(subjects) == len(set(subjects)), subjects
