"""MailboxLimiter and the retry pacing: 4 in flight per mailbox across loops, the budget, the time limit."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from pathlib import Path

import pytest

from sync_core.adapters.graph.limits import (
    BUDGET_PER_WINDOW,
    DEADLINE_MARGIN_SECONDS,
    FUNCTION_TIMEOUT_SECONDS,
    Backoff,
    MailboxLimiter,
    deadline,
    shared_limiter,
    time_limit,
)
from sync_core.errors import ThrottledError

ROOT = Path(__file__).resolve().parents[2]


def test_the_time_limit_matches_host_json_function_timeout() -> None:
    h, m, s = json.loads((ROOT / "host.json").read_text())["functionTimeout"].split(":")
    assert int(h) * 3600 + int(m) * 60 + float(s) == FUNCTION_TIMEOUT_SECONDS
    assert 0 < DEADLINE_MARGIN_SECONDS < FUNCTION_TIMEOUT_SECONDS


def test_the_budget_stays_below_outlooks_10000_per_10_minutes() -> None:
    assert BUDGET_PER_WINDOW < 10_000


def test_one_limiter_per_process() -> None:
    assert shared_limiter() is shared_limiter()


async def test_never_more_than_four_in_flight_per_mailbox() -> None:
    limiter = MailboxLimiter()
    inside: dict[str, int] = {"a": 0, "b": 0}
    peak: dict[str, int] = {"a": 0, "b": 0}

    async def work(mailbox: str, n: int) -> None:
        async with limiter.slot(mailbox, n):
            inside[mailbox] += n
            peak[mailbox] = max(peak[mailbox], inside[mailbox])
            await asyncio.sleep(0.001)
            inside[mailbox] -= n

    await asyncio.gather(*(work(m, random.choice([1, 1, 2, 4])) for m in ["a", "b"] * 40))
    assert peak == {"a": 4, "b": 4}
    assert limiter.in_flight == {"a": 0, "b": 0}


def test_the_limit_holds_across_event_loops_in_threads() -> None:
    limiter = MailboxLimiter()
    lock = threading.Lock()
    state = {"inside": 0, "peak": 0}

    async def one() -> None:
        async with limiter.slot("Room@Contoso.com"):
            with lock:
                state["inside"] += 1
                state["peak"] = max(state["peak"], state["inside"])
            await asyncio.sleep(0.002)
            with lock:
                state["inside"] -= 1

    async def many() -> None:
        await asyncio.gather(*(one() for _ in range(10)))

    threads = [threading.Thread(target=asyncio.run, args=(many(),)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state["peak"] == 4
    assert limiter.max_in_flight["room@contoso.com"] == 4


async def test_a_wait_ends_at_the_deadline_with_throttled_and_frees_nothing_it_did_not_take() -> None:
    limiter = MailboxLimiter(concurrency=1)
    async with limiter.slot("m"):
        loop = asyncio.get_running_loop()
        with pytest.raises(ThrottledError) as refused:
            async with limiter.slot("m", until=loop.time() + 0.01):
                pass
        assert refused.value.retry_after > 0 and refused.value.mailbox == "m"
        assert limiter.in_flight["m"] == 1
    assert limiter.in_flight["m"] == 0


async def test_the_budget_refuses_with_the_wait_until_the_window_frees() -> None:
    now = [1000.0]
    limiter = MailboxLimiter(budget=3, window=600, clock=lambda: now[0])
    for _ in range(3):
        async with limiter.slot("m"):
            pass
    with pytest.raises(ThrottledError) as spent:
        async with limiter.slot("m"):
            pass
    assert spent.value.retry_after == 600
    now[0] += 600.5
    async with limiter.slot("m"):
        pass
    assert limiter.spent("m") == 1


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    backoff = Backoff(base=0.5, cap=4.0, rng=random.Random(7))
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2  # jitter spreads them


def test_time_limit_bounds_the_deadline_and_nests_to_the_tighter() -> None:
    clock = [0.0]
    assert deadline(clock=lambda: clock[0]) == FUNCTION_TIMEOUT_SECONDS - DEADLINE_MARGIN_SECONDS
    with time_limit(60, clock=lambda: clock[0]):
        assert deadline(clock=lambda: clock[0]) == 60
        with time_limit(600, clock=lambda: clock[0]):
            assert deadline(clock=lambda: clock[0]) == 60
    assert deadline(clock=lambda: clock[0]) == FUNCTION_TIMEOUT_SECONDS - DEADLINE_MARGIN_SECONDS
