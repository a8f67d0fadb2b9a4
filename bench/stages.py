"""Where the time of a CRM -> Microsoft 365 change goes, stage by stage (diagnosis, not a benchmark row).

`python -m bench.stages [--count N] [--rate R ...] [--sample]`. The whole stack runs in this process (dev
host thread, emulators), so the app's functions are wrapped here to timestamp each change's stages, keyed
by its CRM id: created -> webhook POST -> 202 back at the CRM emulator -> worker start (dequeued) ->
gathered -> Graph create start/done -> mapping saved -> worker done. Per change besides: time waiting for
limiter places, Graph request time and count, inline retry pauses, and time in calendar_view/find_created/
get_event (with the number of events listed); per message kind, how many the worker handled and for how
long (our own writes come back as notifications). The wrappers only read the clock. `--sample` also
samples the threads' stacks every 5 ms; a sample is taken when the sampled thread lets go of the GIL,
so system calls are over-represented: read it as "which code path", not as exact shares.
"""

from __future__ import annotations

import argparse
import contextvars
import functools
import itertools
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from bench.common import latency_summary, print_table

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("bench_stage_key", default=None)
STAMPS: dict[str, dict[str, float]] = defaultdict(dict)
SUMS: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
HANDLED: dict[str, int] = defaultdict(int)
HANDLE_S: dict[str, float] = defaultdict(float)


def _stamp(key: str | None, stage: str, *, first: bool = True) -> None:
    if key is None:
        return
    if first and stage in STAMPS[key]:
        return
    STAMPS[key][stage] = time.time()


def install() -> None:
    """Wrap the stages' functions (once, in this process)."""
    from devstack.crm_emulator import webhooks
    from sync_core.adapters.graph import base as graph_base
    from sync_core.adapters.graph import limits as graph_limits
    from sync_core.adapters.storage import mappings as mapping_store
    from sync_core.domain.messages import CrmChange, GraphChange
    from sync_core.service import worker
    from sync_core.service.gather import Gatherer

    post = webhooks.WebhookSender._attempt

    async def _attempt(self: Any, event: Any, url: str, body: bytes, attempt: int) -> Any:
        key = f"crm:{event.appointment_id}"
        _stamp(key, "webhook_post")
        delivery = await post(self, event, url, body, attempt)
        _stamp(key, f"webhook_done_try{attempt}")
        if delivery.ok:
            _stamp(key, "ingress_202")
        return delivery

    webhooks.WebhookSender._attempt = _attempt  # type: ignore[method-assign]

    handle = worker.Worker.handle

    async def _handle(self: Any, message: Any) -> Any:
        if isinstance(message, CrmChange):
            key: str | None = f"crm:{message.crm_id}"
        elif isinstance(message, GraphChange):
            key = f"graph:{message.event_id}"
        else:
            key = None
        kind = type(message).__name__
        HANDLED[kind] += 1
        token = _current.set(key)
        _stamp(key, "dequeued")
        t0 = time.perf_counter()
        try:
            return await handle(self, message)
        finally:
            HANDLE_S[kind] += time.perf_counter() - t0
            _stamp(key, "handled", first=False)
            _current.reset(token)

    worker.Worker.handle = _handle  # type: ignore[method-assign]

    crm_change = Gatherer.crm_change

    async def _crm_change(self: Any, msg: Any) -> Any:
        out = await crm_change(self, msg)
        _stamp(_current.get(), "gathered")
        return out

    Gatherer.crm_change = _crm_change  # type: ignore[method-assign]

    from sync_core.adapters.graph.adapter import GraphAdapter

    create = GraphAdapter.create_event

    async def _create(self: Any, *args: Any, **kwargs: Any) -> Any:
        _stamp(_current.get(), "graph_create_start")
        out = await create(self, *args, **kwargs)
        _stamp(_current.get(), "graph_create_done")
        return out

    GraphAdapter.create_event = _create  # type: ignore[method-assign]

    for name in ("calendar_view", "find_created", "get_event"):
        original = getattr(GraphAdapter, name)

        def wrap(original: Callable[..., Any], name: str) -> Callable[..., Any]:
            @functools.wraps(original)
            async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                out = await original(self, *args, **kwargs)
                key = _current.get()
                if key:
                    SUMS[key][f"{name}_s"] += time.perf_counter() - t0
                    if isinstance(out, list):
                        SUMS[key][f"{name}_events"] += len(out)
                return out

            return timed

        setattr(GraphAdapter, name, wrap(original, name))

    save = mapping_store.MappingStore.save

    async def _save(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = await save(self, *args, **kwargs)
        _stamp(_current.get(), "mapping_saved", first=False)
        return out

    mapping_store.MappingStore.save = _save  # type: ignore[method-assign]

    slot = graph_limits.MailboxLimiter.slot

    @asynccontextmanager
    async def _slot(self: Any, mailbox: str, n: int = 1, *, until: float | None = None) -> Any:
        key = _current.get()
        t0 = time.perf_counter()
        async with slot(self, mailbox, n, until=until):
            waited = time.perf_counter() - t0
            if key:
                SUMS[key]["slot_wait_s"] += waited
                SUMS[key]["graph_requests"] += 1
            t1 = time.perf_counter()
            try:
                yield
            finally:
                if key:
                    SUMS[key]["graph_request_s"] += time.perf_counter() - t1

    graph_limits.MailboxLimiter.slot = _slot  # type: ignore[method-assign]

    pause = graph_base.GraphBase._retry_pause

    def _pause(self: Any, *args: Any, **kwargs: Any) -> float | None:
        out = pause(self, *args, **kwargs)
        key = _current.get()
        if key and out is not None:
            SUMS[key]["retry_pause_s"] += out
            SUMS[key]["retries"] += 1
        return out

    graph_base.GraphBase._retry_pause = _pause  # type: ignore[method-assign]


CRM_STAGES = (
    "created",
    "webhook_post",
    "ingress_202",
    "dequeued",
    "gathered",
    "graph_create_start",
    "graph_create_done",
    "mapping_saved",
    "handled",
)


def _gaps(keys: list[str], stages: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for a, b in itertools.pairwise(stages):
        values = [STAMPS[k][b] - STAMPS[k][a] for k in keys if a in STAMPS[k] and b in STAMPS[k]]
        s = latency_summary(values)
        rows.append({"stage": f"{a} -> {b}", "n": len(values), **s})
    total = [STAMPS[k][stages[-1]] - STAMPS[k][stages[0]] for k in keys if stages[-1] in STAMPS[k]]
    rows.append({"stage": f"{stages[0]} -> {stages[-1]}", "n": len(total), **latency_summary(total)})
    return rows


def _sums(keys: list[str]) -> list[dict[str, Any]]:
    rows = []
    names = sorted({n for k in keys for n in SUMS[k]})
    for name in names:
        values = [SUMS[k].get(name, 0.0) for k in keys]
        unit = 1000 if name.endswith("_s") else 1
        s = {k: (v / 1000 * unit if v is not None else None) for k, v in latency_summary(values).items()}
        rows.append({"per change": name, **s})
    return rows


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) per thread name of this process, from /proc."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = defaultdict(float)
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(tid), "other")
        out[name if not name.startswith("asyncio_") else "asyncio_*"] += (
            int(fields[11]) + int(fields[12])
        ) / tick
    return out


def crm_direction(stack: Any, count: int, rate: float) -> None:
    import uuid
    from datetime import UTC, datetime, timedelta

    from bench.common import wait_idle
    from bench.e2e_latency import MAILBOXES, _pace

    tag = uuid.uuid4().hex[:6]
    day = (datetime.now(UTC) + timedelta(days=6)).replace(hour=8, minute=0, second=0, microsecond=0)
    keys: list[str] = []
    cpu0 = thread_cpu()
    start = time.time()
    for i in range(count):
        _pace(start, i, rate)
        begin = day + timedelta(minutes=i % 60)
        organizer = MAILBOXES[i % len(MAILBOXES)]
        t = time.time()
        record = stack.crm.user_create(
            {
                "subject": f"stages {tag} {i}",
                "start": begin.isoformat(),
                "end": (begin + timedelta(hours=1)).isoformat(),
                "organizer": {"email": organizer},
                "attendees": [{"email": "megan@fabrikam.example"}],
            },
            created_by=organizer,
        )
        key = f"crm:{record['id']}"
        STAMPS[key]["created"] = t
        keys.append(key)
    deadline = time.time() + 90
    while time.time() < deadline and sum("mapping_saved" in STAMPS[k] for k in keys) < count:
        time.sleep(0.2)
    wait_idle(stack.settings["AzureWebJobsStorage"])
    cpu = {k: v - cpu0.get(k, 0.0) for k, v in thread_cpu().items()}
    print(f"\nCRM -> M365, {count} at {rate:g}/s, load {os.getloadavg()}")
    print("CPU s per thread:", {k: round(v, 1) for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])})
    print_table("stage gaps (ms)", _gaps(keys, CRM_STAGES))
    print_table("per change sums (ms / count)", _sums(keys))
    print_table(
        "messages handled by the worker",
        [{"kind": k, "n": v, "busy_s": round(HANDLE_S[k], 1)} for k, v in HANDLED.items()],
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stages")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--rate", type=float, nargs="*", default=[20.0])
    parser.add_argument("--sample", action="store_true", help="also sample the threads' stacks")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the dev host's thread into FILE")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    install()
    if args.profile:
        _profile_host(args.profile)
    from devstack.stack import LocalStack

    stack = LocalStack().start()
    try:
        for rate in args.rate:
            for d in (STAMPS, SUMS, HANDLED, HANDLE_S):
                d.clear()
            sampler = Sampler() if args.sample else None
            if sampler:
                sampler.start()
            crm_direction(stack, args.count if rate < 50 else 2 * args.count, rate)
            if sampler:
                sampler.stop()
                sampler.report()
    finally:
        stack.stop()


def _profile_host(path: str) -> None:
    """cProfile the dev host's loop thread (the app's whole async side) and dump the stats to `path`.

    Timed in the thread's CPU seconds, not wall time: on a busy machine a wall-time profile charges the
    waits for a core (and for the GIL, inside socket calls) to whatever was running."""
    import cProfile

    from devstack.host import devhost

    main = devhost.DevHost._thread_main

    def profiled(self: Any, ready: Any) -> None:
        profile = cProfile.Profile(time.thread_time)
        profile.enable()
        try:
            main(self, ready)
        finally:
            profile.disable()
            profile.dump_stats(path)

    devhost.DevHost._thread_main = profiled  # type: ignore[method-assign]


class Sampler:
    """A poor man's sampling profiler: every `interval` s, the innermost project frames of each thread."""

    def __init__(self, interval: float = 0.005) -> None:
        import threading

        self.interval = interval
        self.counts: dict[str, int] = defaultdict(int)
        self.threads: dict[str, int] = defaultdict(int)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import sys
        import threading
        import traceback

        me = threading.get_ident()
        names = {}
        while not self._stop.wait(self.interval):
            names = {t.ident: t.name for t in threading.enumerate()}
            self.samples += 1
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                stack = traceback.extract_stack(frame)
                idle = ("select", "wait", "_worker", "poll", "sleep", "run_forever")
                if (
                    stack
                    and stack[-1].name in idle
                    and stack[-1].filename.endswith(("selectors.py", "threading.py", "thread.py"))
                ):
                    continue
                ours = [f for f in stack if "/work/main/" in f.filename and "/.venv/" not in f.filename]
                where = " < ".join(f"{f.filename.split('/work/main/')[-1]}:{f.name}" for f in ours[-3:][::-1])
                inner = " < ".join(f"{f.filename.split('/')[-1]}:{f.name}" for f in stack[-6:][::-1])
                self.counts[f"[{names.get(ident, ident)}] {inner} | {where}"] += 1
                self.threads[str(names.get(ident, ident))] += 1

    def report(self, top: int = 40) -> None:
        print(f"\nsamples: {self.samples} (every {self.interval * 1000:g} ms); busy samples per thread:")
        for name, n in sorted(self.threads.items(), key=lambda kv: -kv[1])[:15]:
            print(f"  {n:7d}  {name}")
        print("top frames:")
        for key, n in sorted(self.counts.items(), key=lambda kv: -kv[1])[:top]:
            print(f"  {n:7d}  {key}")


if __name__ == "__main__":
    main()
