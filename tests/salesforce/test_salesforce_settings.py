"""CRM_CONNECTOR=salesforce: validated with every other setting, and the composition root builds it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sync_core.adapters.crm.salesforce import EMULATOR_CLIENT_ID, SalesforceConnector
from sync_core.bootstrap import crm_connector
from sync_core.errors import ConfigurationError
from sync_core.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def _sample() -> dict[str, str]:
    values: dict[str, str] = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    return values


def test_salesforce_problems_are_listed_with_every_other_problem() -> None:
    values = {k: v for k, v in _sample().items() if k != "PUBLIC_BASE_URL"}
    values |= {
        "CRM_CONNECTOR": "salesforce",
        "SALESFORCE_API_VERSION": "62",
        "SALESFORCE_EXTERNAL_ID_FIELD": "Key",
        "SALESFORCE_ORG_ID": "001x",
        "SALESFORCE_FIELD_PROFILE": "practifi",
    }
    with pytest.raises(ConfigurationError) as caught:
        load_settings(values)
    problems = caught.value.problems
    for name in (
        "SALESFORCE_INSTANCE_URL: required",
        "SALESFORCE_CLIENT_ID",
        "SALESFORCE_CLIENT_SECRET",
        "SALESFORCE_API_VERSION",
        "SALESFORCE_EXTERNAL_ID_FIELD",
        "SALESFORCE_ORG_ID",
        "SALESFORCE_CONTACT_EMAIL_FIELDS: required with SALESFORCE_FIELD_PROFILE=practifi",
        "PUBLIC_BASE_URL",
    ):
        assert any(p.startswith(name) for p in problems), (name, problems)
    assert not any(p.startswith("CRM_BASE_URL") for p in problems)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"SALESFORCE_INSTANCE_URL": "http://contoso.my.salesforce.com"}, "SALESFORCE_INSTANCE_URL"),
        ({"SALESFORCE_AUTH_MODE": "password"}, "SALESFORCE_AUTH_MODE"),
        (
            {
                "SALESFORCE_INSTANCE_URL": "https://contoso.my.salesforce.com",
                "SALESFORCE_AUTH_MODE": "emulator",
            },
            "SALESFORCE_AUTH_MODE=emulator",
        ),
        ({"SALESFORCE_FIELD_PROFILE": "hubspot"}, "SALESFORCE_FIELD_PROFILE"),
        ({"SALESFORCE_CONTACT_EMAIL_FIELDS": "Email,Other Email"}, "SALESFORCE_CONTACT_EMAIL_FIELDS"),
    ],
)
def test_a_wrong_salesforce_setting_is_named(changes: dict[str, str], problem: str) -> None:
    values = _sample() | {
        "CRM_CONNECTOR": "salesforce",
        "SALESFORCE_INSTANCE_URL": "http://127.0.0.1:7083",
        "SALESFORCE_AUTH_MODE": "emulator",
    }
    with pytest.raises(ConfigurationError) as caught:
        load_settings(values | changes)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


async def test_the_composition_root_builds_the_salesforce_connector() -> None:
    values = _sample() | {
        "CRM_CONNECTOR": "Salesforce",
        "SALESFORCE_INSTANCE_URL": "http://127.0.0.1:7083",
        "SALESFORCE_AUTH_MODE": "emulator",
        "SALESFORCE_EXTERNAL_ID_FIELD": "msync_Key__c",
        "SALESFORCE_ORG_ID": "00D000000000001EAA",
        "SALESFORCE_FIELD_PROFILE": "practifi",
        "SALESFORCE_CONTACT_EMAIL_FIELDS": "Alt_Email__c",
    }
    connector, caps = crm_connector(load_settings(values))
    assert isinstance(connector, SalesforceConnector)
    assert caps.connector == "salesforce" and caps.cursor_ttl_days == 15 and caps.recurrence == "native"
    assert connector.profile.external_id and connector.profile.create_key_field == "msync_Key__c"
    assert connector.profile.contact_email_fields == ("Email", "Alt_Email__c")
    assert connector._session._id == EMULATOR_CLIENT_ID
    await connector.aclose()


def test_client_credentials_need_the_id_and_the_secret_and_nothing_of_the_rest_contract() -> None:
    values = {k: v for k, v in _sample().items() if not k.startswith("CRM_") or k == "CRM_WEBHOOK_SECRETS"}
    values |= {
        "CRM_CONNECTOR": "salesforce",
        "SALESFORCE_INSTANCE_URL": "https://contoso.my.salesforce.com",
        "SALESFORCE_CLIENT_ID": "3MVG9...",
        "SALESFORCE_CLIENT_SECRET": "secret",
    }
    assert load_settings(values).salesforce_api_version == "v62.0"
