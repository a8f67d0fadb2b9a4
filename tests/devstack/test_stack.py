"""LocalStack: a start that fails part way stops what it had started and gives the environment back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from devstack.azurite import Azurite
from devstack.run import ROOT, with_webhook_keys
from devstack.stack import CRM_KEY, FUNCTION_KEY, GRAPH_KEY, LocalStack
from sync_core.errors import ConfigurationError


def test_a_failed_start_leaves_no_emulator_running_and_the_environment_as_it_was(tmp_path: Path) -> None:
    before = dict(os.environ)
    stack = LocalStack(policy_file=tmp_path / "missing-policy.json")

    with pytest.raises(ConfigurationError):
        stack.start()

    assert stack.azurite is not None and not stack.azurite.running, "its own Azurite was stopped"
    assert stack.graph._thread is None and stack.host._thread is None
    assert dict(os.environ) == before


def test_the_graph_and_crm_front_doors_each_take_their_own_key_and_not_the_others(azurite: Azurite) -> None:
    stack = LocalStack(azurite=azurite).start()
    try:
        base = f"{stack.host.base_url}/api"

        def post(route: str, key: str, query: str = "") -> httpx.Response:
            return httpx.post(f"{base}/{route}?code={key}{query}", content=b"{}", timeout=30)

        # Graph is told its key in every subscription's notificationUrl, and nothing else.
        notification_url = stack.graph.subscriptions[0]["notificationUrl"]
        assert f"code={GRAPH_KEY}" in notification_url
        for route in ("graph/notifications", "graph/lifecycle"):
            handshake = post(route, GRAPH_KEY, "&validationToken=hello")
            assert (handshake.status_code, handshake.text) == (200, "hello")
            assert post(route, CRM_KEY, "&validationToken=hello").status_code == 401
        # The CRM's key reaches its function (which refuses an unsigned body with a reason), not Graph's.
        unsigned = post("crm/webhook", CRM_KEY)
        assert unsigned.status_code == 401 and "error" in unsigned.json()
        refused = post("crm/webhook", GRAPH_KEY)
        assert (refused.status_code, refused.content) == (401, b"")  # the host's refusal: no body
        # Neither opens an ADMIN route; the host-level key opens every FUNCTION-level one.
        for key in (GRAPH_KEY, CRM_KEY, FUNCTION_KEY):
            assert httpx.get(f"{base}/ops/status?code={key}", timeout=30).status_code == 401
        assert httpx.get(f"{base}/health?code={CRM_KEY}", timeout=30).status_code == 401
        assert httpx.get(f"{base}/health?code={FUNCTION_KEY}", timeout=30).status_code in (200, 503)
        assert post("graph/notifications", FUNCTION_KEY, "&validationToken=x").status_code == 200
    finally:
        stack.stop()


def test_make_run_gives_graph_and_the_crm_keys_apart_from_the_host_key() -> None:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    values = with_webhook_keys(sample)
    graph, crm = (
        values["DEVHOST_FUNCTION_KEY__graph_notifications"],
        values["DEVHOST_FUNCTION_KEY__crm_webhook"],
    )
    assert values["DEVHOST_FUNCTION_KEY__graph_lifecycle"] == graph == values["WEBHOOK_FUNCTION_KEY"]
    assert len({graph, crm, values["DEVHOST_FUNCTION_KEY"], values["DEVHOST_MASTER_KEY"]}) == 4
    # Keys a developer set are kept.
    own = with_webhook_keys({**sample, "WEBHOOK_FUNCTION_KEY": "g", "DEVHOST_FUNCTION_KEY__crm_webhook": "c"})
    assert (own["DEVHOST_FUNCTION_KEY__graph_lifecycle"], own["DEVHOST_FUNCTION_KEY__crm_webhook"]) == (
        "g",
        "c",
    )
