"""Issue "Operate it", done when: through the real stack (Graph emulator -> ingress -> Azurite -> worker ->
CRM emulator) and the operator's CLI,

- a message that fails permanently is found by `failures` with its reason, the cause is fixed, `replay` moves
  it back and the CRM ends in sync;
- `explain` shows the rule (S3) that skipped a private event, under the id the front door minted;
- `status` and `GET /api/health` report a stale mailbox.

The unit-level behaviour (filters, dry runs, send-first, escaping, exit codes) is in tests/ops.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from devstack.azurite import Azurite
from devstack.stack import FUNCTION_KEY, LocalStack
from sync_core.adapters import telemetry
from sync_core.bootstrap import configuration, opened
from sync_core.ops import cli
from tests.clock import days_ahead, graph_time
from tests.e2e.conftest import Stack, started, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ADELE, BRUNO, CHEN = "adele@contoso.example", "bruno@contoso.example", "chen@contoso.example"


@pytest.fixture(scope="module")
def stack(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The demo stack, but: private events are skipped (S3 `skip`) so one can be explained."""
    policy = json.loads((ROOT / "devstack" / "demo-policy.json").read_text())
    policy_file = tmp_path_factory.mktemp("ops-policy") / "policy.json"
    policy_file.write_text(json.dumps(policy | {"private_events": "skip"}))
    yield from started(LocalStack(azurite=azurite, policy_file=policy_file))


@pytest.fixture
def metrics() -> Iterator[InMemoryMetricReader]:
    """What the app records while the test runs (the development host runs in this process)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    with telemetry.using(telemetry.Telemetry(provider)):
        yield reader
    provider.shutdown()


def metric_points(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, Any], Any]]:
    data = reader.get_metrics_data()
    return [
        (dict(p.attributes or {}), getattr(p, "value", p))
        for rm in (data.resource_metrics if data else [])
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
    ]


def sync_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    """`python -m sync_core ... --json` in this process (settings from the stack's environment)."""
    configuration.cache_clear()
    code = cli.main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def event(subject: str, day: int, **extra: Any) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": graph_time(days_ahead(day, 9)),
        "end": graph_time(days_ahead(day, 10)),
        "attendees": [{"emailAddress": {"address": "megan@fabrikam.example"}, "type": "required"}],
        **extra,
    }


def in_crm(stack: Stack, subject: str) -> list[dict[str, Any]]:
    return [a for a in stack.crm_appointments() if a.get("subject") == subject]


def test_a_permanent_failure_is_listed_with_its_reason_then_fixed_replayed_and_synced(
    stack: Stack, capsys: pytest.CaptureFixture[str], metrics: InMemoryMetricReader
) -> None:
    stack.crm.set_faults(error_rate=1.0, status=403)  # the cause: the CRM refuses our API user
    try:
        with stack.graph_http() as g:
            sent = event("Ops replay", 9)
            created = g.post(f"/users/{ADELE}/events", json=sent).json()

        def failed() -> list[dict[str, Any]]:
            _, items = sync_cli(capsys, "failures", "--mailbox", ADELE)
            return [i for i in items if i["item_id"] == created["id"]]

        items = wait_for(failed, timeout=30, interval=0.5)  # one per notification about the event
        listed = subprocess.run(  # the same, as an operator runs it
            [sys.executable, "-m", "sync_core", "failures", "--error-class", "PermissionError_", "--json"],
            cwd=ROOT,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        stack.crm.set_faults()  # fixed

    ids = sorted(i["message_id"] for i in items)
    for item in items:
        assert (item["error_class"], item["step"], item["permanent"], item["kind"]) == (
            "PermissionError_",
            "graph_change",
            True,
            "graph_change",
        )
        assert "403" in item["reason"] and item["mailbox"] == ADELE
    assert listed.returncode == 0, listed.stderr
    assert sorted(i["message_id"] for i in json.loads(listed.stdout)) == ids
    assert in_crm(stack, "Ops replay") == [], "nothing reached the CRM while it refused"
    failures = {a["error_class"]: v for a, v in metric_points(metrics, telemetry.FAILURES)}
    assert failures.get("PermissionError_") == len(ids)

    chosen = ("--mailbox", ADELE, "--error-class", "PermissionError_")
    code, dry = sync_cli(capsys, "replay", *chosen, "--dry-run")
    assert code == 0 and dry["moved"] == [] and sorted(c["message_id"] for c in dry["chosen"]) == ids
    code, report = sync_cli(capsys, "replay", *chosen)
    assert code == 0 and sorted(report["moved"]) == ids and report["failed"] == {}

    [record] = wait_for(lambda: in_crm(stack, "Ops replay"), timeout=30)
    assert {a["email"] for a in record["attendees"]} >= {"megan@fabrikam.example"}
    assert record["start"].startswith(sent["start"]["dateTime"])
    _, still = sync_cli(capsys, "failures", "--mailbox", ADELE)
    assert [i for i in still if i["item_id"] == created["id"]] == [], "out of the poison queue"
    [(side, latency)] = metric_points(metrics, telemetry.LATENCY)
    assert side == {"side": "m365"} and latency.count == 1, "one write: the replayed create"


def test_S3_explain_shows_the_rule_that_skipped_a_private_event_under_the_front_doors_correlation_id(
    stack: Stack,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    metrics: InMemoryMetricReader,
) -> None:
    caplog.set_level(logging.INFO)
    with stack.graph_http() as g:
        created = g.post(
            f"/users/{BRUNO}/events", json=event("Ops private", 10, sensitivity="private")
        ).json()

    def explained() -> list[dict[str, Any]]:
        _, rows = sync_cli(capsys, "explain", created["id"], "--mailbox", BRUNO)
        return list(rows)

    [decision, *_] = wait_for(explained, timeout=30, interval=0.5)

    assert (decision["rule"], decision["side"], decision["outcome"]) == ("S3", "m365", "no-op")
    assert "private" in decision["reason"].lower()
    assert [a["kind"] for a in decision["actions"]] == ["skip"]
    assert in_crm(stack, "Ops private") == []
    assert re.fullmatch(r"[0-9a-f]{32}", decision["correlation_id"]), "minted by the ingress"
    handled = [r for r in caplog.records if getattr(r, "correlation_id", None) == decision["correlation_id"]]
    assert {r.name for r in handled} >= {"sync_core.dispatch", "sync_core.worker"}
    assert any(r.getMessage().startswith("decided S3 for m365") for r in handled)
    assert ({"rule": "S3", "kind": "skip"}, 1) in metric_points(metrics, telemetry.ACTIONS)


async def _age_mailbox(mailbox: str, by: timedelta) -> None:
    """Move a mailbox's last confirmation back by `by`, as time passing with nothing confirming it would."""
    async with opened() as c:
        state = await c.mailbox_states.get(mailbox)
        assert state.last_confirmed is not None, f"{mailbox} was resynced first"
        await c.mailbox_states.save(replace(state, last_confirmed=state.last_confirmed - by))


def test_status_and_health_report_a_stale_mailbox(
    stack: Stack, capsys: pytest.CaptureFixture[str], metrics: InMemoryMetricReader
) -> None:
    for mailbox in (ADELE, CHEN):  # a real resync through the worker confirms each mailbox now
        configuration.cache_clear()
        assert cli.main(["backfill", "--mailbox", mailbox, "--wait-seconds", "60"]) == 0
    capsys.readouterr()
    asyncio.run(_age_mailbox(ADELE, timedelta(hours=3)))  # past the 2 h threshold (ops.STALE_AFTER)

    code, status = sync_cli(capsys, "status")
    health = httpx.get(f"{stack.host.base_url}/api/health?code={FUNCTION_KEY}", timeout=30)

    stale = re.compile(rf"^{re.escape(ADELE)}: last confirmed in sync (\d+) s ago$")
    assert code == 1 and status["ok"] is False
    [seconds] = [int(m.group(1)) for r in status["reasons"] if (m := stale.match(r))]
    assert 3 * 3600 <= seconds < 3 * 3600 + 600
    assert status["stalest_mailbox"]["mailbox"] != CHEN
    assert not [r for r in status["reasons"] if r.startswith(f"{CHEN}: last confirmed")], "chen is fresh"
    assert health.status_code == 503
    body = health.json()  # a function key's view: the verdict and counts, no mailbox named
    assert body["ok"] is False and body["problems"] >= 1 and ADELE not in health.text
    ages = {m["mailbox"]: m["age_seconds"] for m in status["mailboxes"]}
    assert ages[ADELE] >= 3 * 3600 and ages[CHEN] < 600
    freshness = {a["mailbox"]: v for a, v in metric_points(metrics, telemetry.FRESHNESS)}
    assert freshness[ADELE] >= 3 * 3600 and freshness[CHEN] < 600, "the gauge the freshness alert reads"
