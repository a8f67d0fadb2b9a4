"""Settings: every problem at once, and the same names in code and local.settings.sample.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sync_core.domain.messages import decode
from sync_core.errors import ConfigurationError
from sync_core.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def _setting_names() -> set[str]:
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names.update(str(c) for c in getattr(alias, "choices", []))
    return names


def test_an_empty_environment_reports_every_problem_at_once() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings({})
    text = str(info.value)
    for name in (
        "AzureWebJobsStorage",
        "GRAPH_CLIENT_SECRET",
        "CRM_BASE_URL",
        "CRM_WEBHOOK_SECRETS",
        "PUBLIC_BASE_URL",
    ):
        assert name in text
    assert len(info.value.problems) >= 5


def test_a_wrongly_typed_setting_is_named() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings({"GRAPH_AUTH_MODE": "password"})
    assert any(p.startswith("GRAPH_AUTH_MODE") for p in info.value.problems)


def test_the_sample_local_settings_are_valid_and_use_only_known_names() -> None:
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    devhost_only = {"FUNCTIONS_WORKER_RUNTIME", "DEVHOST_FUNCTION_KEY", "DEVHOST_MASTER_KEY"}
    assert set(values) - devhost_only <= _setting_names()
    settings = load_settings(values)
    assert settings.graph_auth_mode == "emulator"


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = sorted(n for n in _setting_names() if f"`{n}`" not in readme)
    assert missing == []


def test_queue_messages_that_are_not_ours_are_refused_with_a_reason() -> None:
    from sync_core.errors import UnprocessableError

    for body in (b"", b"[]", b'{"type":"graph_change"}', b'{"type":"nope","v":1}'):
        with pytest.raises(UnprocessableError) as info:
            decode(body)
        assert "not a sync message" in str(info.value)


def test_a_crm_base_url_without_a_crm_api_token_is_a_problem() -> None:
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert load_settings(values).crm_api_token
    without = {k: v for k, v in values.items() if k != "CRM_API_TOKEN"}
    for missing in (without, values | {"CRM_API_TOKEN": ""}):
        with pytest.raises(ConfigurationError) as info:
            load_settings(missing)
        assert [p for p in info.value.problems if p.startswith("CRM_API_TOKEN")], info.value.problems
