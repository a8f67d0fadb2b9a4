"""Attack: input that made the app answer 5xx, so the sender retried it (issue 15, item 8).

Reproduced before the defence: a correctly signed CRM webhook whose JSON nests deeper than the
interpreter's stack raised RecursionError (500, and the CRM retries); `ops/replay` with a duration larger
than a timedelta holds answered 500. Both are input: now 400 with a reason, and nothing is queued.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from sync_core.errors import UnprocessableError
from sync_core.ingress.crm import handle_crm_webhook
from sync_core.ops.replay import ReplayRequest, parse_duration
from sync_core.ports.crm_webhook import sign

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
SECRET = "crm-webhook-secret-for-the-test"


class NoReplays:
    async def first_time(self, signed_at: int, body: bytes, now: datetime) -> bool:
        return True

    async def forget(self, signed_at: int, body: bytes) -> None:
        return None


async def test_a_signed_webhook_nested_deeper_than_the_stack_is_refused_with_400_and_queues_nothing() -> None:
    body = b'{"events": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    queued: list[str] = []

    async def enqueue(text: str) -> None:
        queued.append(text)

    reply = await handle_crm_webhook(
        sign(body, SECRET, int(NOW.timestamp())),
        body,
        secrets=[SECRET],
        enqueue=enqueue,
        replays=NoReplays(),
        now=NOW,
    )
    assert reply.status == 400, reply.body
    assert "error" in json.loads(reply.body) and queued == []


@pytest.mark.parametrize("duration", ["99999999999999999999d", "9" * 40 + "s"])
def test_a_replay_duration_larger_than_any_clock_is_a_400_reason_not_a_500(duration: str) -> None:
    with pytest.raises(UnprocessableError, match="too large"):
        parse_duration(duration)
    with pytest.raises(UnprocessableError):
        ReplayRequest.parse(json.dumps({"older_than": duration}).encode())
