"""A retried create never produces a second event: the answer is lost after the mailbox committed, the
adapter sends the same POST again with the same transactionId, and Graph returns the first event."""

from __future__ import annotations

import pytest
from graph_support import ALICE, ALICE_MAIL, at, meeting

from devstack.graph_emulator import GraphEmulator
from sync_core.errors import TransientError
from sync_core.graph import GraphAdapter


def _events(emu: GraphEmulator, subject: str) -> list[dict[str, object]]:
    return [e for e in emu.dump_events(ALICE)[ALICE] if e.get("subject") == subject]


async def test_a_lost_create_answer_is_retried_inline_with_the_same_transaction_id(
    adapter: GraphAdapter, emu: GraphEmulator
) -> None:
    emu.set_faults(ALICE_MAIL, lose_response_count=1)
    created = await adapter.create_event(
        ALICE_MAIL, meeting("Once only", at(9)), transaction_id="tx-once", tag="k"
    )
    posts = [r for r in emu.requests if r["method"] == "POST" and r["path"].endswith("/events")]
    assert [p["status"] for p in posts] == [500, 201]
    assert {p["json"]["transactionId"] for p in posts} == {"tx-once"}
    assert [e["id"] for e in _events(emu, "Once only")] == [created.event_id]


async def test_a_create_retried_by_a_later_attempt_finds_the_first_event(
    adapter: GraphAdapter, emu: GraphEmulator
) -> None:
    """The inline retries give up (every answer lost); the queue's next attempt still finds one event."""
    emu.set_faults(ALICE_MAIL, lose_response_count=50)
    with pytest.raises(TransientError) as lost:
        await adapter.create_event(
            ALICE_MAIL, meeting("Lost answers", at(10)), transaction_id="tx-lost", tag="k"
        )
    assert lost.value.mailbox == ALICE_MAIL and lost.value.item_id == "tx-lost"
    emu.clear_faults()
    again = await adapter.create_event(
        ALICE_MAIL, meeting("Lost answers", at(10)), transaction_id="tx-lost", tag="k"
    )
    assert [e["id"] for e in _events(emu, "Lost answers")] == [again.event_id]
    assert len([r for r in emu.requests if r["method"] == "POST"]) >= 3
