"""End-to-end latency, Microsoft 365 -> CRM: from an event created in the Graph emulator to its CRM record.

The full local path (notification, HTTP ingress, Azurite queue, worker, CRM write), at a fixed rate of
new events spread over the demo mailboxes. Bounded: `count` events, then it waits at most 60 s.
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from devstack.stack import LocalStack

MAILBOXES = ("adele@contoso.example", "bruno@contoso.example", "chen@contoso.example")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run(count: int, rate: float) -> dict[str, Any]:
    stack = LocalStack().start()
    try:
        tag = uuid.uuid4().hex[:6]
        day = (datetime.now(UTC) + timedelta(days=5)).date().isoformat()
        sent: dict[str, float] = {}
        with stack.graph_http() as g:
            start = time.time()
            for i in range(count):
                due = start + i / rate
                if (wait := due - time.time()) > 0:
                    time.sleep(wait)
                subject = f"bench {tag} {i}"
                minute = i % 60
                event = {
                    "subject": subject,
                    "start": {"dateTime": f"{day}T08:{minute:02d}:00", "timeZone": "UTC"},
                    "end": {"dateTime": f"{day}T09:{minute:02d}:00", "timeZone": "UTC"},
                    "attendees": [
                        {"emailAddress": {"address": "megan@fabrikam.example"}, "type": "required"}
                    ],
                }
                sent[subject] = time.time()
                g.post(f"/users/{MAILBOXES[i % len(MAILBOXES)]}/events", json=event).raise_for_status()
        arrived: dict[str, float] = {}
        deadline = time.time() + 60
        while len(arrived) < count and time.time() < deadline:
            for record in stack.crm_appointments():
                subject = record.get("subject", "")
                if subject in sent and subject not in arrived:
                    written = datetime.fromisoformat(record["updated_at"]).timestamp()
                    arrived[subject] = written
            time.sleep(0.2)
        latencies = [arrived[s] - sent[s] for s in arrived]
        records = [r for r in stack.crm_appointments() if r.get("subject", "").startswith(f"bench {tag} ")]
        return {
            "changes": count,
            "rate_per_s": rate,
            "synced": len(arrived),
            "crm_records": len(records),
            "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
            "p95_ms": 1000 * percentile(latencies, 95) if latencies else None,
            "p99_ms": 1000 * percentile(latencies, 99) if latencies else None,
            "max_ms": 1000 * max(latencies) if latencies else None,
        }
    finally:
        stack.stop()
