"""Every name the workbook's and the alerts' KQL reads is one the app really emits (issue 17, item 4).

The queries are read out of the Bicep with tree-sitter (multi-line '''...''' strings, with format()
placeholders resolved from the module's variables); the emitted names are taken from the app itself: the
metrics and their dimensions by recording through sync_core.adapters.telemetry into an in-memory reader,
the function names as the Functions host indexes function_app, the log lines from sync_core's sources.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bicep_reader import INFRA, BicepFile, load, string_value, text
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from sync_core.adapters import telemetry
from tests.conftest import app_functions

ROOT = INFRA.parent
MODULES = [INFRA / "modules" / "workbook.bicep", INFRA / "modules" / "alerts.bicep"]


@dataclass(frozen=True)
class Query:
    module: str
    name: str
    kql: str


def _queries(bicep: BicepFile) -> Iterator[Query]:
    """Each multi-line string variable, with format(var, a, b) placeholders filled from literal variables."""
    literals: dict[str, str] = {}
    multiline: dict[str, str] = {}
    for decl in bicep.declarations():
        if decl.kind != "variable_declaration" or decl.value is None:
            continue
        if decl.value.type == "string" and text(decl.value).startswith("'''"):
            multiline[decl.name] = text(decl.value)[3:-3]
        elif decl.value.type == "string":
            with contextlib.suppress(AssertionError):  # an interpolated string is no literal
                literals[decl.name] = string_value(decl.value)
    source = bicep.source
    for name, kql in multiline.items():
        calls = re.findall(rf"format\(\s*{name}\s*,([^)]*)\)", source)
        if not calls:
            yield Query(bicep.path.name, name, kql)
        for args in calls:
            values = [literals.get(a.strip(), a.strip()) for a in args.split(",")]
            yield Query(bicep.path.name, name, kql.format(*values))


QUERIES = [q for path in MODULES for q in _queries(load(path))]


class _Report:
    """A status report with one confirmed, subscribed mailbox and both queues (what publish_status reads)."""

    @dataclass
    class Mailbox:
        mailbox: str
        last_confirmed: datetime
        expires_at: datetime
        subscription_status: str = "active"

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.mailboxes = [self.Mailbox("adele@contoso.example", now, now + timedelta(days=2))]
        self.queue_depths = {"sync-changes": 0, "sync-changes-poison": 0}


@pytest.fixture(scope="module")
def emitted() -> dict[str, set[str]]:
    """Metric name -> the attribute keys (customDimensions) the app records it with."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    now = datetime.now(UTC)
    with telemetry.using(telemetry.Telemetry(provider)):
        telemetry.notifications_received("graph", accepted=1, discarded=1)
        telemetry.action_decided("S3", "skip")
        telemetry.failure("ThrottledError", step="graph_change", permanent=False)
        telemetry.graph_throttled(429)
        telemetry.synced("m365", now - timedelta(seconds=2), now)
        telemetry.publish_status(_Report())
        data = reader.get_metrics_data()
    provider.shutdown()
    out: dict[str, set[str]] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    out.setdefault(metric.name, set()).update(point.attributes or {})
    assert set(out) == set(telemetry.METRIC_NAMES), "every instrument recorded once above"
    return out


def _metric_names(kql: str) -> set[str]:
    """Names compared with customMetrics' `name` or AppMetrics' `Name`."""
    return set(re.findall(r"\b[Nn]ame\s*==\s*'([^']+)'", kql))


def test_the_queries_were_found_and_their_placeholders_filled() -> None:
    names = {(q.module, q.name) for q in QUERIES}
    assert {("workbook.bicep", "workerLatencyQuery"), ("alerts.bicep", "gaugeQuery")} <= names
    assert not [q.name for q in QUERIES if re.search(r"\{\d\}", q.kql)]


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: f"{q.module}:{q.name}")
def test_metrics_and_their_dimensions_are_emitted_by_the_app(
    query: Query, emitted: dict[str, set[str]]
) -> None:
    read = _metric_names(query.kql)
    assert read <= set(emitted), f"metrics nothing emits: {sorted(read - set(emitted))}"
    dims = set(re.findall(r"(?:customDimensions|Properties)\.([A-Za-z_]+)", query.kql))
    if dims:
        assert read, "dimensions read without naming the metric they belong to"
        known = set().union(*(emitted[name] for name in read))
        assert dims <= known, f"dimensions {sorted(dims - known)} are not recorded with {sorted(read)}"


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: f"{q.module}:{q.name}")
def test_function_names_are_the_apps(query: Query) -> None:
    functions = {f.get_function_name() for f in app_functions()}
    read = set(re.findall(r"operation_Name\s*==\s*'([^']+)'", query.kql))
    assert read <= functions, (
        f"no such function: {sorted(read - functions)} (the app has {sorted(functions)})"
    )


def _log_formats() -> set[str]:
    """The literal format strings of sync_core's log calls."""
    found: set[str] = set()
    for path in (ROOT / "sync_core").rglob("*.py"):
        found.update(re.findall(r"\blog\.\w+\(\s*\"([^\"]+)\"", path.read_text()))
    return found


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: f"{q.module}:{q.name}")
def test_log_lines_parsed_are_ones_the_app_writes(query: Query) -> None:
    """A `traces` prefix is the start of one of sync_core's log lines, or a gauge name followed by a space:
    the log-line form docs/deploy.md allows for a gauge (the metric itself is checked above)."""
    prefixes = set(re.findall(r"message\s+startswith\s+'([^']+)'", query.kql))
    formats = _log_formats()
    for prefix in prefixes:
        gauge_line = prefix.endswith(" ") and prefix.strip() in telemetry.METRIC_NAMES
        assert gauge_line or any(f.startswith(prefix) for f in formats), (
            f"no sync_core log line starts {prefix!r}"
        )


def test_the_decision_line_is_parsed_with_the_fields_the_worker_writes() -> None:
    (query,) = [q for q in QUERIES if q.name == "decisionsByRuleQuery"]
    assert (
        "parse message with 'decided ' rule:string ' for ' side:string ' ' * 'writes=' writes:int ' ['"
        in (query.kql)
    )
    assert "decided %s for %s %s: %s (%s) writes=%s [%s]" in _log_formats()


def test_host_json_keeps_successful_executions_sampled_with_documented_settings() -> None:
    """Host.Results above Information drops successful executions from `requests`, so the worker-latency
    chart would show only failures. Sampling keys and telemetry types: learn.microsoft.com/azure/
    azure-functions/functions-host-json (applicationInsights.samplingSettings)."""
    host: dict[str, Any] = json.loads((ROOT / "host.json").read_text())
    levels = host["logging"]["logLevel"]
    assert levels.get("Host.Results", levels["default"]) in ("Trace", "Debug", "Information")
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    documented = {
        "isEnabled",
        "maxTelemetryItemsPerSecond",
        "evaluationInterval",
        "initialSamplingPercentage",
        "samplingPercentageIncreaseTimeout",
        "samplingPercentageDecreaseTimeout",
        "minSamplingPercentage",
        "maxSamplingPercentage",
        "movingAverageRatio",
        "excludedTypes",
        "includedTypes",
    }
    assert set(sampling) <= documented
    assert sampling["isEnabled"] is True
    types = {"Dependency", "Event", "Exception", "PageView", "Request", "Trace"}
    excluded = set(filter(None, sampling.get("excludedTypes", "").split(";")))
    assert excluded <= types and "Request" not in excluded, "successful requests are sampled, not all kept"


def test_every_requests_count_uses_item_count() -> None:
    counting = [
        q for q in QUERIES if re.search(r"^requests\b", q.kql.strip()) and "success == false" in q.kql
    ]
    assert counting and all("itemCount" in q.kql for q in counting)
