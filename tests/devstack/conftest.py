"""Fixtures for the DevHost tests: start hosts that are always stopped, and wait for conditions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import azure.functions as func
import pytest

from devstack.host import DevHost

FUNCTION_KEY = "test-function-key"
MASTER_KEY = "test-master-key"

StartHost = Callable[..., DevHost]


@pytest.fixture
def start_host() -> Iterator[StartHost]:
    """`start_host(app, settings=..., host_json=...)` starts a DevHost on a free port; stopped at teardown."""
    hosts: list[DevHost] = []

    def start(
        app: func.FunctionApp,
        settings: Mapping[str, str] | None = None,
        host_json: Mapping[str, Any] | None = None,
    ) -> DevHost:
        all_settings = {
            "DEVHOST_FUNCTION_KEY": FUNCTION_KEY,
            "DEVHOST_MASTER_KEY": MASTER_KEY,
            **(settings or {}),
        }
        host = DevHost(app, all_settings, host_json or {}, port=0, drain_seconds=5)
        hosts.append(host)
        host.start()
        return host

    yield start
    for host in reversed(hosts):
        host.stop()


async def eventually(condition: Callable[[], bool], within: float = 30.0, what: str = "condition") -> None:
    """Poll `condition` until it holds; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """`await wait_for(lambda: ..., within=seconds, what=...)`."""
    return eventually


@pytest.fixture
def keys() -> dict[str, str]:
    """The keys `start_host` configures, by kind; "wrong" is neither."""
    return {"function": FUNCTION_KEY, "master": MASTER_KEY, "wrong": "not-a-key"}
