"""Telemetry: one correlation id on every log record of a change, and the sync's OpenTelemetry metrics. I/O
side.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

log = logging.getLogger("sync_core.telemetry")

CONNECTION_STRING_ENV = "APPLICATIONINSIGHTS_CONNECTION_STRING"
NO_CORRELATION = "-"

NOTIFICATIONS = "sync.notifications_received"
ACTIONS = "sync.actions"
FAILURES = "sync.failures"
GRAPH_THROTTLED = "sync.graph_throttled"
LATENCY = "sync.latency_seconds"
FRESHNESS = "sync.mailbox_freshness_seconds"
EXPIRY = "sync.subscription_expiry_seconds"
QUEUE_DEPTH = "sync.queue_depth"
METRIC_NAMES = (NOTIFICATIONS, ACTIONS, FAILURES, GRAPH_THROTTLED, LATENCY, FRESHNESS, EXPIRY, QUEUE_DEPTH)

# -- correlation -------------------------------------------------------------------------------------

_correlation: contextvars.ContextVar[str] = contextvars.ContextVar(
    "sync_correlation_id", default=NO_CORRELATION
)


def correlation_id() -> str:
    """The correlation id of the change being handled in this context, or "-"."""
    return _correlation.get()


def new_correlation_id() -> str:
    """Mint the id of one change at a front door and make it the current one (for the logs that follow)."""
    value = uuid.uuid4().hex
    _correlation.set(value)
    return value


@contextlib.contextmanager
def correlation(value: str) -> Iterator[str]:
    """Every log record inside carries `value` as its correlation_id."""
    token = _correlation.set(value or NO_CORRELATION)
    try:
        yield value
    finally:
        _correlation.reset(token)


_factory_lock = threading.Lock()
_factory_installed = False


def install_log_context() -> None:
    """Put `correlation_id` on every log record of the process (idempotent): a record factory, so it holds
    for every logger and every handler, including ones the Functions worker or an exporter add later."""
    global _factory_installed
    with _factory_lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            record.correlation_id = _correlation.get()
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True


_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class StructuredFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, correlation_id and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", None) or _correlation.get(),
        }
        body |= {k: v for k, v in vars(record).items() if k not in _STANDARD and k not in body}
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


# -- metrics -----------------------------------------------------------------------------------------


class _Status(Protocol):
    """What `publish_status` needs of an `ops_status.StatusReport` (kept structural: no import cycle)."""

    @property
    def queue_depths(self) -> dict[str, int]: ...
    @property
    def mailboxes(self) -> Iterable[Any]: ...


class Telemetry:
    """The instruments, made from one MeterProvider (the global one, or a test's with an in-memory reader).

    Gauges are observable: they report at each collection from the latest status snapshot, so freshness
    keeps growing between refreshes, exactly as a mailbox nobody confirms gets staler.
    """

    def __init__(self, provider: MeterProvider | None = None) -> None:
        meter = (provider or metrics.get_meter_provider()).get_meter("sync_core")
        self._lock = threading.Lock()
        self._confirmed: dict[str, datetime] = {}
        self._expires: dict[str, datetime] = {}
        self._depths: dict[str, int] = {}
        self.notifications = meter.create_counter(
            NOTIFICATIONS,
            unit="{notification}",
            description="change notifications and webhook events received",
        )
        self.actions = meter.create_counter(
            ACTIONS, unit="{action}", description="actions decided by the engine, by rule and kind"
        )
        self.failures = meter.create_counter(
            FAILURES, unit="{failure}", description="failed queue messages, by error class"
        )
        self.throttled = meter.create_counter(
            GRAPH_THROTTLED, unit="{response}", description="Graph answers 429/503/509 (throttling)"
        )
        self.latency = meter.create_histogram(
            LATENCY, unit="s", description="from the notification's receipt to the write on the other side"
        )
        meter.create_observable_gauge(
            FRESHNESS, [self._freshness], unit="s", description="seconds since the mailbox was last in step"
        )
        meter.create_observable_gauge(
            EXPIRY, [self._expiry], unit="s", description="seconds until the mailbox's subscription expires"
        )
        meter.create_observable_gauge(
            QUEUE_DEPTH, [self._queue_depth], unit="{message}", description="approximate messages in a queue"
        )

    def publish_status(self, report: _Status) -> None:
        """Take the gauges' values from a status report (mailboxes never confirmed report no freshness)."""
        confirmed = {m.mailbox: m.last_confirmed for m in report.mailboxes if m.last_confirmed is not None}
        expires = {
            m.mailbox: m.expires_at
            for m in report.mailboxes
            if m.expires_at is not None and m.subscription_status == "active"
        }
        with self._lock:
            self._confirmed, self._expires = confirmed, expires
            self._depths = dict(report.queue_depths)

    def _since(self, values: dict[str, datetime], sign: int) -> list[Observation]:
        now = datetime.now(UTC)
        with self._lock:
            items = list(values.items())
        return [Observation(round(sign * (now - at).total_seconds(), 3), {"mailbox": mb}) for mb, at in items]

    def _freshness(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._since(self._confirmed, 1)

    def _expiry(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._since(self._expires, -1)

    def _queue_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            return [Observation(n, {"queue": q}) for q, n in self._depths.items()]


_current: Telemetry | None = None
_current_lock = threading.Lock()


def current() -> Telemetry:
    """The process's instruments (on the global MeterProvider: no-ops until `configure` sets one)."""
    global _current
    if _current is None:
        with _current_lock:
            if _current is None:
                _current = Telemetry()
    return _current


@contextlib.contextmanager
def using(telemetry: Telemetry) -> Iterator[Telemetry]:
    """Record into `telemetry` inside (tests: a MeterProvider with an InMemoryMetricReader)."""
    global _current
    previous = _current
    _current = telemetry
    try:
        yield telemetry
    finally:
        _current = previous


def notifications_received(source: str, *, accepted: int, discarded: int = 0) -> None:
    """At a front door: `source` graph or crm."""
    if accepted:
        current().notifications.add(accepted, {"source": source, "outcome": "accepted"})
    if discarded:
        current().notifications.add(discarded, {"source": source, "outcome": "discarded"})


def action_decided(rule: str, kind: str) -> None:
    current().actions.add(1, {"rule": rule, "kind": kind})


def failure(error_class: str, *, step: str, permanent: bool) -> None:
    current().failures.add(1, {"error_class": error_class, "step": step, "permanent": permanent})


def graph_throttled(status: int) -> None:
    """Graph answered 429, 503 or 509 (whether or not the request is retried)."""
    current().throttled.add(1, {"status": status})


def synced(side: str, received_at: datetime, now: datetime) -> None:
    """A change from `side` (m365 or crm) was written to the other side: its end-to-end latency."""
    current().latency.record(max((now - received_at).total_seconds(), 0.0), {"side": side})


def publish_status(report: _Status) -> None:
    current().publish_status(report)


# -- export ------------------------------------------------------------------------------------------

_configured: bool | None = None


# Client libraries that log every request at INFO: the Functions worker sets the root logger to INFO and
# forwards every record to the host, so each would become a billed Application Insights trace.
QUIET_LOGGERS = ("azure", "httpx", "httpcore", "kiota_http", "kiota_abstractions", "msgraph", "msgraph_core")


def quiet_client_libraries() -> None:
    """Client libraries log WARNING and above only; `sync_core` keeps its own levels."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


# The logger whose records the exporter sends (with their correlation ids as custom dimensions).
EXPORTED_LOGGER = "sync_core"


def configure(environ: dict[str, str] | None = None) -> bool:
    """Export to Application Insights when the connection string is set; once per process. True if on.

    One path per record. Our own loggers' records (`sync_core`, with their correlation ids) go through the
    exporter and stop there: `sync_core` does not propagate to the root logger, where the Functions worker's
    handler forwards every record to the host, which would send each a second time (without the
    correlation id). Everything else (the host's own lines, `triggers`, the client libraries' warnings)
    reaches Application Insights through the host alone. Traces stay off unless OTEL_TRACES_EXPORTER says
    otherwise (the host records requests; the distro would add a second copy). Without a connection string
    nothing changes: `sync_core` records propagate to whatever handlers the process has (console, dev host).
    """
    global _configured
    install_log_context()
    quiet_client_libraries()
    env = os.environ if environ is None else environ
    with _current_lock:
        if _configured is not None:
            return _configured
        connection = env.get(CONNECTION_STRING_ENV, "").strip()
        if not connection:
            _configured = False
            return False
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
        try:
            from azure.monitor.opentelemetry import configure_azure_monitor

            configure_azure_monitor(
                connection_string=connection,
                logger_name=EXPORTED_LOGGER,
                enable_live_metrics=False,
                instrumentation_options={"azure_sdk": {"enabled": False}},
            )
        except Exception as exc:  # telemetry must never stop the sync
            log.warning("Application Insights export not configured: %s", exc)
            _configured = False
            return False
        exported = logging.getLogger(EXPORTED_LOGGER)
        if exported.handlers:  # the exporter's handler is there: the root's forwarding would be a 2nd copy
            exported.propagate = False
        _configured = True
    log.info("telemetry: exporting metrics and sync_core logs to Application Insights")
    return True
