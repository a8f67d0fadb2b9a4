"""Shared test fixtures: one in-memory Azurite per session, unique resource names, the --chaos-size option."""

from __future__ import annotations

import secrets
import string
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables.aio import TableClient

# `pytest` run without `python -m` does not put the repo root on sys.path, and tests/devstack/ would then
# shadow the real `devstack` package as a namespace package.
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from devstack.azurite import Azurite  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-size",
        choices=("small", "large"),
        default="small",
        help="size of the fault-injection runs marked `chaos` (small in make test, large in make chaos)",
    )
    parser.addoption(
        "--chaos-connector",
        choices=("rest", "dataverse"),
        default="rest",
        help="the CRM connector of the chaos run (`CONNECTOR=dataverse make chaos`)",
    )


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One in-memory Azurite on free loopback ports, shared by the whole session."""
    with Azurite() as emulator:
        yield emulator


@pytest.fixture
def storage_connection_string(azurite: Azurite) -> Iterator[str]:
    yield azurite.connection_string


@pytest.fixture
def unique_name() -> str:
    """A short random suffix of lowercase letters and digits, starting with a letter.

    Valid inside queue names (`orders-{unique_name}`) and table names (`Mappings{unique_name}`).
    """
    alphabet = string.ascii_lowercase + string.digits
    return secrets.choice(string.ascii_lowercase) + "".join(secrets.choice(alphabet) for _ in range(9))


@pytest.fixture
async def seen(storage_connection_string: str, unique_name: str) -> AsyncIterator[TableClient]:
    """A table of its own on Azurite for a front door's ReplayGuard (the requests it has seen)."""
    async with TableClient.from_connection_string(storage_connection_string, f"Seen{unique_name}") as table:
        await table.create_table()
        yield table
        await table.delete_table()


def app_functions() -> list[Any]:
    """The product's functions, as the Functions host indexes them.

    azure-functions refuses a second `get_functions()` on one app (it records names to refuse duplicates),
    so the record is cleared around each call; duplicate names within one call are still refused.
    """
    import function_app

    function_app.app.functions_bindings = None
    try:
        return list(function_app.app.get_functions())
    finally:
        function_app.app.functions_bindings = None
