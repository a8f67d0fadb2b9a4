"""Fairness and coalescing through the whole local stack (issue 20, sync_core/service/fairness.py).

1. Burst: `burst` events are created in one mailbox (adele) as fast as the Graph emulator takes them, each
   announced by its notification; half a second in, another mailbox (bruno) gets `others` new events at
   `rate`/s. Printed: bruno's latency (event created -> CRM record's `updated_at`) during the burst, and
   how long the burst took to sync in full, with duplicates and losses.
2. Coalescing: one synced event in a third mailbox (chen) is edited `edits` times in a row; printed: the
   notifications Graph sent for it and the app's Graph reads of it (GET by id).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from bench.common import app_graph_requests, latency_summary, wait_idle, wait_until
from bench.e2e_latency import _iso_seconds, _pace
from devstack.stack import LocalStack

BURSTING, OTHER, EDITED = "adele@contoso.example", "bruno@contoso.example", "chen@contoso.example"
WAIT_SECONDS = 240.0


def _event(subject: str, day: str, minute: int) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": {"dateTime": f"{day}T07:{minute % 60:02d}:00", "timeZone": "UTC"},
        "end": {"dateTime": f"{day}T08:{minute % 60:02d}:00", "timeZone": "UTC"},
        "attendees": [{"emailAddress": {"address": "megan@fabrikam.example"}, "type": "required"}],
    }


def _records_by_subject(stack: LocalStack, prefix: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for record in stack.crm_appointments():
        subject = str(record.get("subject", ""))
        if subject.startswith(prefix):
            out.setdefault(subject, []).append(record)
    return out


def burst(stack: LocalStack, count: int, others: int, rate: float) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    day = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()
    burst_done = threading.Event()
    burst_start = time.time()

    def flood() -> None:
        with stack.graph_http() as g:
            for i in range(count):
                g.post(
                    f"/users/{BURSTING}/events", json=_event(f"burst {tag} {i}", day, i)
                ).raise_for_status()
        burst_done.set()

    thread = threading.Thread(target=flood, name="bench-burst", daemon=True)
    thread.start()
    time.sleep(0.5)
    sent: dict[str, float] = {}
    with stack.graph_http() as g:
        start = time.time()
        for i in range(others):
            _pace(start, i, rate)
            subject = f"other {tag} {i}"
            sent[subject] = time.time()
            g.post(f"/users/{OTHER}/events", json=_event(subject, day, i)).raise_for_status()
    arrived: dict[str, float] = {}
    deadline = time.time() + WAIT_SECONDS
    while len(arrived) < others and time.time() < deadline:
        for subject, records in _records_by_subject(stack, f"other {tag} ").items():
            if subject not in arrived:
                arrived[subject] = min(_iso_seconds(r["updated_at"]) for r in records)
        time.sleep(0.2)
    thread.join(timeout=WAIT_SECONDS)
    posted_in = time.time() - burst_start
    wait_until(lambda: len(_records_by_subject(stack, f"burst {tag} ")) >= count, WAIT_SECONDS)
    burst_records = _records_by_subject(stack, f"burst {tag} ")
    burst_synced_s = max(
        (_iso_seconds(r["updated_at"]) for rs in burst_records.values() for r in rs), default=0
    )
    wait_idle(stack.settings["AzureWebJobsStorage"], timeout=WAIT_SECONDS)
    others_records = _records_by_subject(stack, f"other {tag} ")
    latencies = [arrived[s] - sent[s] for s in arrived]
    return {
        "burst": f"{count} creates in {BURSTING.split('@')[0]}",
        "other_changes": f"{others} at {rate:g}/s in {OTHER.split('@')[0]}",
        "other_synced": len(arrived),
        **{f"other_{k}": v for k, v in latency_summary(latencies).items()},
        "burst_posted_s": round(min(posted_in, WAIT_SECONDS), 1),
        "burst_synced": len(burst_records),
        "burst_all_synced_after_s": round(burst_synced_s - burst_start, 1) if burst_records else None,
        "duplicates": sum(len(rs) - 1 for rs in [*burst_records.values(), *others_records.values()]),
    }


def coalescing(stack: LocalStack, edits: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    day = (datetime.now(UTC) + timedelta(days=8)).date().isoformat()
    with stack.graph_http() as g:
        created = g.post(f"/users/{EDITED}/events", json=_event(f"coalesce {tag}", day, 0))
        created.raise_for_status()
        event_id = created.json()["id"]
        wait_until(lambda: _records_by_subject(stack, f"coalesce {tag}"), 60)
        wait_idle(stack.settings["AzureWebJobsStorage"])
        n0, r0 = len(stack.graph.notifications_sent), len(stack.graph.requests)
        for i in range(edits):
            g.patch(f"/users/{EDITED}/events/{event_id}", json={"subject": f"coalesce {tag} v{i}"})
    wait_until(lambda: _records_by_subject(stack, f"coalesce {tag} v{edits - 1}"), 60)
    wait_idle(stack.settings["AzureWebJobsStorage"])
    sent = [n for n in stack.graph.notifications_sent[n0:] if n.get("kind") != "lifecycle"]
    reads = [
        r
        for r in app_graph_requests(stack.graph.requests[r0:])
        if r["method"] == "GET" and (event_id in r["path"] or quote(event_id, safe="") in r["path"])
    ]
    final = _records_by_subject(stack, f"coalesce {tag}")
    return {
        "edits": edits,
        "notifications": len(sent),
        "graph_reads_of_the_event": len(reads),
        "crm_subject_after": next(iter(Counter(s for s in final if " v" in s).most_common(1)), ("",))[0]
        if final
        else "",
    }


def run(
    count: int, others: int, rate: float, edits: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    stack = LocalStack().start()
    try:
        wait_idle(stack.settings["AzureWebJobsStorage"])
        return [burst(stack, count, others, rate)], [coalescing(stack, edits)]
    finally:
        stack.stop()


def run_burst(count: int, others: int, rate: float) -> list[dict[str, Any]]:
    stack = LocalStack().start()
    try:
        wait_idle(stack.settings["AzureWebJobsStorage"])
        return [burst(stack, count, others, rate)]
    finally:
        stack.stop()


def run_coalescing(edits: int) -> list[dict[str, Any]]:
    stack = LocalStack().start()
    try:
        wait_idle(stack.settings["AzureWebJobsStorage"])
        return [coalescing(stack, edits)]
    finally:
        stack.stop()


def main() -> None:
    import argparse
    import logging

    from bench.common import print_table

    parser = argparse.ArgumentParser(prog="python -m bench.fairness")
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--others", type=int, default=40)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--edits", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    bursts, coalesced = run(args.burst, args.others, args.rate, args.edits)
    print_table("Fairness: another mailbox's changes during one mailbox's burst", bursts)
    print_table("Coalescing: one event edited repeatedly", coalesced)


if __name__ == "__main__":
    main()
