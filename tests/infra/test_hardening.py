"""Infra defaults hardened (issue 15, item 9): HTTPS only, TLS 1.2 at least, no FTP(S), no basic-auth
publishing, no shared-key access to storage."""

from __future__ import annotations

import re
from pathlib import Path

INFRA = Path(__file__).resolve().parents[2] / "infra"


def _text(name: str) -> str:
    return (INFRA / "modules" / name).read_text(encoding="utf-8")


def test_the_function_app_takes_https_only_with_tls_1_2_and_no_ftp() -> None:
    app = _text("functionapp.bicep")
    for line in (
        "httpsOnly: true",
        "minTlsVersion: '1.2'",
        "scmMinTlsVersion: '1.2'",
        "ftpsState: 'Disabled'",
    ):
        assert line in app, line


def test_basic_auth_publishing_is_off_for_ftp_and_scm() -> None:
    app = _text("functionapp.bicep")
    policies = app.split("basicPublishingCredentialsPolicies@")[1:]
    names = {p.split("name: '")[1].split("'")[0] for p in policies}
    assert names == {"ftp", "scm"} and all("allow: false" in p.split("}")[0] + p for p in policies)


def test_storage_refuses_shared_keys() -> None:
    assert "allowSharedKeyAccess: false" in _text("storage.bicep")


# -- Key Vault: per-secret RBAC, no vault-wide reader; one function key per front door ------------------

_SECRET_ROLE = "roles.keyVaultSecretsUser"


def _assignments(source: str) -> list[str]:
    """The text of each role-assignment resource declaration in a module."""
    parts = source.split("resource ")[1:]
    return ["resource " + p for p in parts if "'Microsoft.Authorization/roleAssignments@" in p.split("\n")[0]]


def _names_output(output: str) -> set[str]:
    """Secret names behind a keyvault.bicep array output (entries referenced by their symbolic names)."""
    keyvault = _text("keyvault.bicep")
    body = keyvault.split(f"output {output} array =")[1].split("\noutput ")[0]
    symbols = set(re.findall(r"(\w+Entry)\.name", body)) | (
        {"graphClientSecretEntry"} if "graphSecretNames" in body else set()
    )
    names = {}
    for symbol in symbols:
        block = keyvault.split(f"resource {symbol} ")[1]
        names[symbol] = re.search(r"\n  name: '([a-z-]+)'", block).group(1)  # type: ignore[union-attr]
    return set(names.values())


def test_no_role_assignment_is_scoped_to_the_whole_vault() -> None:
    for path in (INFRA / "modules").glob("*.bicep"):
        for assignment in _assignments(path.read_text()):
            assert "scope: vault\n" not in assignment, f"{path.name}: a role on the whole vault"


def test_every_secret_reader_role_is_scoped_to_one_secret() -> None:
    roles = _text("roles.bicep")
    readers = [a for a in _assignments(roles) if _SECRET_ROLE in a]
    assert len(readers) == 2, "one loop for the app's secrets, one for the operator's"
    for reader in readers:
        scope = re.search(r"scope: (\w+)\[i\]", reader)
        assert scope, reader
        existing = roles.split(f"resource {scope.group(1)} ")[1].split("\n")[0]
        assert existing.startswith("'Microsoft.KeyVault/vaults/secrets@") and "existing" in existing


def test_the_app_reads_its_five_secrets_and_the_operator_only_what_subscribe_needs() -> None:
    app = _names_output("appSecretNames")
    operator = _names_output("operatorSecretNames")
    assert app == {
        "graph-client-secret",
        "crm-api-token",
        "crm-webhook-secrets",
        "event-tag-secrets",
        "webhook-function-key",
    }
    assert operator == {"graph-client-secret", "webhook-function-key", "crm-function-key"}
    subscribe = (INFRA / "subscribe.py").read_text()
    assert 'RESOLVED = ("GRAPH_CLIENT_SECRET", "WEBHOOK_FUNCTION_KEY")' in subscribe
    assert 'CRM_KEY_SECRET = "crm-function-key"' in subscribe
    roles = _text("roles.bicep")
    assert "for secretName in appSecretNames" in roles
    assert "empty(operatorPrincipalId) ? [] : operatorSecretNames" in roles


def test_no_host_key_opens_every_function() -> None:
    for path in INFRA.rglob("*.bicep"):
        assert "sites/host/functionKeys" not in path.read_text(), path.name


def test_the_vaults_public_endpoint_is_a_parameter_documented_with_the_private_endpoint_option() -> None:
    assert "publicNetworkAccess: publicNetworkAccess" in _text("keyvault.bicep")
    security = (INFRA.parent / "docs" / "security.md").read_text()
    network = security[security.index("## Network") :]
    assert "private endpoint" in network and "publicNetworkAccess" in network
