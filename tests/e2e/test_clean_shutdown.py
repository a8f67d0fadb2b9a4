"""Stopping the local stack leaves no client open.

The app's async clients (azure-storage / azure-data-tables on aiohttp, the Graph and CRM clients on httpx)
live in a container per event loop. The dev host's loop ends when the host stops, so the host closes that
container first (DevHost `on_stop` = sync_core.bootstrap.close_container). Without that, collecting the
stopped stack emits aiohttp's "Unclosed client session" / "Unclosed connector" and asyncio's "unclosed
transport" ResourceWarnings, or, while the container stays reachable (its clients hold its loop, the key of
the weak registry), keeps them open until the interpreter exits, which prints them then.
The check is by warnings and a forced collection, not by timing.
"""

from __future__ import annotations

import asyncio
import gc
import warnings

import aiohttp
import pytest

from devstack.azurite import Azurite
from devstack.stack import LocalStack
from tests.clock import days_ahead, graph_time
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e

SUBJECT = "Clean shutdown"


def _run_and_stop(azurite: Azurite) -> None:
    """Start a stack, sync one Outlook change through it (the worker reads Graph, writes the CRM and the
    tables), stop it; every reference to it is gone on return."""
    stack = LocalStack(azurite=azurite).start()
    try:
        with stack.graph_http() as g:
            g.post(
                "/users/adele@contoso.example/events",
                json={
                    "subject": SUBJECT,
                    "start": graph_time(days_ahead(1, 10)),
                    "end": graph_time(days_ahead(1, 11)),
                },
            ).raise_for_status()
        crm = stack.crm_appointments
        wait_for(lambda: [a for a in crm() if a["subject"] == SUBJECT], timeout=30)
    finally:
        stack.stop()


def _open_clients() -> list[object]:
    """Live client objects that still hold a socket or a pool: never closed by their owner."""
    found: list[object] = []
    for o in gc.get_objects():
        if (isinstance(o, aiohttp.ClientSession | aiohttp.BaseConnector) and not o.closed) or (
            isinstance(o, asyncio.Transport) and not o.is_closing()
        ):
            found.append(o)
    return found


def test_a_stack_that_synced_a_change_stops_without_unclosed_clients(azurite: Azurite) -> None:
    before = {id(o) for o in _open_clients()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        _run_and_stop(azurite)
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []
    left_open = [repr(o)[:120] for o in _open_clients() if id(o) not in before]
    assert left_open == []
