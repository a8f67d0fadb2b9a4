"""Status, health and explain against Azurite: a stale mailbox or a lapsing subscription is unhealthy."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sync_core.adapters.storage.core import (
    DECISIONS_TABLE,
    MAILBOXES_TABLE,
    MAPPINGS_TABLE,
    SUBSCRIPTIONS_TABLE,
    Storage,
)
from sync_core.adapters.storage.decisions import DecisionLog
from sync_core.adapters.storage.mappings import MappingStore
from sync_core.adapters.storage.subscriptions import SubscriptionStore
from sync_core.domain.actions import GraphCopy, Mapping
from sync_core.domain.policy import load_policy
from sync_core.domain.subscription import SubscriptionRow
from sync_core.ops import operations as ops
from sync_core.ports.stores import DecisionRecord
from sync_core.service.reconcile import MailboxState, MailboxStateStore
from sync_core.settings import Settings
from tests.ops.conftest import MAILBOX_A, MAILBOX_B, POLICY

NOW = datetime.now(UTC).replace(microsecond=0)
POLICY_AB = load_policy(POLICY)


async def seed(storage: Storage, *, b_confirmed: timedelta, b_expires: timedelta) -> None:
    """Adele: fresh and subscribed for days. Bruno: confirmed `b_confirmed` ago, expiring in `b_expires`."""
    states = MailboxStateStore(storage.table(MAILBOXES_TABLE))
    subs = SubscriptionStore(storage.table(SUBSCRIPTIONS_TABLE))
    await states.save(MailboxState(mailbox=MAILBOX_A, last_confirmed=NOW - timedelta(minutes=10)))
    await states.save(MailboxState(mailbox=MAILBOX_B, last_confirmed=NOW - b_confirmed))
    await subs.save(SubscriptionRow("sub-a", MAILBOX_A, "cs-a", NOW + timedelta(days=3)))
    await subs.save(
        SubscriptionRow("sub-b-old", MAILBOX_B, "cs-b0", NOW - timedelta(days=1), status="removed")
    )
    await subs.save(SubscriptionRow("sub-b", MAILBOX_B, "cs-b", NOW + b_expires))


def stores(storage: Storage) -> tuple[SubscriptionStore, MailboxStateStore]:
    return SubscriptionStore(storage.table(SUBSCRIPTIONS_TABLE)), MailboxStateStore(
        storage.table(MAILBOXES_TABLE)
    )


async def test_status_reports_freshness_subscriptions_depths_the_stalest_mailbox_and_the_nearest_expiry(
    storage: Storage,
) -> None:
    await seed(storage, b_confirmed=timedelta(hours=5), b_expires=timedelta(minutes=30))
    await storage.enqueue("{}")

    report = await ops.status(storage, *stores(storage), POLICY_AB, NOW)

    by_mailbox = {m.mailbox: m for m in report.mailboxes}
    assert by_mailbox[MAILBOX_A].age == timedelta(minutes=10)
    assert (by_mailbox[MAILBOX_B].subscription_id, by_mailbox[MAILBOX_B].subscription_status) == (
        "sub-b",
        "active",
    )
    assert report.stalest is by_mailbox[MAILBOX_B] and report.nearest_expiry is by_mailbox[MAILBOX_B]
    assert (report.queue_depth, report.poison_depth) == (1, 0)
    assert json.loads(json.dumps(report.to_dict()))["stalest_mailbox"]["age_seconds"] == 5 * 3600


async def test_health_is_not_ok_for_a_stale_mailbox_and_a_soon_expiring_subscription_and_says_why(
    storage: Storage,
) -> None:
    await seed(storage, b_confirmed=timedelta(hours=5), b_expires=timedelta(minutes=30))

    ok, body = await ops.health(storage, *stores(storage), POLICY_AB, NOW)

    assert not ok and body["ok"] is False and body["storage"] == "reachable"
    assert body["reasons"] == [
        f"{MAILBOX_B}: subscription sub-b expires in 1800 s",
        f"{MAILBOX_B}: last confirmed in sync 18000 s ago",
    ]
    assert body["stalest_mailbox"]["mailbox"] == body["nearest_subscription_expiry"]["mailbox"] == MAILBOX_B


async def test_health_is_ok_when_every_mailbox_is_fresh_and_subscribed_for_more_than_an_hour(
    storage: Storage,
) -> None:
    await seed(storage, b_confirmed=timedelta(minutes=90), b_expires=timedelta(hours=2))

    ok, body = await ops.health(storage, *stores(storage), POLICY_AB, NOW)

    assert ok and body["reasons"] == [] and body["queue_depth"] == 0


async def test_an_expired_or_missing_subscription_and_a_never_confirmed_mailbox_are_problems(
    storage: Storage,
) -> None:
    subs, states = stores(storage)
    await subs.save(SubscriptionRow("sub-a", MAILBOX_A, "cs", NOW - timedelta(minutes=1)))
    await states.save(MailboxState(mailbox=MAILBOX_A, last_confirmed=NOW))

    ok, body = await ops.health(storage, subs, states, POLICY_AB, NOW)

    assert not ok
    assert any(r.startswith(f"{MAILBOX_A}: subscription sub-a expired at") for r in body["reasons"])
    assert f"{MAILBOX_B}: no subscription" in body["reasons"]
    assert f"{MAILBOX_B}: never confirmed in sync" in body["reasons"]


async def test_health_is_not_ok_when_storage_is_unreachable(settings: Settings) -> None:
    dead = settings.model_copy(
        update={
            "storage_connection_string": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            "AccountKey=" + "A" * 88 + ";QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;"
            "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
        }
    )
    storage = Storage(dead)
    try:
        ok, body = await ops.health(storage, *stores(storage), POLICY_AB, NOW, storage_timeout=3.0)
    finally:
        await storage.aclose()

    assert not ok and body["storage"] == "unreachable"
    assert body["reasons"][0].startswith("storage unreachable")


async def test_E1_explain_finds_every_decision_from_either_sides_id_newest_first(storage: Storage) -> None:
    decisions = DecisionLog(storage.table(DECISIONS_TABLE))
    mappings = MappingStore(storage.table(MAPPINGS_TABLE))
    await mappings.save(
        Mapping(
            meeting_key="ical:K1",
            crm_id="crm-7",
            copies=(GraphCopy(mailbox=MAILBOX_A, event_id="AAMk/e1=="),),
        )
    )

    async def decide(side: str, item: str, minutes: int, rule: str) -> None:
        await decisions.record(
            side=side,
            item_id=item,
            at=NOW + timedelta(minutes=minutes),
            meeting_key="ical:K1",
            rule=rule,
            reason=f"{rule} applied",
            actions=[{"kind": "update_crm"}],
            correlation_id=f"c{minutes}",
            versions={"graph": "v1"},
            outcome="applied",
        )

    await decide("m365", "AAMk/e1==", 1, "D1")
    await decide("crm", "crm-7", 2, "D3")
    await decide("m365", "AAMk/e1==", 3, "D4")
    await decide("m365", "unrelated", 4, "S2")

    from_graph = await ops.explain(decisions, mappings, "AAMk/e1==")
    from_crm = await ops.explain(decisions, mappings, "crm-7")

    assert [d["rule"] for d in from_graph] == ["D4", "D3", "D1"]
    assert from_crm == from_graph
    assert from_graph[0]["actions"] == [{"kind": "update_crm"}] and from_graph[0]["versions"] == {
        "graph": "v1"
    }
    assert await ops.explain(decisions, mappings, "nothing-known") == []

    beside = DecisionRecord(
        "m365", "AAMk/e1==", NOW + timedelta(minutes=5), "ical:K1", "D2", "", [], "c5", {}, ""
    )
    await mappings.record(beside)  # issue 20: a mapped meeting's decisions are kept beside its row
    assert [d["rule"] for d in await ops.explain(decisions, mappings, "crm-7")][:2] == ["D2", "D4"]
    assert await ops.explain(decisions, mappings, "AAMk/e2==", mailboxes=[MAILBOX_A]) == []
    await mappings.save(
        Mapping(meeting_key="ical:K2", copies=(GraphCopy(mailbox=MAILBOX_A, event_id="AAMk/e2=="),))
    )
    await mappings.record(replace(beside, item_id="AAMk/e2==", meeting_key="ical:K2", rule="D6"))
    by_mailbox = await ops.explain(decisions, mappings, "AAMk/e2==", mailboxes=[MAILBOX_B, MAILBOX_A])
    assert [d["rule"] for d in by_mailbox] == ["D6"], "a Graph id without its mailbox: each sync mailbox's"


async def test_recent_decisions_are_a_bounded_newest_first_read_across_items(storage: Storage) -> None:
    decisions = DecisionLog(storage.table(DECISIONS_TABLE))
    for n in range(5):
        await decisions.record(
            side="crm",
            item_id=f"crm-{n}",
            at=NOW - timedelta(hours=n * 10),
            meeting_key=None,
            rule="S5",
            reason="unmatched",
            actions=[],
            correlation_id=f"c{n}",
            versions={},
            outcome="skipped",
        )
    await decisions.flush()  # `ops.recent_decisions` reads with a log of its own

    rows = await ops.recent_decisions(storage, since=NOW - timedelta(hours=24), now=NOW, limit=2)

    assert [r["item_id"] for r in rows] == ["crm-0", "crm-1"]
