"""CRM_CONNECTOR: validated with every other setting, and the composition root builds what it names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sync_core.adapters.crm.dataverse import DataverseConnector
from sync_core.adapters.crm.rest import RestCrmConnector
from sync_core.bootstrap import crm_connector
from sync_core.errors import ConfigurationError
from sync_core.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def _sample() -> dict[str, str]:
    values: dict[str, str] = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    return values


def test_the_default_connector_is_rest_and_needs_the_crm_base_url() -> None:
    settings = load_settings(_sample())
    assert settings.crm_connector_name == "rest"
    values = {k: v for k, v in _sample().items() if k != "CRM_BASE_URL"}
    with pytest.raises(ConfigurationError) as caught:
        load_settings(values)
    assert any(p.startswith("CRM_BASE_URL") for p in caught.value.problems)


def test_dataverse_problems_are_listed_with_every_other_problem() -> None:
    values = {k: v for k, v in _sample().items() if k != "PUBLIC_BASE_URL"}
    values |= {"CRM_CONNECTOR": "dataverse", "DATAVERSE_AUTH_MODE": "password"}
    with pytest.raises(ConfigurationError) as caught:
        load_settings(values)
    problems = caught.value.problems
    assert any(p.startswith("DATAVERSE_URL: required") for p in problems)
    assert any(p.startswith("DATAVERSE_AUTH_MODE") for p in problems)
    assert any(p.startswith("PUBLIC_BASE_URL") for p in problems)
    assert not any(p.startswith("CRM_BASE_URL") for p in problems)  # the REST settings are not asked for


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"CRM_CONNECTOR": "siebel"}, "CRM_CONNECTOR"),
        ({"CRM_CONNECTOR": "dataverse", "DATAVERSE_URL": "http://contoso.crm.dynamics.com"}, "DATAVERSE_URL"),
        (
            {"CRM_CONNECTOR": "dataverse", "DATAVERSE_URL": "https://contoso.crm.dynamics.com"},
            "DATAVERSE_AUTH_MODE=app",
        ),
    ],
)
def test_a_wrong_dataverse_setting_is_named(changes: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(_sample() | changes)  # the sample runs Graph against the emulator: no app credentials
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


async def test_the_composition_root_builds_the_connector_the_setting_names() -> None:
    rest, rest_caps = crm_connector(load_settings(_sample()))
    assert isinstance(rest, RestCrmConnector) and rest_caps.recurrence == "native"
    await rest.aclose()
    values = _sample() | {
        "CRM_CONNECTOR": "Dataverse",
        "DATAVERSE_URL": "http://127.0.0.1:7071",
        "DATAVERSE_AUTH_MODE": "emulator",
    }
    dataverse, caps = crm_connector(load_settings(values))
    assert isinstance(dataverse, DataverseConnector)
    assert caps.describe()["recurrence"] == "native" and caps.cursor_ttl_days == 7
    await dataverse.aclose()
