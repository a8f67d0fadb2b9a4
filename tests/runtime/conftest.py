"""The conformance run: function_app through the real Python worker library, beside the dev host.

Only under Python 3.13+ with tests/runtime/requirements.txt installed (`make conformance` makes .venv/py313);
elsewhere these tests are skipped and say so.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import pytest_asyncio

from devstack.azurite import Azurite
from devstack.stack import LocalStack
from tests.runtime.protocol import compile_protocol
from tests.runtime.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
WHY = "the worker library azure-functions-runtime runs on Python 3.13+: `make conformance` runs these"


def runtime_library() -> ModuleType:
    """azure_functions_runtime, or skip the calling test module saying why. Under `make conformance`
    (CONFORMANCE_REQUIRED set) a missing interpreter or library fails the run instead of skipping it."""
    required = bool(os.environ.get("CONFORMANCE_REQUIRED"))
    if sys.version_info < (3, 13):
        if required:
            raise RuntimeError(f"Python {sys.version.split()[0]}: {WHY}")
        pytest.skip(WHY, allow_module_level=True)
    try:
        import azure_functions_runtime
    except ImportError:
        if required:
            raise
        pytest.skip(f"azure-functions-runtime is not installed; {WHY}", allow_module_level=True)
    return azure_functions_runtime


@pytest.fixture(scope="session")
def protos(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    return compile_protocol(tmp_path_factory.mktemp("protos"))


@pytest.fixture(scope="module")
def stack(azurite: Azurite) -> Iterator[LocalStack]:
    """The whole stack; its dev host serves HTTP but polls no queue and runs no timer, so each side's
    messages stay on the queue for the test to read, and each side runs the queue and timer functions."""
    running = LocalStack(azurite=azurite, listen=False).start()
    try:
        yield running
    finally:
        running.stop()


@pytest_asyncio.fixture(scope="module")
async def worker(stack: LocalStack, protos: ModuleType) -> AsyncIterator[Worker]:
    """The library, initialised on this repository as the worker would on the deployed app."""
    import function_app
    from sync_core.bootstrap import close_container

    function_app.app.functions_bindings = None  # the dev host indexed the app first
    running = Worker(runtime_library(), protos)
    await running.start(ROOT)
    try:
        yield running
    finally:
        await close_container()  # the app's clients made on this loop
        running.stop()
