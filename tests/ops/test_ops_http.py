"""The operator endpoints through the decorated functions, with real func.HttpRequest objects and Azurite."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest

from sync_core import bootstrap
from sync_core.adapters.storage.core import (
    CHANGES_QUEUE,
    FAILURES_TABLE,
    MAILBOXES_TABLE,
    POISON_QUEUE,
    Storage,
)
from sync_core.adapters.storage.failures import FailureLedger
from sync_core.bootstrap import configuration
from sync_core.domain.messages import CrmChange, encode
from sync_core.errors import PolicyError
from sync_core.ops import operations as ops
from sync_core.service.reconcile import MailboxState, MailboxStateStore
from tests.clock import ManualClock
from tests.ops.conftest import MAILBOX_A, MAILBOX_B
from triggers import admin


@dataclass
class AppEnv:
    storage: Storage  # the test's own client of the app's storage
    clock: ManualClock  # the app's clock while the test runs


@pytest.fixture
async def app_env(
    app_settings: dict[str, str], storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AppEnv]:
    """The app's settings in the environment and its container, on a clock the test holds, installed for
    the triggers the test calls (the composition root's own `opened`, no private attribute touched)."""
    for name, value in app_settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SYNC_POLICY_FILE", raising=False)
    configuration.cache_clear()
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    async with bootstrap.opened(clock=clock, install=True):
        yield AppEnv(storage, clock)
    configuration.cache_clear()


def request(method: str, route: str, body: object = None) -> func.HttpRequest:
    data = b"" if body is None else json.dumps(body).encode()
    return func.HttpRequest(
        method=method, url=f"http://localhost/api/{route}?code=k", params={"code": "k"}, body=data
    )


async def poison_one(env: AppEnv, crm_id: str = "crm-9", reason: str | None = None) -> str:
    storage, now = env.storage, env.clock.now()
    body = encode(CrmChange(correlation_id="c1", received_at=now, crm_id=crm_id, change_type="updated"))
    if reason:
        await FailureLedger(storage.table(FAILURES_TABLE)).record(
            body=body,
            message_id="m",
            dequeue_count=1,
            error=PolicyError(reason),
            step="crm_change",
            permanent=True,
            at=now,
        )
    await storage.enqueue(body, queue=POISON_QUEUE)
    return body


def test_the_operator_routes_are_registered_with_their_auth_levels_and_avoid_the_reserved_admin_prefix() -> (
    None
):
    routes = {}
    from tests.conftest import app_functions

    for fn in app_functions():
        for binding in fn.get_bindings():
            spec = binding.get_dict_repr()
            if spec.get("type") == "httpTrigger":
                routes[spec["route"]] = (spec["authLevel"], tuple(str(m.value) for m in spec["methods"]))
    assert routes["health"] == (func.AuthLevel.FUNCTION, ("GET",))
    assert routes["ops/replay"] == (func.AuthLevel.ADMIN, ("POST",))
    assert routes["ops/status"] == (func.AuthLevel.ADMIN, ("GET",))
    assert not [r for r in routes if r.lower().startswith(("admin", "runtime"))]


async def test_health_answers_503_with_counts_and_no_mailbox_when_a_mailbox_is_stale(app_env: AppEnv) -> None:
    states = MailboxStateStore(app_env.storage.table(MAILBOXES_TABLE))
    await states.save(MailboxState(mailbox=MAILBOX_A, last_confirmed=app_env.clock.now()))
    app_env.clock.advance(timedelta(hours=3, seconds=7))  # the app's clock: three hours without a sync

    response = await admin.health(request("GET", "health"))

    body = json.loads(response.get_body())
    assert response.status_code == 503 and response.mimetype == "application/json"
    # A function key opens health: the verdict and counts, no mailbox or subscription (issue 15, item 5).
    assert (body["ok"], body["mailboxes"]) == (False, 2) and body["problems"] >= 2  # stale, never, no subs
    assert MAILBOX_A not in response.get_body().decode() and "subscription" not in body
    # The reasons are the operators': the status report the admin page and the CLI show.
    c = bootstrap.container()
    ok, detail = await ops.health(c.storage, c.subscriptions, c.mailbox_states, c.policy, c.clock.now())
    stale = [r for r in detail["reasons"] if r.startswith(f"{MAILBOX_A}: last confirmed in sync ")]
    seconds = int(re.search(r"in sync (\d+)", stale[0]).group(1))  # type: ignore[union-attr]
    assert not ok and seconds == 3 * 3600 + 7, stale[0]
    assert f"{MAILBOX_B}: never confirmed in sync" in detail["reasons"]


async def test_replay_over_http_dry_runs_then_moves_and_rejects_bad_bodies(app_env: AppEnv) -> None:
    body = await poison_one(app_env, reason="needs an operator")
    app_env.clock.advance(timedelta(minutes=1))  # poisoned a minute ago, by the app's clock

    dry = await admin.ops_replay(
        request("POST", "ops/replay", {"dry_run": True, "error_class": "PolicyError"})
    )
    assert dry.status_code == 200
    report = json.loads(dry.get_body())
    assert report["moved"] == [] and [c["reason"] for c in report["chosen"]] == ["needs an operator"]

    moved = await admin.ops_replay(request("POST", "ops/replay", {"older_than": "0s", "limit": 5}))
    assert moved.status_code == 200 and len(json.loads(moved.get_body())["moved"]) == 1
    assert [m.content for m in await app_env.storage.queue(CHANGES_QUEUE).peek_messages()] == [body]

    for bad in ({"limit": 0}, {"older_than": "soon"}, {"mailbx": "typo"}, [1]):
        response = await admin.ops_replay(request("POST", "ops/replay", bad))
        assert response.status_code == 400, bad
        assert "error" in json.loads(response.get_body())


async def test_the_status_page_shows_mailboxes_poison_reasons_escaped_and_a_replay_button(
    app_env: AppEnv,
) -> None:
    await poison_one(app_env, reason="<script>alert(1)</script> is not a room")

    response = await admin.ops_status(request("GET", "ops/status"))

    page = response.get_body().decode()
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert MAILBOX_A in page and MAILBOX_B in page and "never" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; is not a room" in page and "<script>alert" not in page
    assert "<button data-id=" in page and "fetch('replay?code='" in page
    assert "http://" not in page and "https://" not in page, "self-contained: no external assets"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
