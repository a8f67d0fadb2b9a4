"""The renewal planner (pure) and the reauthorization rule; the run lease and row claims on Azurite."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from devstack.azurite import Azurite
from sync_core.adapters.storage.subscriptions import RunLease, SubscriptionStore
from sync_core.domain.subscription import SubscriptionRow
from sync_core.engine.subscription_plan import Limits, max_in_window, plan
from sync_core.errors import ConcurrencyError
from sync_core.service.lifecycle import reauthorization_action

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def _row(i: int, expires_in: timedelta, **kw: object) -> SubscriptionRow:
    return SubscriptionRow(f"s{i}", f"m{i}@x.example", "secret", NOW + expires_in, **kw)  # type: ignore[arg-type]


def test_plan_creates_renews_deletes_and_leaves_the_rest() -> None:
    rows = [
        _row(1, timedelta(days=6)),  # healthy
        _row(2, timedelta(days=1)),  # due
        _row(3, -timedelta(minutes=1)),  # lapsed: Graph deleted it
        _row(4, timedelta(days=1)),  # mailbox disabled
        _row(5, timedelta(days=1), last_reauthorization=NOW - timedelta(minutes=3)),  # reauthorized just now
        _row(6, timedelta(days=5), status="removed"),  # history
    ]
    enabled = ["m1@x.example", "M2@x.example", "m3@x.example", "m5@x.example", "m7@x.example"]
    steps = plan(rows, enabled, NOW, rng=random.Random(1)).steps
    got = {(s.kind, s.mailbox, s.subscription_id) for s in steps}
    assert got == {
        ("renew", "m2@x.example", "s2"),
        ("create", "m3@x.example", "s3"),
        ("delete", "m4@x.example", "s4"),
        ("create", "m7@x.example", None),
    }
    assert all(
        s.expires_at and s.expires_at - s.at <= timedelta(minutes=10_080) for s in steps if s.kind != "delete"
    )


def test_plan_never_exceeds_the_rate_budget_and_defers_the_rest() -> None:
    limits = Limits()
    result = plan([], [f"m{i}@x.example" for i in range(20_000)], NOW, limits, rng=random.Random(2))
    assert len(result.steps) == limits.capacity and result.deferred == 20_000 - limits.capacity
    assert (
        max_in_window([s.at for s in result.steps], limits.window) <= limits.writes_per_window * limits.share
    )
    assert max(s.at for s in result.steps) <= NOW + limits.run_time


def test_plan_takes_its_randomness_from_the_caller_and_is_a_function_of_it() -> None:
    rows = [_row(i, timedelta(days=1)) for i in range(30)]
    enabled = [f"m{i}@x.example" for i in range(40)]
    with pytest.raises(TypeError):  # no hidden random source in the pure planner
        plan(rows, enabled, NOW)  # type: ignore[call-arg]
    once = plan(rows, enabled, NOW, rng=random.Random(9))
    assert once == plan(rows, enabled, NOW, rng=random.Random(9))
    assert once != plan(rows, enabled, NOW, rng=random.Random(10))


def test_X3_a_refused_mailbox_is_asked_again_only_after_its_retry_time() -> None:
    polling = _row(1, timedelta(0), status="polling", next_attempt=NOW + timedelta(hours=1))
    assert plan([polling], ["m1@x.example"], NOW, rng=random.Random(3)).steps == []
    later = plan([polling], ["m1@x.example"], NOW + timedelta(hours=2), rng=random.Random(4)).steps
    assert [(s.kind, s.subscription_id) for s in later] == [("create", "s1")]


def test_reauthorize_or_renew_never_both_within_10_minutes() -> None:
    limits = Limits()
    far, soon = NOW + timedelta(days=6), NOW + timedelta(days=1)
    assert reauthorization_action(NOW - timedelta(hours=2), None, far, NOW, limits) == "reauthorize"
    assert reauthorization_action(NOW - timedelta(hours=2), None, soon, NOW, limits) == "renew"
    assert reauthorization_action(NOW - timedelta(minutes=9), None, soon, NOW, limits) == "skip"
    assert reauthorization_action(None, NOW - timedelta(minutes=9), far, NOW, limits) == "skip"


async def test_run_lease_excludes_a_second_run_until_released_or_lapsed(
    azurite: Azurite, unique_name: str
) -> None:
    from azure.data.tables.aio import TableServiceClient

    async with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        table = await service.create_table(f"Subs{unique_name}")
        first, second = RunLease(table, "renewal"), RunLease(table, "renewal")
        assert await first.acquire(NOW, timedelta(minutes=7))
        assert not await second.acquire(NOW + timedelta(minutes=1), timedelta(minutes=7))
        # the first run crashed without releasing: its claim lapses
        assert await second.acquire(NOW + timedelta(minutes=8), timedelta(minutes=7))
        await first.release()  # too late: not its lease any more
        assert not await first.acquire(NOW + timedelta(minutes=9), timedelta(minutes=7))
        await second.release()
        assert await first.acquire(NOW + timedelta(minutes=9), timedelta(minutes=7))

        store = SubscriptionStore(table)
        await store.save(_row(1, timedelta(days=6)))
        a = await store.get("s1", fresh=True)
        b = await store.get("s1", fresh=True)
        assert a is not None and b is not None
        await store.claim(a)
        with pytest.raises(ConcurrencyError):  # a stale claim loses
            await store.claim(b)
