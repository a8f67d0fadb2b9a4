"""What reaches Application Insights in Azure, and how often (issue 17, item 4).

The real Python worker sets the root logger to INFO and puts a handler on it that forwards every record to
the host, which sends it to Application Insights as a trace. With APPLICATIONINSIGHTS_CONNECTION_STRING set,
`telemetry.configure()` also exports `sync_core`'s records through azure-monitor-opentelemetry (with the
correlation id as a custom dimension). Each record must take one of the two paths, not both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A closed loopback port: nothing leaves the machine.
CONNECTION = (
    "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
    "IngestionEndpoint=http://127.0.0.1:9/;LiveEndpoint=http://127.0.0.1:9/"
)

# Stands in for the worker: a root handler at INFO that collects what would be forwarded to the host; the
# exporter's handler on `sync_core` is wrapped to count what it is given.
_PROBE = """
import json, logging
from sync_core.adapters import telemetry

forwarded = []
class Forward(logging.Handler):
    def emit(self, record):
        forwarded.append(record.name)
root = logging.getLogger()
root.setLevel(logging.INFO)
root.addHandler(Forward())

on = telemetry.configure()
exported = []
for handler in logging.getLogger("sync_core").handlers:
    emit = handler.emit
    def counting(record, emit=emit):
        exported.append(record.name)
        emit(record)
    handler.emit = counting

logging.getLogger("sync_core.worker").info("decided S3 for m365 x: y (z) writes=0 []")
logging.getLogger("triggers.timers").info("renewal ran")
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").info("Request URL: ...")
print(json.dumps({"on": on, "forwarded": forwarded, "exported": exported}))
"""


def _probe(env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_with_the_exporter_a_sync_core_record_is_sent_once_and_never_forwarded_by_the_worker() -> None:
    seen = _probe(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "OTEL_METRIC_EXPORT_INTERVAL": "600000",
        }
    )
    assert seen["on"] is True
    # The decision line goes to the exporter only ...
    assert seen["exported"] == ["sync_core.worker"]
    # ... the host gets what is not ours, and no Azure SDK request line at all.
    assert seen["forwarded"] == ["triggers.timers"]


def test_without_the_exporter_sync_core_records_reach_the_process_handlers() -> None:
    """Locally (no connection string) nothing is exported, so nothing may be withheld from the console."""
    seen = _probe({})
    assert seen == {
        "on": False,
        "forwarded": ["sync_core.worker", "triggers.timers"],
        "exported": [],
    }


def test_a_synced_change_produces_no_client_library_info_records(azurite: object) -> None:
    """End to end through the local stack (Azurite, both emulators, the dev host running the app) with the
    root logger at INFO as under the worker: the change crosses Storage, Graph and the CRM, and no record
    below WARNING from the Azure SDK, httpx or kiota is made, so none could be forwarded and billed."""
    import logging
    from datetime import timedelta

    from devstack.stack import LocalStack
    from sync_core.adapters import telemetry
    from tests.clock import days_ahead, graph_time
    from tests.e2e.conftest import wait_for

    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    level, handler = root.level, Collect()
    stack = LocalStack(azurite=azurite).start()  # type: ignore[arg-type]
    try:
        root.setLevel(logging.INFO)
        root.addHandler(handler)
        start = days_ahead(6, 9)
        with stack.graph_http() as g:
            g.post(
                "/users/adele@contoso.example/events",
                json={
                    "subject": "Log volume probe",
                    "start": graph_time(start),
                    "end": graph_time(start + timedelta(hours=1)),
                    "attendees": [
                        {"emailAddress": {"address": "megan@fabrikam.example"}, "type": "required"}
                    ],
                },
            )
        wait_for(lambda: [a for a in stack.crm_appointments() if a.get("subject") == "Log volume probe"])
        wait_for(lambda: [r for r in list(records) if r.getMessage().startswith("decided ")])
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        stack.stop()
    synced = [r for r in records if r.name.startswith("sync_core.") and r.getMessage().startswith("decided ")]
    assert synced, "the change was decided by the worker while the records were collected"
    noisy = [
        f"{r.name}: {r.getMessage()[:80]}"
        for r in records
        if r.name.split(".")[0] in telemetry.QUIET_LOGGERS and r.levelno < logging.WARNING
    ]
    assert noisy == []
