"""No key, password or secret-bearing connection string in infra/; secret parameters have no defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bicep_reader import INFRA, BicepFile, bicep_files, bicepparam_files, load, text

# Text that only a credential contains, or a call that reads one out of a resource.
CREDENTIAL_PATTERNS = {
    "storage account key": re.compile(r"AccountKey\s*=", re.IGNORECASE),
    "SAS token": re.compile(r"SharedAccessSignature|[?&]sig=|\bsv=\d{4}-\d{2}-\d{2}&", re.IGNORECASE),
    "Service Bus / Event Hubs key": re.compile(r"SharedAccessKey\s*=", re.IGNORECASE),
    "storage connection string": re.compile(r"DefaultEndpointsProtocol\s*=", re.IGNORECASE),
    "instrumentation key literal": re.compile(r"InstrumentationKey\s*=\s*[0-9a-f]{8}", re.IGNORECASE),
    "listKeys()": re.compile(
        r"\blist(Keys|AccountSas|ServiceSas|ConnectionStrings|Secrets)\s*\(", re.IGNORECASE
    ),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "password literal": re.compile(r"password\s*[:=]\s*'[^']+'", re.IGNORECASE),
}

# Parameter names that hold secrets (and are not booleans, URIs or names of secrets).
_SECRET_NAME = re.compile(r"(secret|secrets|password|token|functionkey|apikey)$", re.IGNORECASE)


def _id(path: Path) -> str:
    return str(path.relative_to(INFRA))


def secret_params(bicep: BicepFile) -> dict[str, bool]:
    """Secret-looking parameter name -> whether it is declared @secure()."""
    return {
        name: "secure()" in decl.decorators
        for name, decl in bicep.params().items()
        if _SECRET_NAME.search(name) and decl.type_name == "string"
    }


@pytest.mark.parametrize("path", bicep_files() + bicepparam_files(), ids=_id)
def test_file_holds_no_credential(path: Path) -> None:
    source = path.read_text()
    found = [what for what, pattern in CREDENTIAL_PATTERNS.items() if pattern.search(source)]
    assert not found, f"{path.name}: {found}"


@pytest.mark.parametrize("path", bicep_files(), ids=_id)
def test_secret_parameters_are_secure_and_have_no_default(path: Path) -> None:
    bicep = load(path)
    for name, secure in secret_params(bicep).items():
        assert secure, f"{path.name}: parameter {name} holds a secret but is not @secure()"
    for name, decl in bicep.params().items():
        if "secure()" in decl.decorators:
            assert decl.value is None, f"{path.name}: secure parameter {name} has a default"


@pytest.mark.parametrize("path", bicep_files(), ids=_id)
def test_no_output_carries_a_secure_parameter(path: Path) -> None:
    bicep = load(path)
    secure = {name for name, decl in bicep.params().items() if "secure()" in decl.decorators}
    for name, decl in bicep.outputs().items():
        words = set(re.findall(r"\w+", text(decl.node)))
        assert not words & secure, f"{path.name}: output {name} exposes {words & secure}"


def test_main_declares_the_six_secrets_secure(main_bicep: BicepFile) -> None:
    assert secret_params(main_bicep) == {
        "graphClientSecret": True,
        "crmApiToken": True,
        "crmWebhookSecrets": True,
        "eventTagSecrets": True,
        "webhookFunctionKey": True,
        "crmFunctionKey": True,
    }


def test_parameters_file_reads_secrets_from_the_environment_only(
    main_bicep: BicepFile, main_params: BicepFile
) -> None:
    secure = {name for name, decl in main_bicep.params().items() if "secure()" in decl.decorators}
    assigned = main_params.params()
    for name in secure & set(assigned):
        value = assigned[name].value
        assert value is not None
        assert re.fullmatch(r"readEnvironmentVariable\('[A-Z_]+', ''\)", text(value)), (
            f"main.bicepparam assigns {name} a value instead of reading it from the environment"
        )
