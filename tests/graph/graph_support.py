"""Shared constants and helpers for the Graph adapter tests (imported by name; conftest adds this folder)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.graph.adapter import GraphAdapter
from sync_core.adapters.graph.base import build_client
from sync_core.adapters.graph.limits import MailboxLimiter
from sync_core.domain.model import Appointment, Attendee, Person
from sync_core.domain.policy import DEFAULT_EXTENDED_PROPERTY_ID
from sync_core.settings import Settings

ALICE = "cd209b0b-3f83-4c35-82d2-d88a61820480"
BOB = "5a7d1c0e-8f1b-4c8e-9d3f-2b6a4e9c7d10"
ROOM = "9e3b2a41-6c5d-4f7e-8a9b-0c1d2e3f4a5b"
ALICE_MAIL = "alice@contoso.com"
BOB_MAIL = "bob@contoso.com"
ROOM_MAIL = "room.harbour@contoso.com"
PROP = DEFAULT_EXTENDED_PROPERTY_ID
GOLDEN = Path(__file__).parent.parent / "fixtures" / "graph"


def settings_for(emu: GraphEmulator) -> Settings:
    return Settings.model_validate({"GRAPH_BASE_URL": emu.base_url, "GRAPH_AUTH_MODE": "emulator"})


def make_adapter(emu: GraphEmulator, limiter: MailboxLimiter | None = None) -> GraphAdapter:
    return GraphAdapter(
        build_client(settings_for(emu)),
        extended_property_id=PROP,
        tag_secrets=settings_for(emu).tag_secrets,
        limiter=limiter or MailboxLimiter(),
    )


def meeting(
    subject: str, start: datetime, minutes: int = 30, *, attendees: tuple[str, ...] = ()
) -> Appointment:
    from datetime import timedelta

    return Appointment(
        subject=subject,
        start=start,
        end=start + timedelta(minutes=minutes),
        organizer=Person(email=ALICE_MAIL, name="Alice Archer"),
        attendees=tuple(Attendee(email=a) for a in attendees),
    )


def at(day: int, hour: int = 9, month: int = 1) -> datetime:
    return datetime(2030, month, day, hour, tzinfo=UTC)


def golden_events() -> list[tuple[str, dict[str, Any]]]:
    """Every event in the golden Graph answers (tests/fixtures/graph/*.json), named by its file and its place
    in it."""
    return [
        (f"{path.stem}-{n}", event)
        for path in sorted(GOLDEN.glob("*.json"))
        for n, event in enumerate(events_in(json.loads(path.read_text())))
    ]


def events_in(node: Any) -> list[dict[str, Any]]:
    """The objects with a subject, a start and an end anywhere in a JSON document, in document order."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if isinstance(node.get("start"), dict) and isinstance(node.get("end"), dict) and "subject" in node:
            found.append(node)
        for value in node.values():
            found += events_in(value)
    elif isinstance(node, list):
        for value in node:
            found += events_in(value)
    return found
