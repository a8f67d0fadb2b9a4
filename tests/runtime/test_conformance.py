"""Every function of function_app.py through the real Python worker library, against the dev host.

The same inputs go to the dev host (over HTTP, or its on-demand invocation for queue and timer functions)
and to azure-functions-runtime (invocation requests in the host's shapes), on one stack (Azurite, both
emulators); each pair of outcomes must agree: status, content type and body of an HTTP reply, what lands
on the queue, what the queue worker and the timers do.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from devstack.stack import CRM_KEY, FUNCTION_KEY, GRAPH_KEY, MASTER_KEY, LocalStack
from sync_core.adapters.storage.core import CHANGES_QUEUE
from tests.clock import days_ahead, graph_time
from tests.runtime.conftest import runtime_library
from tests.runtime.worker import Outcome, Worker

runtime_library()  # skips this module outside `make conformance` (Python 3.13 and the library)
pytestmark = pytest.mark.conformance

APP_FUNCTIONS = {
    "graph_notifications",
    "graph_lifecycle",
    "crm_webhook",
    "dataverse_webhook",
    "salesforce_webhook",
    "sync_worker",
    "sync_bulk_worker",
    "renew_subscriptions",
    "reconcile_sweep",
    "poll_unsubscribed",
    "health",
    "ops_replay",
    "ops_status",
    "ops_gauges",
}
KEYS = {"graph": GRAPH_KEY, "crm": CRM_KEY, "function": FUNCTION_KEY, "master": MASTER_KEY}
MOMENTS = {"at", "received_at", "correlation_id"}  # differ by design between two runs of the same input
invoked: set[str] = set()  # every function the runtime ran, checked last


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        """The JSON body without the moments it was made at (each side answers at its own)."""
        return _timeless(json.loads(self.body))


def wait_for(predicate: Callable[[], Any], what: str, within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {within} s for {what}")
        time.sleep(0.05)
    return found


def queue(stack: LocalStack) -> QueueClient:
    return QueueClient.from_connection_string(
        stack.settings["AzureWebJobsStorage"], CHANGES_QUEUE, message_decode_policy=TextBase64DecodePolicy()
    )


def take_messages(stack: LocalStack) -> list[dict[str, Any]]:
    """Receive and delete every visible message on sync-changes; each without its correlation id and time."""
    taken: list[dict[str, Any]] = []
    with queue(stack) as q:
        while batch := list(q.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=60)):
            for message in batch:
                taken.append(_timeless(json.loads(message.content)))
                q.delete_message(message)
    return sorted(taken, key=json.dumps)


def empty_queue(stack: LocalStack) -> None:
    with queue(stack) as q:
        q.clear_messages()  # the invisible ones too (delayed resyncs)


def queued(stack: LocalStack) -> int:
    with queue(stack) as q:
        return int(q.get_queue_properties().approximate_message_count or 0)


def via_host(
    stack: LocalStack,
    method: str,
    route: str,
    key: str,
    query: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
) -> Reply:
    r = httpx.request(
        method,
        f"{stack.host.base_url}/api/{route}",
        params=[("code", KEYS[key]), *(query or [])],
        content=body,
        headers=headers or [],
        timeout=30,
    )
    return Reply(r.status_code, r.headers.get("content-type", "").split(";")[0].strip(), r.content)


async def via_worker(
    worker: Worker,
    stack: LocalStack,
    name: str,
    method: str,
    route: str,
    key: str,
    query: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
) -> Reply:
    outcome = await worker.invoke_http(
        name,
        method=method,
        url=f"{stack.host.base_url}/api/{route}",
        query=[("code", KEYS[key]), *(query or [])],
        headers=[("host", stack.host.base_url.removeprefix("http://")), *(headers or [])],
        body=body,
    )
    invoked.add(name)
    assert outcome.ok, outcome.error
    assert outcome.http is not None, f"{name} returned no HTTP response: {outcome.return_value}"
    return Reply(outcome.http.status, outcome.http.content_type, outcome.http.body)


async def both(
    worker: Worker, stack: LocalStack, name: str, method: str, route: str, key: str, **request: Any
) -> tuple[Reply, list[dict[str, Any]], Reply, list[dict[str, Any]]]:
    """The same request through the dev host and through the library; each reply with what it queued."""
    empty_queue(stack)
    host_reply = via_host(stack, method, route, key, **request)
    host_queued = take_messages(stack)
    worker_reply = await via_worker(worker, stack, name, method, route, key, **request)
    return host_reply, host_queued, worker_reply, take_messages(stack)


def test_the_library_indexes_and_loads_every_function_with_the_bindings_the_dev_host_serves(
    worker: Worker, stack: LocalStack
) -> None:
    assert set(worker.functions) == APP_FUNCTIONS == set(stack.host.functions)
    assert all(r.result.status == worker.protos.StatusResult.Success for r in worker.load_responses.values())
    for name, hosted in stack.host.functions.items():
        trigger = worker.trigger(name)
        assert trigger["type"] == hosted.kind
        for field in ("route", "methods", "authLevel", "queueName", "connection", "schedule"):
            assert _folded(trigger.get(field)) == _folded(hosted.trigger.get(field)), (name, field)


@pytest.mark.parametrize("route", ["graph/notifications", "graph/lifecycle"])
async def test_the_graph_validation_handshake(worker: Worker, stack: LocalStack, route: str) -> None:
    name = route.replace("graph/", "graph_")
    token = "Validation: a token with spaces & symbols"
    host, host_q, lib, lib_q = await both(
        worker, stack, name, "POST", route, "graph", query=[("validationToken", token)]
    )
    assert (host.status, host.content_type, host.body) == (200, "text/plain", token.encode())
    assert (lib.status, lib.content_type, lib.body) == (host.status, host.content_type, host.body)
    assert host_q == lib_q == []
    # An empty token reaches neither as a handshake: the host leaves the parameter out.
    host, _, lib, _ = await both(worker, stack, name, "POST", route, "graph", query=[("validationToken", "")])
    assert host.status == lib.status == 400 and host.body == lib.body


async def test_a_graph_notification_is_accepted_and_enqueued_by_both(
    worker: Worker, stack: LocalStack
) -> None:
    # The emulator notifies the dev host of a new event; the same notification then goes to the library.
    empty_queue(stack)
    sent_before = len(stack.graph.notifications_sent)
    created = _create_event(stack, "Conformance: notified")
    delivered = wait_for(
        lambda: [
            n
            for n in stack.graph.notifications_sent[sent_before:]
            if n["status"] == 202 and created["id"] in json.dumps(n["payload"])
        ],
        "the emulator's notification of the new event, accepted by the dev host",
    )[0]
    host_queued = wait_for(lambda: take_messages(stack), "the dev host's message")
    body = json.dumps(delivered["payload"]).encode()
    lib = await via_worker(
        worker,
        stack,
        "graph_notifications",
        "POST",
        "graph/notifications",
        "graph",
        body=body,
        headers=[("content-type", "application/json")],
    )
    assert lib.status == 202
    assert take_messages(stack) == host_queued
    assert [(m["type"], m["event_id"]) for m in host_queued] == [("graph_change", created["id"])]
    # And a second time through both, for the replies side by side.
    host, host_q, lib, lib_q = await both(
        worker,
        stack,
        "graph_notifications",
        "POST",
        "graph/notifications",
        "graph",
        body=body,
        headers=[("content-type", "application/json")],
    )
    assert (lib.status, lib.content_type, lib.body) == (host.status, host.content_type, host.body)
    assert lib_q == host_q == host_queued


async def test_a_crm_webhook_without_a_signature_is_refused_by_both(
    worker: Worker, stack: LocalStack
) -> None:
    body = json.dumps({"events": [{"id": "apt-1", "type": "created", "version": "1"}]}).encode()
    host, host_q, lib, lib_q = await both(
        worker,
        stack,
        "crm_webhook",
        "POST",
        "crm/webhook",
        "crm",
        body=body,
        headers=[("content-type", "application/json")],
    )
    assert host.status == 401 and "error" in host.json()
    assert (lib.status, lib.content_type, lib.json()) == (host.status, host.content_type, host.json())
    assert host_q == lib_q == []


async def test_a_dataverse_webhook_to_a_stack_of_another_connector_is_refused_by_both(
    worker: Worker, stack: LocalStack
) -> None:
    body = json.dumps({"MessageName": "Update", "PrimaryEntityName": "appointment"}).encode()
    host, host_q, lib, lib_q = await both(
        worker,
        stack,
        "dataverse_webhook",
        "POST",
        "crm/dataverse/webhook",
        "function",  # the host-level key: this stack gives the Dataverse door no key of its own
        body=body,
        headers=[("content-type", "application/json")],
    )
    assert host.status == 404 and "error" in host.json()  # CRM_CONNECTOR is rest here
    assert (lib.status, lib.content_type, lib.json()) == (host.status, host.content_type, host.json())
    assert host_q == lib_q == []


async def test_a_salesforce_outbound_message_to_a_stack_of_another_connector_is_refused_by_both(
    worker: Worker, stack: LocalStack
) -> None:
    from devstack.salesforce_emulator import ORG_ID
    from devstack.salesforce_emulator.outbound import soap_message

    body = soap_message(ORG_ID, [("04l000000000001AAA", "Event", {"Id": "00U000000000001AAA"})])
    host, host_q, lib, lib_q = await both(
        worker,
        stack,
        "salesforce_webhook",
        "POST",
        "crm/salesforce/webhook",
        "function",  # the host-level key opens every function-level route
        body=body,
        headers=[("content-type", "text/xml; charset=utf-8")],
    )
    assert host.status == 404 and b"CRM_CONNECTOR=salesforce" in host.body  # CRM_CONNECTOR is rest here
    assert (lib.status, lib.content_type, lib.body) == (host.status, host.content_type, host.body)
    assert host_q == lib_q == []


async def test_health_and_the_operator_routes(worker: Worker, stack: LocalStack) -> None:
    host, _, lib, _ = await both(worker, stack, "health", "GET", "health", "function")
    assert host.status in (200, 503) and host.content_type == "application/json"
    assert (lib.status, lib.content_type, lib.json()) == (host.status, host.content_type, host.json())

    dry_run = json.dumps({"dry_run": True}).encode()
    host, _, lib, _ = await both(worker, stack, "ops_replay", "POST", "ops/replay", "master", body=dry_run)
    assert host.status == 200
    assert (lib.status, lib.content_type, lib.json()) == (host.status, host.content_type, host.json())
    host, _, lib, _ = await both(worker, stack, "ops_replay", "POST", "ops/replay", "master", body=b"[1")
    assert host.status == lib.status == 400 and host.json() == lib.json()

    host, _, lib, _ = await both(worker, stack, "ops_status", "GET", "ops/status", "master")
    assert host.status == lib.status == 200 and host.content_type == lib.content_type == "text/html"
    assert b"<h1>Calendar sync status</h1>" in host.body and b"<h1>Calendar sync status</h1>" in lib.body


async def test_the_queue_worker_processes_a_change_like_the_dev_host(
    worker: Worker, stack: LocalStack
) -> None:
    texts = {}
    for side in ("host", "library"):
        empty_queue(stack)
        event = _create_event(stack, f"Conformance: synced by the {side}")
        message = wait_for(lambda e=event: _raw_messages_about(stack, e["id"]), f"the {side}'s message")[0]
        texts[side] = (event, message)
        empty_queue(stack)
    event, message = texts["host"]
    stack.host.invoke("sync_worker", message).result(timeout=60)
    event, message = texts["library"]
    outcome: Outcome = await worker.invoke_queue("sync_worker", message)
    invoked.add("sync_worker")
    assert outcome.ok, outcome.error
    assert outcome.return_value is None  # a queue function has no $return
    subjects = sorted(
        a["subject"] for a in stack.crm_appointments() if a["subject"].startswith("Conformance:")
    )
    assert subjects == ["Conformance: synced by the host", "Conformance: synced by the library"]

    # A message that is not ours: both record it and move it to poison, and the invocation succeeds; the
    # bulk queue's worker (service/fairness.py) handles messages the same way.
    for name in ("sync_worker", "sync_bulk_worker"):
        stack.host.invoke(name, '{"type": "nope"}').result(timeout=60)
        outcome = await worker.invoke_queue(name, '{"type": "nope"}')
        invoked.add(name)
        assert outcome.ok, outcome.error


@pytest.mark.parametrize(
    "name", ["renew_subscriptions", "poll_unsubscribed", "ops_gauges", "reconcile_sweep"]
)
async def test_a_timer_run(worker: Worker, stack: LocalStack, name: str) -> None:
    empty_queue(stack)
    stack.host.invoke_timer(name).result(timeout=120)
    by_host = queued(stack)
    empty_queue(stack)
    outcome = await worker.invoke_timer(name)
    invoked.add(name)
    assert outcome.ok, outcome.error
    assert outcome.return_value is None
    if name == "reconcile_sweep":
        # One delayed resync per sync mailbox from each; the host's run also queued the CRM's changes since
        # the cursor, and moved the cursor past them.
        mailboxes = _sync_mailboxes()
        assert queued(stack) == mailboxes <= by_host
    else:
        assert queued(stack) == by_host == 0


async def test_a_timer_past_due_runs_too(worker: Worker) -> None:
    outcome = await worker.invoke_timer("poll_unsubscribed", past_due=True)
    assert outcome.ok, outcome.error


def test_every_function_ran_through_the_library() -> None:
    assert invoked == APP_FUNCTIONS


# -- helpers


def _timeless(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if k not in MOMENTS}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def _folded(value: Any) -> Any:
    """Binding values as the host reads them: enum names in any case (FUNCTION, function)."""
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, list):
        return [_folded(v) for v in value]
    return value


def _sync_mailboxes() -> int:
    from sync_core.bootstrap import configuration

    _, policy = configuration()
    return sum(1 for user in policy.sync_users if user.enabled)


def _create_event(stack: LocalStack, subject: str) -> dict[str, Any]:
    event = {
        "subject": subject,
        "start": graph_time(days_ahead(3, 10)),
        "end": graph_time(days_ahead(3, 11)),
        "attendees": [
            {"emailAddress": {"address": "megan@fabrikam.example", "name": "Megan Bowen"}, "type": "required"}
        ],
    }
    with stack.graph_http() as graph:
        r = graph.post("/users/adele@contoso.example/events", json=event)
        r.raise_for_status()
        return dict(r.json())


def _raw_messages_about(stack: LocalStack, event_id: str) -> list[str]:
    with queue(stack) as q:
        return [str(m.content) for m in q.peek_messages(max_messages=32) if event_id in str(m.content)]
