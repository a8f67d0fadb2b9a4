"""The local stack for end-to-end tests (devstack.stack), once per module on the shared Azurite.

Module scope: the stack sets the app's settings in os.environ, which must not leak into other suites.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from devstack.azurite import Azurite
from devstack.stack import LocalStack
from sync_core.adapters.storage.core import BULK_QUEUE, CHANGES_QUEUE

Stack = LocalStack
T = TypeVar("T")


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05, what: str | None = None
) -> Any:
    """Poll until `predicate` returns something truthy; after `timeout` seconds fail, saying what it waited
    for (`what`, or the predicate's source) and the last value it saw.

    The default is generous: on a loaded 2-core machine a change can take seconds to cross the stack, and
    a wait that succeeds returns as soon as it can."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    if last:
        return last
    raise AssertionError(
        f"waited {timeout} s for {what or _source(predicate)}; the last value seen: {last!r:.2000}"
    )


def _source(predicate: Callable[[], Any]) -> str:
    try:
        return " ".join(inspect.getsource(predicate).split())
    except (OSError, TypeError):
        return repr(predicate)


def on_container(work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work` on a fresh app Container (the stack's settings, from os.environ), closed afterwards."""
    from sync_core.bootstrap import opened

    async def run() -> T:
        async with opened() as c:
            return await work(c)

    return asyncio.run(run())


def drained() -> bool:
    """Nothing waits in the sync queues (live and bulk): every change queued so far was handled."""
    depth = sum(
        int(on_container(lambda c, q=q: c.storage.queue_depth(q))) for q in (CHANGES_QUEUE, BULK_QUEUE)
    )
    return depth == 0


def started(stack: LocalStack) -> Iterator[LocalStack]:
    """The stack started, for a fixture to `yield from`; stopped when the fixture ends."""
    running = stack.start()
    try:
        yield running
    finally:
        running.stop()


def settle(stack: LocalStack, crm_quiet: Callable[[float], bool], wait: float) -> None:
    """Until nothing moves: the CRM quiet (`crm_quiet(wait)`: every webhook or outbound message it sent
    answered) and the queues drained, twice in a row (the app's own writes to the CRM make it send more
    hints)."""
    from bench.common import wait_idle

    calm = 0
    for _ in range(20):
        quiet = crm_quiet(wait)
        calm = calm + 1 if quiet and wait_idle(stack.settings["AzureWebJobsStorage"], timeout=wait) else 0
        if calm >= 2:
            return
    raise AssertionError("the stack did not settle")


@pytest.fixture(scope="module")
def stack(azurite: Azurite) -> Iterator[LocalStack]:
    yield from started(LocalStack(azurite=azurite))
