"""Shared by the reconciliation tests: a Graph emulator per module with Dana's mailbox; event creation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest

from devstack.graph_emulator import GraphEmulator

MAILBOX = "dana@contoso.example"


@pytest.fixture(scope="module")
def emu() -> Iterator[GraphEmulator]:
    with GraphEmulator() as emulator:
        emulator.add_mailbox("d1", MAILBOX, "Dana")
        yield emulator


def create_event(emu: GraphEmulator, subject: str, start: datetime, mailbox: str = MAILBOX) -> str:
    """A one-hour event made in the emulator directly (no notification reaches the app); its Graph id."""
    body = {
        "subject": subject,
        "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "end": {"dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
    }
    r = httpx.post(f"{emu.base_url}/users/{mailbox}/events", json=body, headers={"Authorization": "Bearer t"})
    r.raise_for_status()
    return str(r.json()["id"])
