"""The local stack for end-to-end tests (devstack.stack), once per module on the shared Azurite.

Module scope: the stack sets the app's settings in os.environ, which must not leak into other suites.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from devstack.azurite import Azurite
from devstack.stack import LocalStack

Stack = LocalStack
T = TypeVar("T")


def wait_for(predicate: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until `predicate` returns something truthy; fail with the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last value: {last!r})")


def on_container(work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work` on a fresh app Container (the stack's settings, from os.environ), closed afterwards."""
    from sync_core.bootstrap import opened

    async def run() -> T:
        async with opened() as c:
            return await work(c)

    return asyncio.run(run())


@pytest.fixture(scope="module")
def stack(azurite: Azurite) -> Iterator[LocalStack]:
    running = LocalStack(azurite=azurite).start()
    try:
        yield running
    finally:
        running.stop()
