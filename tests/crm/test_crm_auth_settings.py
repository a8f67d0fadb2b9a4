"""CRM_AUTH_SCHEME and CRM_API_KEY_HEADER: validated with every other setting, and the connector the app
builds from them (`RestCrmConnector.from_settings`, what bootstrap.Container uses) authenticates to a CRM
emulator that accepts only that scheme's header."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack.crm_emulator import CrmEmulator
from sync_core.adapters.crm.rest import RestCrmConnector
from sync_core.errors import ConfigurationError, PermissionError_
from sync_core.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLE: dict[str, str] = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]


def settings_for(crm: CrmEmulator, **values: str) -> Settings:
    return load_settings(SAMPLE | {"CRM_BASE_URL": crm.base_url, "CRM_API_TOKEN": crm.token} | values)


def problems(values: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(values)
    return caught.value.problems


def test_the_default_scheme_is_bearer_with_the_x_api_key_header() -> None:
    settings = load_settings(SAMPLE)
    assert (settings.crm_auth_scheme, settings.crm_api_key_header) == ("bearer", "X-Api-Key")
    assert not settings.crm_uses_api_key


def test_an_unknown_scheme_is_listed_with_every_other_problem() -> None:
    found = problems({"CRM_AUTH_SCHEME": "basic"})
    assert [p for p in found if p.startswith("CRM_AUTH_SCHEME") and "bearer, api_key" in p], found
    assert [p for p in found if p.startswith("CRM_BASE_URL")], found  # not the first problem alone
    assert [p for p in found if p.startswith("PUBLIC_BASE_URL")], found


@pytest.mark.parametrize("header", ["", "X Api Key", "X-Api-Key:", "Schlüssel", "X-Api-Key\r\nHost: evil"])
def test_an_api_key_header_that_is_no_http_header_name_is_a_problem(header: str) -> None:
    found = problems(SAMPLE | {"CRM_AUTH_SCHEME": "api_key", "CRM_API_KEY_HEADER": header})
    assert [p for p in found if p.startswith("CRM_API_KEY_HEADER")] and len(found) == 1, found


def test_the_header_is_not_checked_when_the_scheme_does_not_use_it() -> None:
    assert load_settings(SAMPLE | {"CRM_API_KEY_HEADER": "not used"}).crm_auth_scheme == "bearer"


def test_the_scheme_is_read_case_insensitively() -> None:
    assert load_settings(SAMPLE | {"CRM_AUTH_SCHEME": " API_KEY "}).crm_uses_api_key


def test_the_connector_refuses_an_api_key_header_that_is_no_header_name() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RestCrmConnector("https://crm.test", api_key="k", api_key_header="X Api Key")
    assert "X Api Key" in caught.value.problems[0]


async def test_api_key_scheme_sends_the_token_in_the_configured_header_only() -> None:
    with CrmEmulator(token="the-key", api_key_header="X-Crm-Key") as crm:
        settings = settings_for(crm, CRM_AUTH_SCHEME="api_key", CRM_API_KEY_HEADER="X-Crm-Key")
        async with RestCrmConnector.from_settings(settings) as conn:
            assert await conn.list_spaces() == []
        sent = crm.requests[-1]
        assert (sent.status, sent.headers.get("X-Crm-Key")) == (200, "the-key")
        assert "Authorization" not in sent.headers and "X-Api-Key" not in sent.headers
        # The same key in the default header is not what this CRM accepts.
        async with RestCrmConnector.from_settings(settings_for(crm, CRM_AUTH_SCHEME="api_key")) as default:
            with pytest.raises(PermissionError_):
                await default.list_spaces()
        assert crm.requests[-1].headers.get("X-Api-Key") == "the-key"


async def test_bearer_scheme_sends_the_token_as_a_bearer_only(crm: CrmEmulator) -> None:
    async with RestCrmConnector.from_settings(settings_for(crm, CRM_AUTH_SCHEME="bearer")) as conn:
        assert await conn.list_users() == []
    sent = crm.requests[-1]
    assert sent.headers.get("Authorization") == f"Bearer {crm.token}"
    assert "X-Api-Key" not in sent.headers
