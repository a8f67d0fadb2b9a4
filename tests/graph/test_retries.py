"""GraphAdapter retries against the emulator: Retry-After honoured on 429 and 503, backoff otherwise,
long Retry-After handed to the queue, no wait past the time limit."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
from graph_support import ALICE_MAIL, PROP, at, make_adapter, meeting, settings_for

from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.graph.adapter import GraphAdapter
from sync_core.adapters.graph.base import build_client
from sync_core.adapters.graph.limits import Backoff, MailboxLimiter, time_limit
from sync_core.errors import ThrottledError, TransientError

_OPENED: list[GraphAdapter] = []


@pytest.fixture(autouse=True)
async def _close_adapters() -> AsyncIterator[None]:
    """Adapters made by `_recording` close their connections after each test."""
    yield
    while _OPENED:
        await _OPENED.pop().aclose()


def _recording(emu: GraphEmulator) -> tuple[GraphAdapter, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    adapter = GraphAdapter(
        build_client(settings_for(emu)),
        extended_property_id=PROP,
        tag_secrets=settings_for(emu).tag_secrets,
        limiter=MailboxLimiter(),
        sleep=sleep,
        backoff=Backoff(rng=random.Random(1)),
    )
    _OPENED.append(adapter)
    return adapter, slept


@pytest.mark.parametrize("fault", ["throttle_count", "unavailable_count"])
async def test_retry_after_is_honoured_on_429_and_503(emu: GraphEmulator, fault: str) -> None:
    adapter, slept = _recording(emu)
    emu.set_faults(ALICE_MAIL, retry_after=1.5, **{fault: 2})
    assert await adapter.calendar_view(ALICE_MAIL, at(1), at(2)) == []
    assert len(slept) == 2 and all(1.5 <= s <= 1.6 for s in slept)


async def test_a_long_retry_after_goes_to_the_queue_not_to_sleep(emu: GraphEmulator) -> None:
    adapter, slept = _recording(emu)
    emu.set_faults(ALICE_MAIL, throttle_count=1, retry_after=40)
    with pytest.raises(ThrottledError) as throttled:
        await adapter.calendar_view(ALICE_MAIL, at(1), at(2))
    assert throttled.value.retry_after == 40 and slept == []


async def test_failures_without_retry_after_back_off_exponentially(emu: GraphEmulator) -> None:
    adapter, slept = _recording(emu)
    emu.set_faults(ALICE_MAIL, lose_response_count=10)  # a committed write answered 500, no Retry-After
    with pytest.raises(TransientError):
        await adapter.create_event(ALICE_MAIL, meeting("Backoff", at(3)), transaction_id="tx-b", tag="k")
    assert len(slept) == adapter.backoff.attempts - 1
    assert all(0 <= s <= adapter.backoff.cap for s in slept)


async def test_send_mail_is_not_repeated_after_an_ambiguous_failure(emu: GraphEmulator) -> None:
    adapter, slept = _recording(emu)
    emu.set_faults(ALICE_MAIL, lose_response_count=1)
    with pytest.raises(TransientError):
        await adapter.send_mail(ALICE_MAIL, "Room declined", "The room is taken.")
    assert slept == [] and len(emu.sent_mail) == 1


async def test_no_retry_pause_reaches_past_the_time_limit(emu: GraphEmulator) -> None:
    adapter, slept = _recording(emu)
    emu.set_faults(ALICE_MAIL, throttle_count=5, retry_after=1.5)
    with time_limit(1.0), pytest.raises(ThrottledError):
        await adapter.calendar_view(ALICE_MAIL, at(1), at(2))
    assert slept == []


async def test_the_default_adapter_uses_the_process_limiter(emu: GraphEmulator) -> None:
    from sync_core.adapters.graph.limits import shared_limiter

    plain = GraphAdapter(
        build_client(settings_for(emu)), extended_property_id=PROP, tag_secrets=settings_for(emu).tag_secrets
    )
    assert plain.limiter is shared_limiter()
    assert make_adapter(emu).limiter is not shared_limiter()
