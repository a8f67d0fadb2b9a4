"""Development host: runs the HTTP, queue and timer functions of an `azure.functions.FunctionApp` on loopback.

I/O side. Stands in for Azure Functions Core Tools (which cannot be installed here), following the host's
documented behaviour: auth levels and keys, `extensions.queues` polling, poison queues, NCRONTAB timers.
"""

from devstack.host.cli import load_settings, main
from devstack.host.devhost import DevHost
from devstack.host.options import (
    DEFAULT_DRAIN_SECONDS,
    LEASE_SECONDS,
    MAX_REQUEST_BYTES,
    MIN_POLL_SECONDS,
    QueueOptions,
    parse_timespan,
)

__all__ = [
    "DEFAULT_DRAIN_SECONDS",
    "LEASE_SECONDS",
    "MAX_REQUEST_BYTES",
    "MIN_POLL_SECONDS",
    "DevHost",
    "QueueOptions",
    "load_settings",
    "main",
    "parse_timespan",
]
