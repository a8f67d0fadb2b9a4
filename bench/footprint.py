"""Memory and start: the worker's RSS under load, and the time to import `function_app`.

RSS: the development host with the whole app runs in its own process (bench.host_process) in place of the
stack's in-process host, on the same port; /proc gives its RSS idle, its peak (VmHWM) during an
end-to-end load in both directions, and after. Import: a fresh interpreter per run, timing
`import function_app` (cold start's share that is ours), then what the triggers import on their first
invocation (`sync_core.bootstrap`: the service and the client stacks), and the whole process's wall time.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from bench import e2e_latency
from bench.common import ROOT, rss_mb, subprocess_host
from devstack.stack import LocalStack

IMPORT_SNIPPET = (
    "import time; t = time.perf_counter(); import function_app; a = time.perf_counter() - t; "
    "t = time.perf_counter(); import sync_core.bootstrap; print(a, time.perf_counter() - t)"
)


def import_time(runs: int) -> dict[str, Any]:
    imports: list[float] = []
    first_calls: list[float] = []
    walls: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_SNIPPET], cwd=ROOT, capture_output=True, text=True, check=True
        )
        walls.append(time.perf_counter() - t0)
        cold, first_call = out.stdout.strip().splitlines()[-1].split()
        imports.append(float(cold))
        first_calls.append(float(first_call))
    return {
        "runs": runs,
        "import_median_ms": 1000 * statistics.median(imports),
        "import_min_ms": 1000 * min(imports),
        "import_max_ms": 1000 * max(imports),
        "first_call_import_median_ms": 1000 * statistics.median(first_calls),
        "process_median_ms": 1000 * statistics.median(walls),
    }


def worker_rss(count: int, rate: float) -> dict[str, Any]:
    stack = LocalStack().start()
    try:
        stack.host.stop()
        with subprocess_host("bench.host_process", stack.settings, stack.host.port) as proc:
            time.sleep(2.0)  # let the listeners settle
            idle, _ = rss_mb(proc.pid)
            samples: list[float] = []
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.2):
                    samples.append(rss_mb(proc.pid)[0])

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                m = e2e_latency.m365_to_crm(stack, count, rate)
                c = e2e_latency.crm_to_m365(stack, count, rate)
            finally:
                done.set()
                sampler.join()
            after, peak = rss_mb(proc.pid)
        return {
            "load": f"{count} changes each way at {rate:g}/s",
            "synced": f"{m['synced']}+{c['synced']}/{2 * count}",
            "rss_idle_mb": idle,
            "rss_load_median_mb": statistics.median(samples) if samples else None,
            "rss_peak_mb": peak,
            "rss_after_mb": after,
        }
    finally:
        stack.stop()
