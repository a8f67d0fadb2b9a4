"""Economy: Graph requests, Table operations and CRM calls per synced change, per echo, per duplicate.

Counted at the source: the Graph emulator's request log (the app's requests only), the CRM emulator's
request log, and every azure-core request the app sends to Azurite's table port (bench.common.
StorageCounter wraps the async transport). Phases run one after another on one stack, each waiting for
the queue to drain, so each phase's counts belong to it alone:

1. synced create, M365 -> CRM: events created in Outlook (the CRM's webhooks are held back, so the echo
   of our own CRM write is measured on its own in phase 2);
2. echo: the held-back CRM webhooks of phase 1, signed as the CRM signs them;
3. duplicate: every Graph notification of phase 1, delivered again;
4. no-op: each event PATCHed with the subject it already has (Graph notifies, nothing differs);
5. synced update, M365 -> CRM: a new subject on each event (webhooks on: includes its CRM echo);
6. synced create, CRM -> M365: records created in the CRM (includes the Graph notification echo).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.common import StorageCounter, app_graph_requests, storage_ports, wait_idle, wait_until
from devstack.stack import CRM_SECRET, LocalStack
from sync_core.ports.crm_webhook import sign

MAILBOXES = ("adele@contoso.example", "bruno@contoso.example", "chen@contoso.example")


class Meter:
    """Counts one phase's requests. `crm_log`: the CRM emulator's request log (entries with a `method`),
    the REST CRM emulator's unless given (bench.crm_economy passes the Dataverse emulator's)."""

    def __init__(
        self,
        stack: LocalStack,
        counter: StorageCounter,
        crm_log: Callable[[], list[Any]] | None = None,
    ) -> None:
        self.stack, self.counter = stack, counter
        self.crm_log = crm_log or (lambda: stack.crm.requests)
        self.ports = storage_ports(stack.settings["AzureWebJobsStorage"])

    def measure(self, name: str, units: int, act: Callable[[], None]) -> dict[str, Any]:
        s = self.stack
        g0, c0, t0 = len(s.graph.requests), len(self.crm_log()), self.counter.snapshot()
        act()
        wait_idle(s.settings["AzureWebJobsStorage"], timeout=90)
        graph = app_graph_requests(s.graph.requests[g0:])
        crm = self.crm_log()[c0:]
        t1 = self.counter.snapshot()
        table = sum(v - t0[k] for k, v in t1.items() if k[0] == self.ports["table"])
        table_writes = sum(
            v - t0[k]
            for k, v in t1.items()
            if k[0] == self.ports["table"] and k[1] in ("POST", "PUT", "PATCH", "MERGE", "DELETE")
        )
        graph_reads = sum(1 for r in graph if r["method"] == "GET")
        crm_reads = sum(1 for r in crm if r.method == "GET")
        per = max(units, 1)
        return {
            "phase": name,
            "units": units,
            "graph_reads/unit": graph_reads / per,
            "graph_writes/unit": (len(graph) - graph_reads) / per,
            "table_ops/unit": table / per,
            "table_writes/unit": table_writes / per,
            "crm_reads/unit": crm_reads / per,
            "crm_writes/unit": (len(crm) - crm_reads) / per,
        }


def _event(subject: str, day: str, minute: int) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": {"dateTime": f"{day}T10:{minute:02d}:00", "timeZone": "UTC"},
        "end": {"dateTime": f"{day}T11:{minute:02d}:00", "timeZone": "UTC"},
        "attendees": [{"emailAddress": {"address": "megan@fabrikam.example"}, "type": "required"}],
    }


def create_events(g: httpx.Client, tag: str, day: str, count: int, into: list[tuple[str, str]]) -> None:
    """`count` events `eco <tag> <i>` made in Outlook, the mailboxes in turn; each `(mailbox, id)` is added
    to `into`."""
    for i in range(count):
        mailbox = MAILBOXES[i % len(MAILBOXES)]
        r = g.post(f"/users/{mailbox}/events", json=_event(f"eco {tag} {i}", day, i % 60))
        into.append((mailbox, r.json()["id"]))


def replay(stack: LocalStack, notifications: list[dict[str, Any]]) -> None:
    """Every Graph notification posted to the ingress again (a duplicate)."""
    for n in notifications:
        stack.post_to_ingress("graph/notifications", json.dumps(n["payload"]).encode())


def set_subjects(g: httpx.Client, created: list[tuple[str, str]], tag: str, suffix: str = "") -> None:
    """PATCH each created event's subject to `eco <tag> <i><suffix>` (the same subject with no suffix)."""
    for i, (mailbox, event_id) in enumerate(created):
        g.patch(f"/users/{mailbox}/events/{event_id}", json={"subject": f"eco {tag} {i}{suffix}"})


def run(count: int) -> list[dict[str, Any]]:
    counter = StorageCounter()
    counter.install()
    stack = LocalStack().start()
    meter = Meter(stack, counter)
    tag = uuid.uuid4().hex[:6]
    day = (datetime.now(UTC) + timedelta(days=4)).date().isoformat()
    created: list[tuple[str, str]] = []
    rows: list[dict[str, Any]] = []
    try:
        wait_idle(stack.settings["AzureWebJobsStorage"])
        g = stack.graph_http()
        webhook_url = stack.crm._sender.url  # the emulator keeps no public getter
        stack.crm.set_webhook_url(None)
        n0 = len(stack.graph.notifications_sent)

        def create() -> None:
            create_events(g, tag, day, count, created)
            wait_until(lambda: len(_records(stack, tag)) >= count, 60)

        rows.append(meter.measure("synced create M365->CRM", count, create))
        notifications = [n for n in stack.graph.notifications_sent[n0:] if n.get("kind") != "lifecycle"]
        records = _records(stack, tag)

        def echo() -> None:
            url = f"{stack.host.base_url}/api/crm/webhook?code={stack.settings['DEVHOST_FUNCTION_KEY']}"
            for rec in records:
                event = {
                    "id": f"evt-{uuid.uuid4().hex}",
                    "type": "appointment.created",
                    "appointment_id": rec["id"],
                    "version": rec["version"],
                    "occurred_at": datetime.now(UTC).isoformat(),
                }
                body = json.dumps({"events": [event]}).encode()
                headers = {"Content-Type": "application/json", **sign(body, CRM_SECRET, int(time.time()))}
                httpx.post(url, content=body, headers=headers, timeout=10).raise_for_status()

        rows.append(meter.measure("echo (our CRM write read back)", len(records), echo))
        stack.crm.set_webhook_url(webhook_url)

        def duplicate() -> None:
            replay(stack, notifications)

        rows.append(meter.measure("duplicate Graph notification", len(notifications), duplicate))

        def no_op() -> None:
            set_subjects(g, created, tag)
            time.sleep(1.0)  # notifications are sent asynchronously

        rows.append(meter.measure("no-op (PATCH with equal subject)", len(created), no_op))

        def update() -> None:
            set_subjects(g, created, tag, " moved")
            wait_until(lambda: sum("moved" in r["subject"] for r in _records(stack, tag)) >= count, 60)
            stack.crm.wait_for_webhooks(10)

        rows.append(meter.measure("synced update M365->CRM (+ its echo)", count, update))

        def crm_create() -> None:
            start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=5)
            for i in range(count):
                organizer = MAILBOXES[i % len(MAILBOXES)]
                stack.crm.user_create(
                    {
                        "subject": f"eco-crm {tag} {i}",
                        "start": (start + timedelta(minutes=i)).isoformat(),
                        "end": (start + timedelta(minutes=i + 30)).isoformat(),
                        "organizer": {"email": organizer},
                        "attendees": [{"email": "megan@fabrikam.example"}],
                    },
                    created_by=organizer,
                )
            stack.crm.wait_for_webhooks(10)
            time.sleep(1.0)  # the Graph notification of our own create comes back asynchronously

        rows.append(meter.measure("synced create CRM->M365 (+ its echo)", count, crm_create))
        g.close()
        return rows
    finally:
        stack.stop()


def _records(stack: LocalStack, tag: str) -> list[dict[str, Any]]:
    return [r for r in stack.crm_appointments() if f" {tag} " in f"{r.get('subject', '')} "]
