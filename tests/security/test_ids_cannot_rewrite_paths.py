"""Attack: ids that rewrite request paths (issue 15, item 6).

Reproduced before the defence: event or CRM ids `.` and `..` survive percent-encoding and httpx removes
the dot segments, so a Graph `GET /users/{mailbox}/events/..` became `GET /users/{mailbox}`, a CRM
`GET /appointments/..` became `GET /`, and a cancel of `..` would have posted to `{base}/cancel`. Now both
front doors refuse such ids (400, nothing queued) and both adapters refuse to build such a path.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from sync_core.adapters.crm.rest import RestCrmConnector
from sync_core.domain.subscription import SubscriptionRow
from sync_core.errors import UnprocessableError
from sync_core.ingress.graph import handle_notifications
from sync_core.ports.crm_webhook import WebhookRejected, parse_events

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "graph"
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
SUB = "11111111-1111-4111-8111-111111111111"
BAD = [".", "..", "", "   ", "evt\r\nX-Injected: 1", "a\x00b"]


@pytest.mark.parametrize("event_id", BAD)
async def test_a_graph_notification_naming_a_path_rewriting_event_id_is_400_and_queues_nothing(
    event_id: str,
) -> None:
    item = json.loads((FIXTURES / "graph_change_notification_event_created.json").read_text())["value"][0]
    item |= {"subscriptionId": SUB, "clientState": "s", "resourceData": {"id": event_id}}
    sent: list[str] = []

    async def lookup(subscription_id: str) -> SubscriptionRow | None:
        return SubscriptionRow(SUB, "adele@contoso.example", "s", datetime(2026, 11, 25, tzinfo=UTC))

    async def enqueue(text: str) -> None:
        sent.append(text)

    reply = await handle_notifications(json.dumps({"value": [item]}).encode(), lookup, enqueue, NOW)
    assert reply.status == 400 and sent == []


@pytest.mark.parametrize("crm_id", BAD)
def test_a_crm_webhook_naming_a_path_rewriting_appointment_id_is_refused(crm_id: str) -> None:
    event = {
        "id": "evt-1",
        "type": "appointment.updated",
        "appointment_id": crm_id,
        "version": "v1",
        "occurred_at": "2026-11-20T12:00:00Z",
    }
    with pytest.raises(WebhookRejected) as refused:
        parse_events(json.dumps({"events": [event]}).encode())
    assert refused.value.status == 400


@pytest.mark.parametrize("crm_id", [".", "..", "a\nb"])
async def test_the_crm_adapter_builds_no_path_from_such_an_id(crm_id: str) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={})

    crm = RestCrmConnector("https://crm.test/api", token="t", transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(UnprocessableError, match="not a CRM id"):
            await crm.get_appointment(crm_id)
        with pytest.raises(UnprocessableError, match="not a CRM id"):
            await crm.cancel_appointment(crm_id)
    finally:
        await crm.aclose()
    assert requests == []
