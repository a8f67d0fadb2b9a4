"""Shared helpers of the benchmarks: percentiles, a storage request counter, stack helpers, tables.

The counter wraps azure-core's async aiohttp transport (the one every async Storage client of the app uses),
so it counts the app's real Table and Queue calls, classified by the Azurite port they go to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
APP_AUTH = "Bearer stack"  # what LocalStack.graph_http() sends: requests with it are the bench's own


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def latency_summary(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": 1000 * statistics.median(seconds),
        "p95_ms": 1000 * percentile(seconds, 95),
        "p99_ms": 1000 * percentile(seconds, 99),
        "max_ms": 1000 * max(seconds),
    }


# -- storage requests ---------------------------------------------------------------------------------


@dataclass
class StorageCounter:
    """Counts azure-core async requests per (port, method); install() patches the transport once."""

    counts: Counter[tuple[int, str]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self) -> None:
        from azure.core.pipeline.transport import AioHttpTransport

        if getattr(AioHttpTransport.send, "_bench_counter", None) is self:
            return
        original = AioHttpTransport.send
        counter = self

        async def send(transport: Any, request: Any, **kwargs: Any) -> Any:
            port = urlsplit(request.url).port or 0
            with counter.lock:
                counter.counts[(port, request.method)] += 1
            return await original(transport, request, **kwargs)

        send._bench_counter = self  # type: ignore[attr-defined]
        AioHttpTransport.send = send  # type: ignore[method-assign]

    def snapshot(self) -> Counter[tuple[int, str]]:
        with self.lock:
            return Counter(self.counts)

    def table_ops(self, port: int, since: Counter[tuple[int, str]] | None = None) -> int:
        now = self.snapshot()
        return sum(v - (since or Counter())[k] for k, v in now.items() if k[0] == port)


def storage_ports(connection_string: str) -> dict[str, int]:
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    return {
        "table": urlsplit(parts["TableEndpoint"]).port or 0,
        "queue": urlsplit(parts["QueueEndpoint"]).port or 0,
    }


# -- the local stack ----------------------------------------------------------------------------------


def app_graph_requests(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Graph emulator requests made by the app (not by the benchmark's own client)."""
    return [r for r in requests if (r.get("headers") or {}).get("Authorization") != APP_AUTH]


def graph_reads_writes(requests: list[dict[str, Any]]) -> tuple[int, int]:
    mine = app_graph_requests(requests)
    reads = sum(1 for r in mine if r["method"] == "GET")
    return reads, len(mine) - reads


async def queue_drained(connection_string: str, queue: str = "sync-changes") -> int:
    from azure.storage.queue.aio import QueueClient

    async with QueueClient.from_connection_string(connection_string, queue) as q:
        props = await q.get_queue_properties()
        return int(props.approximate_message_count or 0)


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    return last


def wait_idle(connection_string: str, timeout: float = 60.0, settle: int = 3) -> bool:
    """Until the change queues (live and bulk) are empty `settle` polls in a row (in-flight messages count
    until deleted)."""
    quiet = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        depth = sum(asyncio.run(queue_drained(connection_string, q)) for q in ("sync-changes", "sync-bulk"))
        quiet = quiet + 1 if depth == 0 else 0
        if quiet >= settle:
            return True
        time.sleep(0.3)
    return False


@contextlib.contextmanager
def subprocess_host(
    module: str, settings: dict[str, str], port: int, *extra: str
) -> Iterator[subprocess.Popen[str]]:
    """A host in its own process (`python -m <module> --port P`), with `settings` in its environment.

    Its stderr goes to a file, not a pipe: nobody reads a pipe while the host runs, and a host that logs
    more than the pipe holds (64 KiB: a burst of tracebacks) would block on its next write and stop serving.
    """
    env = {**os.environ, **settings, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--port", str(port), *extra],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
        try:
            ready = wait_until(lambda: _listening(port) or proc.poll() is not None, 60, 0.1)
            if proc.poll() is not None or not ready:
                log.seek(0)
                raise RuntimeError(f"{module} did not start: {log.read()[-4000:]}")
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _listening(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
        return True
    except httpx.HTTPError:
        return False


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB, from /proc."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far, from /proc (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (stat(5) 14, 15)


# -- output -------------------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    if not rows:
        print("  (no rows)")
        return
    columns = list(dict.fromkeys(k for r in rows for k in r))
    widths = {c: max(len(c), *(len(fmt(r.get(c))) for r in rows)) for c in columns}
    print("  " + "  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  " + "  ".join(fmt(r.get(c)).ljust(widths[c]) for c in columns))
    sys.stdout.flush()


def as_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, default=str)
