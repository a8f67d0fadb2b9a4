"""Scale-out as Flex Consumption runs it: 1, 2, then 3 development host processes on one stack, all
consuming the same queues, under the same end-to-end load both ways.

One stack (Azurite, the Graph and CRM emulators) and 12 synced mailboxes (the 3 demo users and 9 more, so
the load stays under each mailbox's ingress burst gate and measures the live path, not the bulk queue).
Per round, N host processes (`bench.host_process`, the whole app), each with GRAPH_MAILBOX_CONCURRENCY
`max(1, 4 // N)` as the template sets it. Process 1 serves the stack's port, where Graph's notifications and
the CRM's webhooks go; the others serve their own ports, which nothing calls: the ingress is milliseconds per
request (bench/ingress.py) and a front end spreading it would not change what scales here, the queue work.
Printed per N: changes/s (synced / first change sent to last synced), p50/p95 latency, duplicates (a CRM
record or a Graph event created twice for one change), lost (not synced within WAIT_SECONDS after the last
send), and the peak in-flight Graph requests per mailbox the Graph emulator saw (its own count, which
includes the benchmark's event creates, one at a time) and its 429s to the app. The emulator answers in about
a millisecond, so requests to a mailbox seldom overlap under that load; a hot phase after it books 40
meetings at once for one organizer whose Graph answers take 50 ms, and prints that mailbox's peak (N
processes hold N x GRAPH_MAILBOX_CONCURRENCY places: at most 4). And the host processes' CPU
(from /proc: seconds, per change, and cores used while draining) beside this process's (both emulators, the
load and its polling), which tell a busy machine's share apart from the app's limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.common import app_graph_requests, cpu_seconds, latency_summary, subprocess_host, wait_idle
from bench.e2e_latency import _iso_seconds, _pace
from devstack.stack import FUNCTION_KEY, LocalStack, free_port

DEMO_POLICY = Path(__file__).resolve().parent.parent / "devstack" / "demo-policy.json"
EXTRA = tuple(f"scale{i:02d}@contoso.example" for i in range(1, 10))
MAILBOXES = ("adele@contoso.example", "bruno@contoso.example", "chen@contoso.example", *EXTRA)
WAIT_SECONDS = 60.0
PLACES = 4  # Outlook's concurrent requests per app and mailbox (facts §10)
EXTERNAL = "megan@fabrikam.example"  # an outside attendee: one copy of each meeting, the organizer's
Row = dict[str, Any]
HOT = "adele@contoso.example"  # the hot phase's organizer
HOT_COUNT = 40
HOT_LATENCY_MS = 50.0  # the Graph emulator holds each request to HOT this long (real Graph: about 100 ms)


def _policy(directory: Path) -> Path:
    """The demo policy with the extra mailboxes as sync users."""
    policy = json.loads(DEMO_POLICY.read_text())
    policy["sync_users"] += [{"email": m, "crm_user_id": _user_id(m)} for m in EXTRA]
    path = directory / "scale-policy.json"
    path.write_text(json.dumps(policy))
    return path


def _user_id(mail: str) -> str:
    return f"u-{mail.split('@')[0]}"  # as devstack.run.seed_crm names the demo users


def _mailbox_id(mail: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, mail))  # as devstack.run.seed_graph names the demo mailboxes


def _add_mailboxes(stack: LocalStack, policy: Path) -> None:
    """The extra mailboxes in both emulators, subscribed as the stack subscribed the demo ones."""
    from sync_core.bootstrap import configuration, opened

    for mail in EXTRA:
        stack.graph.add_mailbox(_mailbox_id(mail), mail, mail.split("@")[0], kind="user")
    stack.crm.seed(users=[{"id": _user_id(m), "email": m, "name": m, "mailbox": m} for m in EXTRA])
    os.environ["SYNC_POLICY_FILE"] = str(policy)  # LocalStack.stop() puts the environment back
    configuration.cache_clear()

    async def subscribe() -> None:
        async with opened() as c:
            manager = c.subscription_manager()
            for mail in EXTRA:
                await manager.ensure(mail)

    asyncio.run(subscribe())


def _at(instant: datetime) -> dict[str, str]:
    return {"dateTime": instant.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def _load(stack: LocalStack, count: int, rate: float) -> Row:
    """`count` changes at `rate`, alternating: an event created in Graph, a record created in the CRM."""
    tag = uuid.uuid4().hex[:6]
    day = (datetime.now(UTC) + timedelta(days=7)).replace(hour=8, minute=0, second=0, microsecond=0)
    sent: dict[str, float] = {}
    in_graph: set[str] = set()  # created in Graph, to sync to the CRM
    organizer: dict[str, str] = {}  # created in the CRM, to sync to the organizer's calendar
    blocked = 0
    with stack.graph_http() as g:
        start = time.time()
        for i in range(count):
            _pace(start, i, rate)
            mailbox = MAILBOXES[(i // 2) % len(MAILBOXES)]
            begin = day + timedelta(minutes=i % 600)
            subject = f"scale {tag} {i}"
            sent[subject] = time.time()
            if i % 2 == 0:
                in_graph.add(subject)
                event = {
                    "subject": subject,
                    "start": _at(begin),
                    "end": _at(begin + timedelta(hours=1)),
                    "attendees": [{"emailAddress": {"address": EXTERNAL}, "type": "required"}],
                }
                blocked += _create_event(g, mailbox, event)
            else:
                organizer[subject] = mailbox
                _book_in_crm(stack, subject, begin, timedelta(hours=1), mailbox)
    last_sent = time.time()
    while True:
        records, to_crm = _crm_side(stack, in_graph)
        events, to_graph = _graph_side(stack, organizer)
        arrived = {**to_crm, **to_graph}
        if len(arrived) >= count or time.time() > last_sent + WAIT_SECONDS:
            break
        # Arrival times are the emulators' own timestamps (a synced create is one write: Economy), so a
        # slow poll loses no precision and leaves the cores to the hosts: a read renders every event.
        time.sleep(1.0)
    latency = latency_summary([arrived[s] - sent[s] for s in arrived])
    drained = max(arrived.values(), default=start) - start
    twice = sum(n - 1 for n in records.values() if n > 1) + sum(n - 1 for n in events.values() if n > 1)
    return {
        "synced": len(arrived),
        "changes/s": len(arrived) / drained if drained > 0 else None,
        "drained_s": drained,
        "p50_ms": latency["p50_ms"],
        "p95_ms": latency["p95_ms"],
        "duplicates": twice,
        "lost": count - len(arrived),
        "bench 429s": blocked,
    }


def _create_event(g: httpx.Client, mailbox: str, body: dict[str, Any]) -> int:
    """POST the event as its user would; the emulator counts this request against the mailbox's four places
    too, so a 429 for it is waited out and retried. Returns the 429s it met."""
    for attempt in range(20):
        r = g.post(f"/users/{mailbox}/events", json=body)
        if r.status_code != 429:
            r.raise_for_status()
            return attempt
        time.sleep(0.05)
    r.raise_for_status()
    return 20


def _book_in_crm(stack: LocalStack, subject: str, begin: datetime, length: timedelta, organizer: str) -> None:
    """A CRM user books `subject` for `organizer` with the external attendee."""
    record = {
        "subject": subject,
        "start": begin.isoformat(),
        "end": (begin + length).isoformat(),
        "organizer": {"email": organizer},
        "attendees": [{"email": EXTERNAL}],
    }
    stack.crm.user_create(record, created_by=organizer)


def _hot(stack: LocalStack) -> Row:
    """HOT_COUNT bookings at once for one organizer, whose Graph answers take HOT_LATENCY_MS: the processes'
    requests to that mailbox overlap, so the emulator's peak shows the places they hold together."""
    tag = uuid.uuid4().hex[:6]
    day = (datetime.now(UTC) + timedelta(days=8)).replace(hour=8, minute=0, second=0, microsecond=0)
    organizer = {f"hot {tag} {i}": HOT for i in range(HOT_COUNT)}
    stack.graph.reset_concurrency()
    stack.graph.set_faults(mailbox=HOT, latency_ms=HOT_LATENCY_MS)
    try:
        for i, subject in enumerate(organizer):
            _book_in_crm(stack, subject, day + timedelta(minutes=15 * i), timedelta(minutes=15), HOT)
        deadline = time.time() + WAIT_SECONDS
        while len(arrived := _graph_side(stack, organizer)[1]) < HOT_COUNT and time.time() < deadline:
            time.sleep(1.0)
        events = _graph_side(stack, organizer)[0]
    finally:
        stack.graph.clear_faults(HOT)
    return {
        "hot synced": len(arrived),
        "hot duplicates": sum(n - 1 for n in events.values() if n > 1),
        "hot peak in-flight": stack.graph.max_concurrency_seen.get(HOT, 0),
    }


def _crm_side(stack: LocalStack, subjects: set[str]) -> tuple[Counter[str], dict[str, float]]:
    """M365 -> CRM: records per subject, and when the first appeared (its `updated_at`)."""
    records: Counter[str] = Counter()
    arrived: dict[str, float] = {}
    for record in stack.crm_appointments():
        subject = record.get("subject", "")
        if subject in subjects:
            records[subject] += 1
            arrived[subject] = min(arrived.get(subject, float("inf")), _iso_seconds(record["updated_at"]))
    return records, arrived


def _graph_side(stack: LocalStack, organizer: dict[str, str]) -> tuple[Counter[str], dict[str, float]]:
    """CRM -> M365: events per subject in the organizers' mailboxes, and when the first was created."""
    events: Counter[str] = Counter()
    arrived: dict[str, float] = {}
    wanted = {_mailbox_id(m) for m in set(organizer.values())}
    for mailbox_id, items in stack.graph.dump_events().items():
        if mailbox_id not in wanted:
            continue
        for event in items:
            subject = event.get("subject", "")
            if subject in organizer:
                events[subject] += 1
                created = _iso_seconds(str(event["createdDateTime"]))
                arrived[subject] = min(arrived.get(subject, float("inf")), created)
    return events, arrived


def _round(stack: LocalStack, settings: dict[str, str], processes: int, count: int, rate: float) -> Row:
    share = max(1, PLACES // processes)
    env = {**settings, "GRAPH_MAILBOX_CONCURRENCY": str(share)}
    ports = [stack.host.port] + [free_port() for _ in range(processes - 1)]
    with contextlib.ExitStack() as hosts:
        procs = [hosts.enter_context(subprocess_host("bench.host_process", env, port)) for port in ports]
        pids = [proc.pid for proc in procs]
        for port in ports:  # each process builds its container now, not on the round's first change
            httpx.get(f"http://127.0.0.1:{port}/api/health?code={FUNCTION_KEY}", timeout=60)
        if not wait_idle(settings["AzureWebJobsStorage"], timeout=60):  # backfills, the last round's rest
            raise RuntimeError("the queues did not drain before the round")
        stack.graph.reset_concurrency()
        requests_before = len(stack.graph.requests)
        cpu_before = [cpu_seconds(pid) for pid in pids]
        own_before = cpu_seconds(os.getpid())
        result = _load(stack, count, rate)
        wait_idle(settings["AzureWebJobsStorage"], timeout=30)
        each = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
        cpu = sum(each)
        own = cpu_seconds(os.getpid()) - own_before
        peaks = stack.graph.max_concurrency_seen
        hot = _hot(stack)
        wait_idle(settings["AzureWebJobsStorage"], timeout=30)
        answered = app_graph_requests(stack.graph.requests[requests_before:])
        alive = sum(1 for proc in procs if proc.poll() is None)
    spread = max(peaks.get(m, 0) for m in MAILBOXES)
    return {
        "processes": processes,
        "places/mailbox each": share,
        "load": f"{count} at {rate:g}/s, both ways",
        "alive after": f"{alive}/{processes}",
        **result,
        "hosts' CPU s": cpu,
        "CPU s by process": "/".join(f"{v:.1f}" for v in each),  # each took its part of the queue
        "CPU ms/change": 1000 * cpu / count,
        "cores used": cpu / result["drained_s"] if result["drained_s"] else None,
        "emulators' CPU s": own,
        "peak in-flight/mailbox": spread,
        **hot,
        "graph 429s to app": sum(1 for r in answered if r["status"] == 429),
    }


def run(count: int, rate: float, processes: tuple[int, ...] = (1, 2, 3)) -> list[Row]:
    """One stack; a round of `count` changes at `rate` for each number of host processes."""
    with tempfile.TemporaryDirectory() as tmp:
        policy = _policy(Path(tmp))
        stack = LocalStack(listen=False).start()  # its host answers Graph's validation only, then stops
        try:
            _add_mailboxes(stack, policy)
            stack.host.stop()
            settings = {**stack.settings, "SYNC_POLICY_FILE": str(policy)}
            return [_round(stack, settings, n, count, rate) for n in processes]
        finally:
            stack.stop()


if __name__ == "__main__":
    import argparse

    from bench.common import print_table

    parser = argparse.ArgumentParser(prog="python -m bench.scale_out")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--rate", type=float, default=75.0)
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 2, 3])
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    print_table("Scale-out", run(args.count, args.rate, tuple(args.processes)))
    print(f"load average after: {os.getloadavg()}")
