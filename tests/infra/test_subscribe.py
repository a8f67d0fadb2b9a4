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
    secrets = {f"{VAULT}/crm-api-token": "token-1", f"{VAULT}/graph-client-secret": "s3cret"}
    settings = [
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
        raise AssertionError(f"unexpected az {args}")

    return run


def test_key_vault_references_are_resolved_and_azure_only_identity_settings_dropped(
    subscribe: ModuleType,
) -> None:
    calls: list[list[str]] = []
    env = subscribe.app_environment("rg", "app", run=fake_az(calls))
    assert env == {
        "GRAPH_CLIENT_ID": "client",
        "CRM_API_TOKEN": "token-1",
        "GRAPH_CLIENT_SECRET": "s3cret",
        "AzureWebJobsStorage__tableServiceUri": "https://st.table.core.windows.net/",
        "SYNC_POLICY": "",
    }
    assert calls[0] == ["functionapp", "config", "appsettings", "list", "-g", "rg", "-n", "app"]
    assert sum(c[:2] == ["keyvault", "secret"] for c in calls) == 2
