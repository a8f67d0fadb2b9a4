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
    CONCURRENCY_SETTING,
    DEADLINE_MARGIN_SECONDS,
    FUNCTION_TIMEOUT_SECONDS,
    MAX_CONCURRENT_PER_MAILBOX,
    Backoff,
    MailboxLimiter,
    deadline,
    limiter_for_share,
    process_share,
    shared_limiter,
    time_limit,
)
from sync_core.errors import ConfigurationError, ThrottledError

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


# -- several processes: each instance's share of the per-mailbox limit (docs/deploy.md, "Scale") ----------


def test_the_share_comes_from_the_setting_and_defaults_to_the_whole_limit() -> None:
    assert process_share({}) == MAX_CONCURRENT_PER_MAILBOX == 4
    assert [process_share({CONCURRENCY_SETTING: v}) for v in ("1", "2", " 4 ")] == [1, 2, 4]
    for wrong in ("0", "5", "two", "-1", "1.5"):
        with pytest.raises(ConfigurationError) as refused:
            process_share({CONCURRENCY_SETTING: wrong})
        assert CONCURRENCY_SETTING in str(refused.value)


def test_a_share_of_the_places_holds_the_same_share_of_the_budget() -> None:
    for share in (1, 2, 4):
        limiter = limiter_for_share(share)
        assert limiter.concurrency == share
        assert limiter._budget == BUDGET_PER_WINDOW * share // 4
    assert sum(limiter_for_share(1)._budget for _ in range(4)) <= BUDGET_PER_WINDOW


async def _peak_across_processes(instances: int, per_instance: int, requests: int = 12) -> int:
    """`instances` processes, each with its own limiter as shared_limiter() builds it from the setting the
    template gives it, send `requests` concurrent requests each to one mailbox; Graph sees the sum."""
    share = process_share({CONCURRENCY_SETTING: str(per_instance)})
    limiters = [limiter_for_share(share) for _ in range(instances)]
    graph = {"inside": 0, "peak": 0}

    async def request(limiter: MailboxLimiter) -> None:
        async with limiter.slot("adele@contoso.example"):
            graph["inside"] += 1
            graph["peak"] = max(graph["peak"], graph["inside"])
            await asyncio.sleep(0.001)
            graph["inside"] -= 1

    await asyncio.gather(*(request(lim) for lim in limiters for _ in range(requests)))
    return graph["peak"]


@pytest.mark.parametrize("instances", [1, 2, 3, 4])
async def test_up_to_four_instances_with_the_template_share_send_at_most_four_requests_to_a_mailbox(
    instances: int,
) -> None:
    share = max(1, 4 // instances)  # infra/modules/functionapp.bicep: max(1, 4 / maximumInstanceCount)
    peak = await _peak_across_processes(instances, share)
    assert peak <= MAX_CONCURRENT_PER_MAILBOX
    assert peak == instances * share  # and the places are used, not wasted


async def test_at_forty_instances_the_share_cannot_go_below_one_so_one_mailbox_sees_forty() -> None:
    """What docs/deploy.md says happens at 40 instances: each holds one place, and a busy mailbox whose
    messages spread over all of them gets 40 requests at once; Graph answers the excess with 429."""
    assert await _peak_across_processes(40, 1) == 40


def test_the_process_limiter_takes_its_share_from_the_app_setting() -> None:
    """In a child process: shared_limiter() is built once per process, from the environment."""
    import subprocess
    import sys

    code = "from sync_core.adapters.graph.limits import shared_limiter as s; print(s().concurrency)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), CONCURRENCY_SETTING: "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
