"""The Microsoft 365 calendar as the worker sees it: the reads and writes of one change (a Protocol)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from sync_core.domain.model import Appointment, Attachment, GraphEvent


class Calendar(Protocol):
    """Implemented by `adapters.graph.adapter.GraphAdapter` (and an in-memory fake in the tests)."""

    async def get_event(self, mailbox: str, event_id: str) -> GraphEvent | None: ...

    async def calendar_view(self, mailbox: str, start: datetime, end: datetime) -> list[GraphEvent]: ...

    async def find_created(self, mailbox: str, *, tag: str, transaction_id: str) -> GraphEvent | None: ...

    async def create_event(
        self, mailbox: str, appointment: Appointment, *, transaction_id: str, tag: str
    ) -> GraphEvent: ...

    async def update_event(
        self, mailbox: str, event_id: str, appointment: Appointment, *, fields: Iterable[str], tag: str
    ) -> GraphEvent: ...

    async def cancel_event(self, mailbox: str, event_id: str, comment: str = "") -> None: ...

    async def cancel_occurrence(
        self, mailbox: str, series_event_id: str, original_start: datetime
    ) -> None: ...

    async def respond(self, mailbox: str, event_id: str, response: str, comment: str = "") -> None: ...

    async def send_mail(self, mailbox: str, subject: str, text: str) -> None: ...

    async def read_attachments(
        self,
        mailbox: str,
        event_id: str,
        *,
        known: Iterable[Attachment] = (),
        content_max_bytes: int | None = None,
    ) -> tuple[Attachment, ...]:
        """F5: the event's attachments; with `content_max_bytes`, each file within it that `known` lacks in
        this version (id, lastModifiedDateTime, size) carries its bytes."""
        ...
