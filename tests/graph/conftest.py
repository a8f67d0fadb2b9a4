"""Graph adapter suite: the real GraphAdapter (msgraph-sdk, kiota middleware) against the Graph emulator."""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.graph.adapter import GraphAdapter

# Test modules import `graph_support` by name; pytest's import mode does not add this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))
support = importlib.import_module("graph_support")


@pytest.fixture(scope="module")
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator(validation_timeout=2.0, notification_timeout=2.0) as emu:
        yield emu


@pytest.fixture
def emu(emulator: GraphEmulator) -> GraphEmulator:
    """The module's emulator, reset, with two users and an auto-accepting room, request log empty."""
    emulator.reset()
    emulator.clear_faults()
    emulator.add_mailbox(support.ALICE, support.ALICE_MAIL, "Alice Archer")
    emulator.add_mailbox(support.BOB, support.BOB_MAIL, "Bob Baker", time_zone="Pacific Standard Time")
    emulator.add_mailbox(
        support.ROOM, support.ROOM_MAIL, "Harbour Room", kind="room", room_mode="auto_accept"
    )
    emulator.clear_requests()
    return emulator


@pytest.fixture
async def adapter(emu: GraphEmulator) -> AsyncIterator[GraphAdapter]:
    result: GraphAdapter = support.make_adapter(emu)
    yield result
    await result.aclose()
