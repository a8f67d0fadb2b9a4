"""End-to-end latency in both directions through the whole local stack.

Microsoft 365 -> CRM: from an event created in the Graph emulator to its CRM record (the record's
`updated_at`): notification, HTTP ingress, Azurite queue, worker, CRM write.
CRM -> Microsoft 365: from a record created "as a CRM user" in the CRM emulator to the worker's event
create in the Graph emulator (its request log): signed webhook, ingress, queue, worker, Graph write.
At a fixed rate over the demo mailboxes; bounded: `count` changes, then at most 90 s of waiting.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import app_graph_requests, latency_summary, wait_idle
from devstack.stack import LocalStack

MAILBOXES = ("adele@contoso.example", "bruno@contoso.example", "chen@contoso.example")
WAIT_SECONDS = 90.0


def _iso_seconds(text: str) -> float:
    """Epoch seconds of the emulators' ISO timestamps (Graph writes 7 fractional digits)."""
    head, _, frac = text.rstrip("Z").partition(".")
    base = datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp()
    return base + (float(f"0.{frac}") if frac else 0.0)


def _pace(start: float, i: int, rate: float) -> None:
    if (wait := start + i / rate - time.time()) > 0:
        time.sleep(wait)


def m365_to_crm(stack: LocalStack, count: int, rate: float) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    day = (datetime.now(UTC) + timedelta(days=5)).date().isoformat()
    sent: dict[str, float] = {}
    with stack.graph_http() as g:
        start = time.time()
        for i in range(count):
            _pace(start, i, rate)
            subject = f"bench {tag} {i}"
            minute = i % 60
            event = {
                "subject": subject,
                "start": {"dateTime": f"{day}T08:{minute:02d}:00", "timeZone": "UTC"},
                "end": {"dateTime": f"{day}T09:{minute:02d}:00", "timeZone": "UTC"},
                "attendees": [{"emailAddress": {"address": "megan@fabrikam.example"}, "type": "required"}],
            }
            sent[subject] = time.time()
            g.post(f"/users/{MAILBOXES[i % len(MAILBOXES)]}/events", json=event).raise_for_status()
    arrived: dict[str, float] = {}
    deadline = time.time() + WAIT_SECONDS
    while len(arrived) < count and time.time() < deadline:
        for record in stack.crm_appointments():
            subject = record.get("subject", "")
            if subject in sent and subject not in arrived:
                arrived[subject] = _iso_seconds(record["updated_at"])
        time.sleep(0.2)
    records = [r for r in stack.crm_appointments() if r.get("subject", "").startswith(f"bench {tag} ")]
    wait_idle(stack.settings["AzureWebJobsStorage"])
    return {
        "direction": "M365 -> CRM",
        "changes": count,
        "rate_per_s": rate,
        "synced": len(arrived),
        "records": len(records),
        **latency_summary([arrived[s] - sent[s] for s in arrived]),
    }


def crm_to_m365(stack: LocalStack, count: int, rate: float) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    day = (datetime.now(UTC) + timedelta(days=6)).replace(hour=8, minute=0, second=0, microsecond=0)
    sent: dict[str, float] = {}
    start = time.time()
    for i in range(count):
        _pace(start, i, rate)
        subject = f"bench-crm {tag} {i}"
        begin = day + timedelta(minutes=i % 60)
        organizer = MAILBOXES[i % len(MAILBOXES)]
        sent[subject] = time.time()
        stack.crm.user_create(
            {
                "subject": subject,
                "start": begin.isoformat(),
                "end": (begin + timedelta(hours=1)).isoformat(),
                "organizer": {"email": organizer},
                "attendees": [{"email": "megan@fabrikam.example"}],
            },
            created_by=organizer,
        )
    arrived: dict[str, float] = {}
    written: dict[str, int] = {}
    deadline = time.time() + WAIT_SECONDS
    while len(arrived) < count and time.time() < deadline:
        for r in app_graph_requests(stack.graph.requests):
            subject = (r.get("json") or {}).get("subject", "") if isinstance(r.get("json"), dict) else ""
            if r["method"] == "POST" and r["status"] == 201 and subject in sent and subject not in arrived:
                arrived[subject] = _iso_seconds(str(r["time"]))
        time.sleep(0.2)
    for r in app_graph_requests(stack.graph.requests):
        subject = (r.get("json") or {}).get("subject", "") if isinstance(r.get("json"), dict) else ""
        if r["method"] == "POST" and r["status"] == 201 and subject in sent:
            written[subject] = written.get(subject, 0) + 1
    wait_idle(stack.settings["AzureWebJobsStorage"])
    return {
        "direction": "CRM -> M365",
        "changes": count,
        "rate_per_s": rate,
        "synced": len(arrived),
        "records": sum(written.values()),
        **latency_summary([arrived[s] - sent[s] for s in arrived]),
    }


def run(plan: list[tuple[int, float]]) -> list[dict[str, Any]]:
    """One stack; each (count, rate) in both directions."""
    stack = LocalStack().start()
    try:
        rows = []
        for count, rate in plan:
            rows.append(m365_to_crm(stack, count, rate))
            rows.append(crm_to_m365(stack, count, rate))
        return rows
    finally:
        stack.stop()
