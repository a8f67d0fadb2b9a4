"""`make bench` (quick) or `make bench SIZE=large`: run every benchmark, print its table, record them.

`python -m bench [quick|large] [--only NAME ...] [--no-write] [--note TEXT]`. Each benchmark prints a
table; at the end docs/benchmarks.md gets the run (machine, date, load, command, tables) between its
generated-section markers, leaving the hand-written notes around them alone.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import crm_economy, e2e_latency, economy, fairness, footprint, ingress, scale, scale_out
from bench.common import print_table
from bench.report import Section, machine, write

SIZES: dict[str, dict[str, Any]] = {
    "quick": {
        "ingress": (1000, 16, 200.0, 1000),
        "e2e": [(100, 20.0), (200, 100.0)],
        "economy": 30,
        "fairness": (1000, 40, 2.0),
        "edits": 20,
        "scale": 200,
        "import_runs": 3,
        "rss": (60, 20.0),
        "scaleout": (300, 75.0),
    },
    "large": {
        "ingress": (10000, 32, 200.0, 4000),
        "e2e": [(600, 20.0), (1000, 100.0)],
        "economy": 200,
        "fairness": (2000, 100, 2.0),
        "edits": 50,
        "scale": 5000,
        "import_runs": 7,
        "rss": (500, 100.0),
        "scaleout": (900, 100.0),
    },
}


def _ingress(size: dict[str, Any]) -> list[dict[str, Any]]:
    count, concurrency, rate, paced = size["ingress"]
    r = ingress.run(count, concurrency, rate, paced)
    p = r["paced"]
    return [
        {
            "requests": r["requests"],
            "concurrency": r["concurrency"],
            "accepted": r["accepted"],
            "ingress/s": r["ingress_per_s"],
            "raw enqueue/s": r["raw_enqueue_per_s"],
            "ratio": f"{r['ratio']:.2f}",  # two places: fmt's one would show 0.65 as 0.7
            "paced at": f"{r['paced_rate']:g}/s ({p['achieved_per_s']:.0f}/s achieved)",
            "ack p50 ms": p["p50_ms"],
            "ack p99 ms": p["p99_ms"],
            "ack max ms": p["max_ms"],
            "statuses": " ".join(f"{k}x{v}" for k, v in sorted(p["statuses"].items())),
        }
    ]


BENCHES: dict[str, tuple[str, str, Callable[[dict[str, Any]], list[dict[str, Any]]]]] = {
    "ingress": (
        "Ingress: Graph notifications through the dev host (own process, webhook functions only) + Azurite, "
        "beside raw Azurite enqueues at the same concurrency",
        "target: ratio >= 0.9 (issue 20); ack p99 < 100 ms at 200/s",
        _ingress,
    ),
    "e2e": (
        "End to end: Graph emulator change -> CRM record, and CRM change (signed webhook) -> Graph write",
        "target: p95 < 1 s",
        lambda size: e2e_latency.run(size["e2e"]),
    ),
    "economy": (
        "Economy: requests per unit (Graph: the app's requests in the emulator log; Table: azure-core "
        "requests to Azurite's table port; CRM: the emulator's log)",
        "target: <= 1 Graph read per inbound change; 0 Graph/CRM writes for echoes, duplicates, no-ops",
        lambda size: economy.run(size["economy"]),
    ),
    "crm-economy": (
        "CRM economy: the CRM API's requests per unit with the Dataverse and Salesforce connectors (each "
        "emulator's request log; Graph and Table counted as in Economy)",
        "target: 0 Graph/CRM writes for echoes, duplicates, no-ops; CRM reads beside Economy's REST rows",
        lambda size: [
            row for name in crm_economy.SIDES for row in crm_economy.run(size["economy"] // 3, name)
        ],
    ),
    "fairness": (
        "Fairness: another mailbox's changes (event created -> CRM record) while one mailbox's burst of "
        "creates is announced and synced",
        "target: the other mailbox's p95 < 1 s; burst synced in full, 0 duplicates",
        lambda size: fairness.run_burst(*size["fairness"]),
    ),
    "coalescing": (
        "Coalescing: one synced event edited repeatedly in a row (one notification per edit)",
        "target: Graph reads of the event well below the notifications (ideally 1-2)",
        lambda size: fairness.run_coalescing(size["edits"]),
    ),
    "scale": (
        "Scale: SubscriptionManager.run / renew_due and Reconciler.resync_mailbox over many mailboxes "
        "(manager's sleeps skipped on a virtual clock: paced_s is the time the pacing takes)",
        "limit: 500 subscription writes / 20 s per app per tenant; delta: 10,000 requests / 10 min per "
        "mailbox",
        lambda size: scale.run(size["scale"]),
    ),
    "scaleout": (
        "Scale-out: 1, 2 and 3 dev host processes (the whole app, GRAPH_MAILBOX_CONCURRENCY 4 // N each) "
        "consuming the same queues on one stack; end-to-end load both ways over 12 mailboxes",
        "target: changes/s rising with processes (on 2 cores, 3 processes may not rise past 2); "
        "0 duplicates; 0 lost; Graph in-flight per mailbox <= 4",
        lambda size: scale_out.run(*size["scaleout"]),
    ),
    "start": (
        "Start: `import function_app` in a fresh interpreter, then what the first invocation imports",
        "target: import_median_ms < 300 (the first call's share is paid once per process)",
        lambda size: [footprint.import_time(size["import_runs"])],
    ),
    "memory": (
        "Memory: RSS of the dev host process running the whole app, under end-to-end load both ways",
        "no target; must not grow without bound",
        lambda size: [footprint.worker_rss(*size["rss"])],
    ),
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("size", nargs="?", default="quick", choices=sorted(SIZES))
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), help="run only these")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--note", default="", help="a note recorded with this run (e.g. machine contended)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # unclosed-session noise at stack stop
    info = machine()
    print(" | ".join(f"{k}: {v}" for k, v in info.items()))
    command = f"make bench{' SIZE=large' if args.size == 'large' else ''}"
    sections: list[Section] = []
    for name in args.only or list(BENCHES):
        title, target, bench = BENCHES[name]
        t0 = time.perf_counter()
        try:
            rows = bench(SIZES[args.size])
        except Exception as exc:  # one failing benchmark must not hide the others' numbers
            rows = [{"error": f"{type(exc).__name__}: {exc}"}]
        elapsed = time.perf_counter() - t0
        print_table(f"{title} [{elapsed:.0f} s]", rows)
        print(f"  {target}")
        sections.append(
            Section(name, title, target, f"python -m bench {args.size} --only {name}", rows, elapsed)
        )
    info["load after"] = machine()["load"]
    if not args.no_write:
        path = write(info, args.size, command, args.note, sections)
        print(f"\nrecorded in {path}")
    return 1 if any("error" in r for s in sections for r in s.rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
