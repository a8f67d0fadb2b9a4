"""The template's app settings and the settings sync_core reads are the same names (sync_core/settings.py).

A setting the code reads is either set by infra/modules/functionapp.bicep or listed as optional in
docs/deploy.md; the template sets nothing the code does not read, apart from the platform settings below.
"""

from __future__ import annotations

import re

import pytest
from bicep_reader import BicepFile, descendants, key_of, properties, text

from sync_core.adapters.graph import limits
from sync_core.settings import Settings

# Read by the Functions host, not by sync_core (identity-based host storage, telemetry with Entra ID auth).
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}

# Not supported on Flex Consumption (learn.microsoft.com, functions-app-settings, "Flex Consumption plan
# deprecations"): the runtime comes from functionAppConfig, and the package from the deployment container.
FLEX_DEPRECATED = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_NODE_DEFAULT_VERSION",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
}

SECRET_SETTINGS = {"GRAPH_CLIENT_SECRET", "CRM_API_TOKEN", "CRM_WEBHOOK_SECRETS", "WEBHOOK_FUNCTION_KEY"}


def code_settings() -> set[str]:
    """Every app-setting name Settings reads: the alias of each field."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None) or [alias]
        names.update(str(choice) for choice in choices if choice)
    return names | {limits.CONCURRENCY_SETTING}  # read by the Graph limiter of each process


def template_settings(bicep: BicepFile) -> dict[str, str]:
    """Setting name -> value expression, over the appSettings* variables merged into sites/config."""
    found: dict[str, str] = {}
    for decl in bicep.declarations():
        if (
            decl.kind == "variable_declaration"
            and decl.name.startswith("appSettings")
            and decl.value is not None
        ):
            for obj in [decl.value, *descendants(decl.value, "object")]:
                for prop in properties(obj):
                    found[key_of(prop)] = text(prop.named_children[-1])
    return found


def optional_in_docs(doc: str) -> set[str]:
    """Names in the rows of docs/deploy.md's settings table whose second cell says 'optional'."""
    rows = re.findall(r"^\|\s*`([A-Za-z0-9_]+)`\s*\|\s*([^|]*)\|", doc, re.MULTILINE)
    return {name for name, where in rows if where.strip().lower().startswith("optional")}


def test_settings_model_lists_the_names_the_readme_documents() -> None:
    assert {
        "GRAPH_CLIENT_ID",
        "PUBLIC_BASE_URL",
        "CRM_WEBHOOK_SECRETS",
        "AzureWebJobsStorage",
    } <= code_settings()


def test_every_setting_the_code_reads_is_set_by_the_template_or_documented_as_optional(
    function_app_bicep: BicepFile, deploy_doc: str
) -> None:
    set_by_template = set(template_settings(function_app_bicep))
    optional = optional_in_docs(deploy_doc)
    missing = code_settings() - set_by_template - optional
    assert not missing, f"neither set in infra/ nor listed as optional in docs/deploy.md: {sorted(missing)}"


def test_settings_documented_as_optional_are_ones_the_code_reads(deploy_doc: str) -> None:
    assert optional_in_docs(deploy_doc), "docs/deploy.md has no settings table"
    assert optional_in_docs(deploy_doc) <= code_settings()


def test_template_sets_no_setting_the_code_or_the_platform_does_not_read(
    function_app_bicep: BicepFile,
) -> None:
    unknown = set(template_settings(function_app_bicep)) - code_settings() - PLATFORM_SETTINGS
    assert not unknown, f"set by infra/ but read by nobody: {sorted(unknown)}"


def test_template_sets_no_setting_flex_consumption_deprecates(function_app_bicep: BicepFile) -> None:
    assert not set(template_settings(function_app_bicep)) & (FLEX_DEPRECATED | {"AzureWebJobsStorage"})


def test_host_storage_is_identity_based(function_app_bicep: BicepFile) -> None:
    settings = template_settings(function_app_bicep)
    assert settings["AzureWebJobsStorage__credential"] == "'managedidentity'"
    assert "AzureWebJobsStorage" not in settings  # no connection string, hence no key


@pytest.mark.parametrize("name", sorted(SECRET_SETTINGS))
def test_secret_setting_is_a_key_vault_reference(function_app_bicep: BicepFile, name: str) -> None:
    value = template_settings(function_app_bicep)[name]
    assert value.startswith("'@Microsoft.KeyVault(SecretUri=${") and value.endswith("})'"), value


def test_public_base_url_is_the_apps_https_host_name(function_app_bicep: BicepFile) -> None:
    assert template_settings(function_app_bicep)["PUBLIC_BASE_URL"] == "publicBaseUrl"
    assert text(function_app_bicep.var("publicBaseUrl")) == "'https://${site.properties.defaultHostName}'"
