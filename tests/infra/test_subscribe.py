"""infra/subscribe.py reads the deployed app's settings the way the app sees them, with the admin's access."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from types import ModuleType

import pytest
from bicep_reader import INFRA

VAULT = "https://kv-calsync-x.vault.azure.net/secrets"


@pytest.fixture(scope="module")
def subscribe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("infra_subscribe", INFRA / "subscribe.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_az(calls: list[list[str]]) -> Callable[[list[str]], str]:
    secrets = {
        f"{VAULT}/graph-client-secret": "s3cret",
        f"{VAULT}/webhook-function-key": "graph-key",
        f"{VAULT}/crm-function-key": "crm-key",
    }
    settings = [
        {
            "name": "WEBHOOK_FUNCTION_KEY",
            "value": f"@Microsoft.KeyVault(SecretUri={VAULT}/webhook-function-key)",
        },
        {"name": "GRAPH_CLIENT_ID", "value": "client"},
        {"name": "CRM_API_TOKEN", "value": f"@Microsoft.KeyVault(SecretUri={VAULT}/crm-api-token)"},
        {
            "name": "GRAPH_CLIENT_SECRET",
            "value": f"@Microsoft.KeyVault(SecretUri={VAULT}/graph-client-secret)",
        },
        {"name": "AzureWebJobsStorage__credential", "value": "managedidentity"},
        {"name": "AzureWebJobsStorage__clientId", "value": "identity-client"},
        {"name": "AzureWebJobsStorage__tableServiceUri", "value": "https://st.table.core.windows.net/"},
        {"name": "SYNC_POLICY", "value": None},
    ]

    def run(args: list[str]) -> str:
        calls.append(args)
        if args[:3] == ["functionapp", "config", "appsettings"]:
            return json.dumps(settings)
        if args[:3] == ["keyvault", "secret", "show"]:
            return json.dumps({"value": secrets[args[args.index("--id") + 1]]})
        if args[:4] == ["functionapp", "function", "keys", "set"]:
            return "{}"
        raise AssertionError(f"unexpected az {args}")

    return run


def test_only_the_secrets_subscribing_uses_are_read_and_azure_only_identity_settings_dropped(
    subscribe: ModuleType,
) -> None:
    calls: list[list[str]] = []
    env = subscribe.app_environment("rg", "app", run=fake_az(calls))
    stand_in = env.pop("CRM_API_TOKEN")
    assert len(stand_in) == 64 and stand_in != "token-1", "a random stand-in, never read from the vault"
    assert env == {
        "WEBHOOK_FUNCTION_KEY": "graph-key",
        "CRM_FUNCTION_KEY": "crm-key",
        "GRAPH_CLIENT_ID": "client",
        "GRAPH_CLIENT_SECRET": "s3cret",
        "AzureWebJobsStorage__tableServiceUri": "https://st.table.core.windows.net/",
        "SYNC_POLICY": "",
    }
    assert calls[0] == ["functionapp", "config", "appsettings", "list", "-g", "rg", "-n", "app"]
    read = {c[c.index("--id") + 1].rsplit("/", 1)[1] for c in calls if c[:2] == ["keyvault", "secret"]}
    assert read == {"graph-client-secret", "webhook-function-key", "crm-function-key"}


def test_each_front_door_gets_its_own_function_key_and_ops_none(subscribe: ModuleType) -> None:
    calls: list[list[str]] = []
    run = fake_az(calls)
    subscribe.set_function_keys("rg", "app", subscribe.app_environment("rg", "app", run=run), run=run)
    keys = {
        c[c.index("--function-name") + 1]: (c[c.index("--key-name") + 1], c[c.index("--key-value") + 1])
        for c in calls
        if c[:4] == ["functionapp", "function", "keys", "set"]
    }
    assert keys == {
        "graph_notifications": ("graph", "graph-key"),
        "graph_lifecycle": ("graph", "graph-key"),
        "crm_webhook": ("crm", "crm-key"),
        "dataverse_webhook": ("crm", "crm-key"),
        "salesforce_webhook": ("crm", "crm-key"),
    }
    assert not [c for c in calls if c[:3] == ["functionapp", "keys", "set"]], "no host key"


def test_the_function_names_are_the_ones_the_host_indexes(subscribe: ModuleType) -> None:
    from tests.conftest import app_functions

    functions = {f.get_function_name(): f for f in app_functions()}
    routes = {name: f.get_trigger().route for name, f in functions.items() if name in subscribe.FUNCTION_KEYS}
    assert routes == {
        "graph_notifications": "graph/notifications",
        "graph_lifecycle": "graph/lifecycle",
        "crm_webhook": "crm/webhook",
        "dataverse_webhook": "crm/dataverse/webhook",
        "salesforce_webhook": "crm/salesforce/webhook",
    }


def test_a_missing_key_stops_before_any_key_is_set(subscribe: ModuleType) -> None:
    calls: list[list[str]] = []
    with pytest.raises(SystemExit, match="CRM_FUNCTION_KEY"):
        subscribe.set_function_keys("rg", "app", {"WEBHOOK_FUNCTION_KEY": "k"}, run=fake_az(calls))
    assert calls == []
