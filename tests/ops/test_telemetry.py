"""Telemetry with the real OpenTelemetry SDK (an InMemoryMetricReader), the real dispatcher and Azurite."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from sync_core.adapters import telemetry
from sync_core.adapters.graph.errors import from_status
from sync_core.adapters.storage.core import FAILURES_TABLE, MAILBOXES_TABLE, SUBSCRIPTIONS_TABLE, Storage
from sync_core.adapters.storage.failures import FailureLedger
from sync_core.adapters.storage.subscriptions import SubscriptionStore
from sync_core.domain.actions import Skip
from sync_core.domain.messages import CrmChange, GraphChange, encode
from sync_core.domain.policy import load_policy
from sync_core.domain.subscription import SubscriptionRow
from sync_core.engine.inputs import Decision
from sync_core.errors import PermissionError_, ThrottledError
from sync_core.ops import operations as ops
from sync_core.service import retry as dispatch
from sync_core.service.reconcile import MailboxState, MailboxStateStore
from sync_core.service.worker import Outcome
from tests.ops.conftest import MAILBOX_A, MAILBOX_B, POLICY

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    """A real SDK MeterProvider with an in-memory reader, current for the test."""
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    with telemetry.using(telemetry.Telemetry(provider)):
        yield memory
    provider.shutdown()


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """name -> [(attributes, value or histogram point)] of one collection."""
    out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    out.setdefault(metric.name, []).append((dict(p.attributes or {}), getattr(p, "value", p)))
    return out


def infra_metric_names() -> set[str]:
    """Every `sync.*` metric name the alert rules, the workbook and docs/deploy.md's telemetry table read."""
    texts = [p.read_text() for p in (ROOT / "infra").rglob("*.bicep")]
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    table = deploy[deploy.index("## Telemetry the alerts and the workbook read") :]
    names = {n for t in texts for n in re.findall(r"'(sync\.[a-z_]+)'", t)}
    return names | set(re.findall(r"^\| `(sync\.[a-z_]+)`", table, flags=re.M))


def graph_body(correlation_id: str = "corr-graph-1") -> str:
    return encode(
        GraphChange(
            correlation_id=correlation_id,
            received_at=NOW - timedelta(seconds=3),
            mailbox=MAILBOX_A,
            event_id="AAMk-private",
            change_type="created",
        )
    )


async def run(storage: Storage, body: str, handler: dispatch.Handler) -> str:
    return await dispatch.process(
        body,
        message_id="m-1",
        dequeue_count=1,
        handler=handler,
        storage=storage,
        failures=FailureLedger(storage.table(FAILURES_TABLE)),
        now=lambda: NOW,
    )


async def test_every_metric_the_infra_alerts_and_workbook_read_is_emitted(
    storage: Storage, reader: InMemoryMetricReader
) -> None:
    expected = infra_metric_names()
    assert {telemetry.FRESHNESS, telemetry.EXPIRY, telemetry.LATENCY, telemetry.QUEUE_DEPTH} <= expected
    states = MailboxStateStore(storage.table(MAILBOXES_TABLE))
    subs = SubscriptionStore(storage.table(SUBSCRIPTIONS_TABLE))
    await states.save(MailboxState(mailbox=MAILBOX_A, last_confirmed=NOW - timedelta(minutes=20)))
    await subs.save(SubscriptionRow("sub-a", MAILBOX_A, "cs", NOW + timedelta(hours=30)))

    await ops.status(storage, subs, states, load_policy(POLICY), NOW)  # publishes the gauges
    telemetry.synced("m365", NOW - timedelta(seconds=2), NOW)
    emitted = points(reader)

    assert expected - set(emitted) == set(), "names the alerts or the workbook read but nothing emits"
    assert set(telemetry.METRIC_NAMES) >= expected
    [(attrs, seconds)] = emitted[telemetry.FRESHNESS]
    assert attrs == {"mailbox": MAILBOX_A} and 20 * 60 <= seconds < 20 * 60 + 600
    [(attrs, seconds)] = emitted[telemetry.EXPIRY]
    assert attrs == {"mailbox": MAILBOX_A} and 30 * 3600 - 600 < seconds <= 30 * 3600
    depths = {a["queue"]: v for a, v in emitted[telemetry.QUEUE_DEPTH]}
    assert depths == {"sync-changes": 0, "sync-changes-poison": 0}
    assert MAILBOX_B not in {a.get("mailbox") for a, _ in emitted[telemetry.FRESHNESS]}, "never confirmed"


async def test_dispatch_counts_actions_by_rule_and_records_the_latency_of_writes(
    storage: Storage, reader: InMemoryMetricReader
) -> None:
    skipped = Decision(
        actions=(Skip(rule="S3", reason="private event, policy private_events=skip"),),
        meeting_key=None,
        rule="S3",
        reason="private event",
    )

    async def skip(message: Any) -> Outcome:
        return Outcome(skipped)

    async def write(message: Any) -> Outcome:
        return Outcome(skipped, writes=["create_crm"])

    assert await run(storage, graph_body(), skip) == "done"
    assert await run(storage, graph_body(), write) == "done"
    emitted = points(reader)

    assert emitted[telemetry.ACTIONS] == [({"rule": "S3", "kind": "skip"}, 2)]
    [(attrs, histogram)] = emitted[telemetry.LATENCY]
    assert attrs == {"side": "m365"} and histogram.count == 1 and histogram.sum == pytest.approx(3.0)


async def test_dispatch_counts_failures_by_error_class_and_graph_throttling_is_counted(
    storage: Storage, reader: InMemoryMetricReader
) -> None:
    crm = encode(CrmChange(correlation_id="c-crm", received_at=NOW, crm_id="crm-1", change_type="updated"))

    async def refused(message: Any) -> None:
        raise PermissionError_("CRM refused access (403)", side="crm")

    async def throttled(message: Any) -> None:
        raise ThrottledError("Graph 429", retry_after=2, side="graph")

    assert await run(storage, crm, refused) == "poisoned"
    assert await run(storage, graph_body(), throttled) == "requeued"
    assert await run(storage, "not json", refused) == "poisoned"
    assert isinstance(from_status(429, "slow down", headers={"Retry-After": "3"}), ThrottledError)
    from_status(503, "busy")
    from_status(404, "gone")
    emitted = points(reader)

    failures = {(a["error_class"], a["step"], a["permanent"]): v for a, v in emitted[telemetry.FAILURES]}
    assert failures == {
        ("PermissionError_", "crm_change", True): 1,
        ("ThrottledError", "graph_change", False): 1,
        ("UnprocessableError", "decode", True): 1,
    }
    assert {a["status"]: v for a, v in emitted[telemetry.GRAPH_THROTTLED]} == {429: 1, 503: 1}


async def test_every_log_record_while_a_message_is_handled_carries_its_correlation_id(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    telemetry.install_log_context()
    adapter = logging.getLogger("sync_core.graph")

    async def handler(message: Any) -> None:
        adapter.info("reading %s", message.event_id)

    caplog.set_level(logging.INFO)
    await run(storage, graph_body("corr-77"), handler)
    logging.getLogger("sync_core.worker").info("after the message")

    inside = [r for r in caplog.records if r.name in ("sync_core.dispatch", "sync_core.graph")]
    assert {r.getMessage() for r in inside} >= {"reading AAMk-private"}
    assert {getattr(r, "correlation_id", None) for r in inside} == {"corr-77"}
    assert caplog.records[-1].correlation_id == telemetry.NO_CORRELATION  # type: ignore[attr-defined]
    line = json.loads(telemetry.StructuredFormatter().format(inside[-1]))
    assert (line["correlation_id"], line["logger"], line["message"]) == (
        "corr-77",
        "sync_core.graph",
        "reading AAMk-private",
    )


def test_a_front_door_mints_the_id_and_makes_it_current() -> None:
    with telemetry.correlation("outer"):
        minted = telemetry.new_correlation_id()
        assert re.fullmatch(r"[0-9a-f]{32}", minted) and telemetry.correlation_id() == minted
    assert telemetry.correlation_id() == telemetry.NO_CORRELATION


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_without_a_connection_string_nothing_is_exported_and_the_exporter_is_never_imported() -> None:
    done = _python(
        "import sys; from sync_core.adapters import telemetry; "
        "print(telemetry.configure(), telemetry.configure(), 'azure.monitor.opentelemetry' in sys.modules)",
        {"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "False"]


def test_with_a_connection_string_the_azure_monitor_meter_provider_is_configured_once() -> None:
    """In a child process (a MeterProvider can be set once per process); the ingestion endpoint is a closed
    loopback port, so nothing leaves the machine."""
    connection = (
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
        "IngestionEndpoint=http://127.0.0.1:9/;LiveEndpoint=http://127.0.0.1:9/"
    )
    done = _python(
        "from opentelemetry import metrics; from sync_core.adapters import telemetry; "
        "first = telemetry.configure(); provider = metrics.get_meter_provider(); "
        "second = telemetry.configure(); "
        "print(first, second, type(provider).__module__, metrics.get_meter_provider() is provider)",
        {
            "PATH": "/usr/bin:/bin",
            "APPLICATIONINSIGHTS_CONNECTION_STRING": connection,
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "OTEL_METRIC_EXPORT_INTERVAL": "600000",
        },
    )
    assert done.returncode == 0, done.stderr
    first, second, module, same = done.stdout.split()
    assert (first, second, same) == ("True", "True", "True")
    assert module.startswith("opentelemetry.sdk.metrics")


def test_the_app_quiets_client_libraries_that_log_every_request(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 17, item 4: under the real worker (root logger at INFO, every record forwarded to the host),
    the Storage SDK's and httpx's request lines would each be a billed trace. The app sets them to WARNING."""
    caplog.set_level(logging.INFO)  # as the Functions worker does
    telemetry.configure({})
    for name in telemetry.QUIET_LOGGERS:
        logging.getLogger(f"{name}.pipeline").info("a request")
    assert [r for r in caplog.records if r.name.split(".")[0] in telemetry.QUIET_LOGGERS] == []
    logging.getLogger("sync_core.worker").info("a decision")
    assert [r.getMessage() for r in caplog.records] == ["a decision"]
