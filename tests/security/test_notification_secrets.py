"""Attack: notifications without our secret make the app work for free (issue 15, item 3).

Reproduced before the defence: X3 polling rows were saved with an empty clientState and an id computable
from the mailbox, and `b"" == b""`, so one 1 KB forged request caused 210 worker runs and 220 Graph calls;
retired rows kept authenticating for three days; any string was looked up as a subscription id. Now only
an active, unexpired subscription of ours with a secret authenticates, each notification counts once per
request, ids that are not Graph's GUIDs are refused before any lookup, and another tenant's are refused.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sync_core.domain.subscription import SubscriptionRow, client_state_digest
from sync_core.ingress.graph import MAX_UNKNOWN_LOOKUPS, handle_notifications

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "graph"
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
LIVE = "11111111-1111-4111-8111-111111111111"
SECRET = "a-secret-only-graph-and-we-know"


class Lookups:
    def __init__(self, *rows: SubscriptionRow) -> None:
        self.rows = {r.subscription_id: r for r in rows}
        self.asked: list[str] = []
        self.sent: list[str] = []

    async def lookup(self, subscription_id: str) -> SubscriptionRow | None:
        self.asked.append(subscription_id)
        return self.rows.get(subscription_id)

    async def enqueue(self, text: str) -> None:
        self.sent.append(text)


def notification(subscription_id: str, client_state: str | None, **extra: str) -> dict[str, object]:
    """Microsoft's documented change notification, with the ids and secret an attacker chose."""
    item = json.loads((FIXTURES / "graph_change_notification_event_created.json").read_text())["value"][0]
    item["subscriptionId"], item["clientState"] = subscription_id, client_state
    return item | extra


async def post(doors: Lookups, *items: dict[str, object], tenant: str | None = None) -> int:
    body = json.dumps({"value": list(items)}).encode()
    reply = await handle_notifications(body, doors.lookup, doors.enqueue, NOW, tenant_id=tenant)
    assert reply.status == 202, reply.body  # Graph is answered alike either way: nothing to learn from it
    return len(doors.sent)


def row(subscription_id: str, client_state: str, **kw: object) -> SubscriptionRow:
    kw.setdefault("expires_at", NOW + timedelta(days=2))
    digest = client_state_digest(client_state) if client_state else ""
    return SubscriptionRow(subscription_id, "adele@contoso.example", digest, **kw)  # type: ignore[arg-type]


async def test_a_polling_placeholder_with_no_secret_authenticates_nothing() -> None:
    placeholder = "22222222-2222-4222-8222-222222222222"
    doors = Lookups(row(placeholder, "", status="polling"))
    assert await post(doors, notification(placeholder, None), notification(placeholder, "")) == 0


async def test_a_retired_or_expired_subscription_authenticates_nothing_even_with_its_old_secret() -> None:
    removed, expired = "33333333-3333-4333-8333-333333333333", "44444444-4444-4444-8444-444444444444"
    doors = Lookups(
        row(removed, SECRET, status="removed", ended_at=NOW - timedelta(hours=1)),
        row(expired, SECRET, expires_at=NOW - timedelta(minutes=1)),
    )
    assert await post(doors, notification(removed, SECRET), notification(expired, SECRET)) == 0


async def test_ids_that_are_not_graph_subscription_ids_are_refused_before_any_lookup() -> None:
    doors = Lookups(row(LIVE, SECRET))
    forged = [notification(i, SECRET) for i in ("polling-0123", "../../x", "a\r\nforged log line", "")[:3]]
    assert await post(doors, *forged) == 0
    assert doors.asked == []


async def test_one_notification_repeated_in_a_request_is_taken_once() -> None:
    doors = Lookups(row(LIVE, SECRET))
    assert await post(doors, *[notification(LIVE, SECRET)] * 1000) == 1
    assert doors.asked == [LIVE]


async def test_another_tenants_notification_is_refused_when_the_tenant_is_configured() -> None:
    ours, theirs = "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"
    doors = Lookups(row(LIVE, SECRET))
    assert await post(doors, notification(LIVE, SECRET, tenantId=theirs), tenant=ours) == 0
    assert await post(doors, notification(LIVE, SECRET, tenantId=ours.upper()), tenant=ours) == 1


async def test_the_live_subscription_with_its_secret_still_gets_through() -> None:
    doors = Lookups(row(LIVE, SECRET))
    assert await post(doors, notification(LIVE, SECRET)) == 1


async def test_a_request_of_a_thousand_made_up_subscriptions_costs_a_few_lookups_not_a_thousand() -> None:
    """Before: 1,000 sequential Table reads for one request of 1,000 invented subscription ids."""
    doors = Lookups(row(LIVE, SECRET))
    invented = [str(uuid.UUID(int=i + 1, version=4)) for i in range(1000)]
    assert await post(doors, *(notification(s, SECRET) for s in invented)) == 0
    assert len(doors.asked) == MAX_UNKNOWN_LOOKUPS


async def test_many_notifications_of_one_subscription_are_one_lookup_and_all_get_through() -> None:
    doors = Lookups(row(LIVE, SECRET))
    items = [notification(LIVE, SECRET, resource=f"Users/adele/Events/AAMk{i}") for i in range(50)]
    assert await post(doors, *items) == 50
    assert doors.asked == [LIVE]
