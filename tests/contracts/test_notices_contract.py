"""The Notices contract (M4, M5: a notice to an organiser is sent once), run against NoticeLedger on Azurite
and MemoryNotices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables.aio import TableClient

from sync_core.adapters.storage.notices import NOTICE_WINDOW, NoticeLedger
from sync_core.domain.actions import NotifyOrganizer
from sync_core.ports.stores import Notices
from tests.fakes import MemoryNotices

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
KEY = "ical:ABC"


def notice(**changes: str) -> NotifyOrganizer:
    data = {
        "rule": "M5",
        "reason": "the room declined",
        "mailbox": "linda@contoso.example",
        "subject": "Board Room declined",
        "text": "Board Room declined your meeting.",
    }
    return NotifyOrganizer.model_validate(data | changes)


class NoticesContract:
    """Behaviour every notice ledger shows. Subclasses provide the `ledger` fixture."""

    async def test_a_notice_is_claimed_once(self, ledger: Notices) -> None:
        assert await ledger.claim(KEY, notice(), NOW)
        assert not await ledger.claim(KEY, notice(), NOW + timedelta(minutes=1))
        assert not await ledger.claim(KEY, notice(mailbox="LINDA@contoso.example"), NOW)  # the same addressee

    async def test_other_meetings_and_other_notices_are_claimed_apart(self, ledger: Notices) -> None:
        assert await ledger.claim(KEY, notice(), NOW)
        assert await ledger.claim("ical:DEF", notice(), NOW)
        assert await ledger.claim(KEY, notice(text="Board Room declined again."), NOW)
        assert await ledger.claim(KEY, notice(reason="the room accepted"), NOW)
        assert await ledger.claim(KEY, notice(rule="M4"), NOW)

    async def test_a_released_claim_can_be_claimed_again(self, ledger: Notices) -> None:
        assert await ledger.claim(KEY, notice(), NOW)
        await ledger.release(KEY, notice())
        assert await ledger.claim(KEY, notice(), NOW)

    async def test_releasing_a_notice_never_claimed_does_nothing(self, ledger: Notices) -> None:
        await ledger.release(KEY, notice())
        assert await ledger.claim(KEY, notice(), NOW)

    async def test_after_the_window_the_same_notice_is_news_again(self, ledger: Notices) -> None:
        assert await ledger.claim(KEY, notice(), NOW)
        assert not await ledger.claim(KEY, notice(), NOW + NOTICE_WINDOW - timedelta(seconds=1))
        assert await ledger.claim(KEY, notice(), NOW + NOTICE_WINDOW)
        assert not await ledger.claim(KEY, notice(), NOW + NOTICE_WINDOW + timedelta(hours=1))


class TestNoticeLedgerOnAzurite(NoticesContract):
    @pytest.fixture
    def ledger(self, table: TableClient) -> Notices:
        return NoticeLedger(table)


class TestMemoryNotices(NoticesContract):
    @pytest.fixture
    def ledger(self) -> Notices:
        return MemoryNotices()
