"""SyncSubscriptions does not grow forever: the renewal run deletes history rows (removed, deleted) some days
after they ended, a bounded number per run. Rows on Azurite; Graph is the simulation's model (this run
plans no Graph write, and it records every write it gets)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from devstack.azurite import Azurite
from sync_core.adapters.storage.subscriptions import SubscriptionStore
from sync_core.domain.subscription import SubscriptionRow
from sync_core.engine.subscription_plan import Limits, purgeable
from sync_core.service.subscription_manager import SubscriptionManager
from sync_core.settings import Settings
from tests.subscriptions.sim_models import GraphModel, Rows, SimClock

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SETTINGS = Settings.model_validate(
    {"PUBLIC_BASE_URL": "https://sync.example", "WEBHOOK_FUNCTION_KEY": "k", "GRAPH_AUTH_MODE": "emulator"}
)


def _rows() -> list[SubscriptionRow]:
    def row(sub_id: str, expires: timedelta, **kw: object) -> SubscriptionRow:
        return SubscriptionRow(sub_id, "m1@x.example", "secret", NOW + expires, **kw)  # type: ignore[arg-type]

    return [
        row("live", 6 * DAY),
        row("removed-5d", 2 * DAY).retired("removed", NOW - 5 * DAY),
        row("deleted-4d", 3 * DAY).retired("deleted", NOW - 4 * DAY, "mailbox disabled"),
        row("removed-1d", 6 * DAY).retired("removed", NOW - DAY),  # ended recently: kept
        row("legacy-expired-4d", -4.5 * DAY, status="removed"),  # no EndedAt (older rows): its expiry counts
        row("legacy-expires-later", 2 * DAY, status="removed"),
        row("polling-x", -10 * DAY, status="polling"),  # X3 placeholder: not history
    ]


def test_purgeable_takes_history_ended_days_ago_oldest_first_and_bounded() -> None:
    rows = _rows()
    assert [r.subscription_id for r in purgeable(rows, NOW)] == [
        "removed-5d",
        "legacy-expired-4d",
        "deleted-4d",
    ]
    assert [r.subscription_id for r in purgeable(rows, NOW, Limits(purge_per_run=1))] == ["removed-5d"]
    assert purgeable(rows, NOW, Limits(purge_after=6 * DAY)) == []


async def test_the_renewal_run_purges_old_history_rows_a_bounded_number_per_run(
    azurite: Azurite, unique_name: str
) -> None:
    from azure.data.tables.aio import TableServiceClient

    clock = SimClock(NOW)
    graph = GraphModel(clock)
    queued: list[str] = []

    async def enqueue(text: str) -> None:
        queued.append(text)

    async with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        store = SubscriptionStore(await service.create_table(f"Subs{unique_name}"))
        for r in _rows():
            await store.save(r)
        manager = SubscriptionManager(
            graph=graph,
            store=store,
            settings=SETTINGS,
            clock=clock,
            limits=Limits(purge_per_run=2),
            enqueue=enqueue,
            sleep=clock.sleep,
        )

        async def ids() -> set[str]:
            return {r.subscription_id for r in await store.all()}

        first = await manager.run(["m1@x.example"])
        assert first.purged == 2 and await ids() == {
            "live",
            "deleted-4d",
            "removed-1d",
            "legacy-expires-later",
            "polling-x",
        }
        assert (await manager.renew_due()).purged == 0  # the operator's renew-all purges nothing
        second = await manager.run(["m1@x.example"])
        assert second.purged == 1 and "deleted-4d" not in await ids()
        assert (await manager.run(["m1@x.example"])).purged == 0
        assert graph.writes == [] and queued == []  # the live subscription needed nothing

        # A row written again since the run read it is not deleted (its ETag no longer matches).
        clock.now = NOW + 10 * DAY
        stale = await store.get("removed-1d", fresh=True)
        assert stale is not None
        await store.save(replace(stale, reason="touched after the read"))
        await store.delete(stale)
        assert "removed-1d" in await ids()
        await store.delete(stale)  # twice, and a row already gone: no error
        await store.delete(replace(stale, subscription_id="never-there", etag=None))


async def test_X1_budgets_and_notice_claims_of_days_ago_are_purged_by_the_renewal_run_bounded(
    azurite: Azurite, unique_name: str
) -> None:
    """X1 delete budgets (one row per mailbox per hour) and M4/M5 notice claims (one per notice) are only
    needed for their hour or their window; the renewal run deletes old ones, a bounded number per run."""
    from azure.data.tables.aio import TableServiceClient

    from sync_core.adapters.storage.deletes import TableDeleteBudget
    from sync_core.adapters.storage.notices import NoticeLedger
    from sync_core.domain.actions import NotifyOrganizer

    clock = SimClock(NOW)

    async def enqueue(text: str) -> None:
        return None

    def notice(n: int) -> NotifyOrganizer:
        return NotifyOrganizer(rule="M5", reason=f"r{n}", mailbox="m1@x.example", subject=f"s{n}", text="t")

    async with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        mailboxes = await service.create_table(f"Mailboxes{unique_name}")
        mappings = await service.create_table(f"Mappings{unique_name}")
        budget, ledger = TableDeleteBudget(mailboxes), NoticeLedger(mappings)
        for hours_ago in (100, 99, 98, 97, 2, 0):  # 4 of days ago, 2 recent
            await budget.spend("m1@x.example", NOW - timedelta(hours=hours_ago))
        for n, days_ago in enumerate((10, 9, 8, 5, 1, 0)):
            assert await ledger.claim(f"meeting-{n}", notice(n), NOW - timedelta(days=days_ago))
        await mappings.upsert_entity({"PartitionKey": "meeting-row", "RowKey": "mapping", "State": "x"})
        manager = SubscriptionManager(
            graph=GraphModel(clock),
            store=Rows(),
            settings=SETTINGS,
            clock=clock,
            limits=Limits(purge_per_run=3),
            enqueue=enqueue,
            sleep=clock.sleep,
            housekeeping=(budget.purge, ledger.purge),
        )

        async def left() -> tuple[list[int], list[int]]:
            budgets = [e["RunStart"] async for e in mailboxes.list_entities()]
            claims = [
                e["RowKey"] async for e in mappings.list_entities() if e["RowKey"].startswith("notice-")
            ]
            return sorted(
                int((NOW - datetime.fromisoformat(b)) / timedelta(hours=1)) for b in budgets
            ), claims

        assert (await manager.renew_due()).housekeeping == 0  # the operator's renew-all purges nothing
        first = await manager.run(["m1@x.example"])
        assert first.housekeeping == 6  # 3 budgets + 3 claims: bounded per purge
        budgets, claims = await left()
        assert len(budgets) == 3 and len(claims) == 3
        second = await manager.run(["m1@x.example"])
        budgets, claims = await left()
        assert second.housekeeping == 2 and budgets == [0, 2] and len(claims) == 2  # the recent ones stay
        assert await ledger.claim("meeting-5", notice(5), NOW) is False  # a live claim still holds
        assert [e["RowKey"] async for e in mappings.list_entities() if e["PartitionKey"] == "meeting-row"]
