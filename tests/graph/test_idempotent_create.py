"""A retried create never produces a second event: the answer is lost after the mailbox committed, the
adapter sends the same POST again with the same transactionId, and Graph either returns the first event or
refuses the duplicate (ErrorDuplicateTransactionId, 400 or 409), when the adapter finds it by its tag."""

from __future__ import annotations

import httpx
import pytest
from graph_support import ALICE, ALICE_MAIL, PROP, at, meeting

from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.graph.adapter import GraphAdapter
from sync_core.errors import ConflictError, TransientError


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


def _raw_create(emu: GraphEmulator, *, transaction_id: str, tag: str, subject: str) -> dict[str, object]:
    """An event written straight to the emulator (not through the adapter), tagged like ours."""
    with httpx.Client(base_url=emu.base_url, headers={"Authorization": "Bearer t"}) as http:
        reply = http.post(
            f"/users/{ALICE}/events",
            json={
                "subject": subject,
                "transactionId": transaction_id,
                "start": {"dateTime": "2030-01-12T09:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2030-01-12T09:30:00", "timeZone": "UTC"},
                "singleValueExtendedProperties": [{"id": PROP, "value": tag}],
            },
        )
    assert reply.status_code == 201, reply.text
    body: dict[str, object] = reply.json()
    return body


@pytest.mark.parametrize("status", [400, 409])
async def test_a_retried_create_refused_as_a_duplicate_returns_the_event_found_by_its_tag(
    adapter: GraphAdapter, emu: GraphEmulator, status: int
) -> None:
    """Graph may answer the retry with ErrorDuplicateTransactionId instead of the event: look it up."""
    emu.set_faults(ALICE_MAIL, lose_response_count=1, duplicate_transaction_status=status)
    created = await adapter.create_event(
        ALICE_MAIL, meeting("Refused retry", at(11)), transaction_id="tx-refused", tag="key-refused"
    )
    stored = _events(emu, "Refused retry")
    assert [e["id"] for e in stored] == [created.event_id]
    assert created.written_by_us == "key-refused" and created.is_organizer
    assert [(r["method"], r["status"]) for r in emu.requests] == [
        ("POST", 500),
        ("POST", status),
        ("GET", 200),
    ]
    lookup = emu.requests[-1]
    assert lookup["path"] == f"/users/{ALICE_MAIL}/events"
    signed = adapter.signed_tag("key-refused", ALICE_MAIL)  # the tag's value is the key, signed
    assert lookup["query"]["filter"] == (
        f"singleValueExtendedProperties/Any(ep: ep/id eq '{PROP}' and ep/value eq '{signed}')"
    )


async def test_the_lookup_takes_the_event_with_our_transaction_id_not_another_with_the_same_tag(
    adapter: GraphAdapter, emu: GraphEmulator
) -> None:
    tag = adapter.signed_tag("key-shared", ALICE_MAIL)
    other = _raw_create(emu, transaction_id="tx-someone-else", tag=tag, subject="Other create")
    ours = _raw_create(emu, transaction_id="tx-ours", tag=tag, subject="Our create")
    emu.set_faults(ALICE_MAIL, duplicate_transaction_status=409)
    found = await adapter.create_event(
        ALICE_MAIL, meeting("Our create", at(12)), transaction_id="tx-ours", tag="key-shared"
    )
    assert found.event_id == ours["id"] != other["id"]
    assert len(emu.dump_events(ALICE)[ALICE]) == 2


async def test_a_duplicate_refusal_with_no_event_of_ours_is_raised_as_a_conflict(
    adapter: GraphAdapter, emu: GraphEmulator
) -> None:
    """The transactionId was used for an event that is not ours (another tag): nothing to adopt."""
    _raw_create(emu, transaction_id="tx-taken", tag="someone-else", subject="Not ours")
    emu.set_faults(ALICE_MAIL, duplicate_transaction_status=409)
    with pytest.raises(ConflictError) as refused:
        await adapter.create_event(
            ALICE_MAIL, meeting("Ours", at(13)), transaction_id="tx-taken", tag="key-taken"
        )
    assert refused.value.mailbox == ALICE_MAIL and refused.value.item_id == "tx-taken"
    assert "ErrorDuplicateTransactionId" in refused.value.message
    assert [e["subject"] for e in emu.dump_events(ALICE)[ALICE]] == ["Not ours"]


async def test_a_quote_in_the_tag_is_escaped_in_the_filter(adapter: GraphAdapter, emu: GraphEmulator) -> None:
    tag = adapter.signed_tag("O'Brien:1", ALICE_MAIL)
    ours = _raw_create(emu, transaction_id="tx-quote", tag=tag, subject="Quoted")
    found = await adapter.find_created(ALICE_MAIL, tag="O'Brien:1", transaction_id="tx-quote")
    assert found is not None and found.event_id == ours["id"]
    assert await adapter.find_created(ALICE_MAIL, tag="O'Brien:2", transaction_id="tx-quote") is None
