"""Application settings: one validated model, loaded once from the environment (Functions app settings). I/O
side.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from sync_core.errors import ConfigurationError

GRAPH_PUBLIC_BASE_URL = "https://graph.microsoft.com/v1.0"
EMULATOR_TAG_SECRET = "emulator-only-event-tag-secret-not-for-production"
CRM_AUTH_SCHEMES = ("bearer", "api_key")
CRM_CONNECTORS = ("rest", "dataverse", "salesforce")
DATAVERSE_AUTH_MODES = ("app", "emulator")
SALESFORCE_AUTH_MODES = ("client_credentials", "emulator")
SALESFORCE_FIELD_PROFILES = ("standard", "practifi")
SALESFORCE_CANCELS = ("status", "delete")
# Our statuses (sync_core.domain.model.Status, which this layer cannot import; a test keeps them equal).
STATUSES = ("prospect", "tentative", "hold", "confirmed", "cancelled")
SALESFORCE_STATUS_FIELD = "msync_Status__c"
# The appointment's statecode and its statuscode values (the appointment entity reference): Open 0 (Free 1,
# Tentative 2), Completed 1 (Completed 3), Canceled 2 (Canceled 4), Scheduled 3 (Busy 5, Out of Office 6).
# A tenant's own statuscode values (its publisher's option values) belong to the statecode they are added to,
# which only the org's metadata says: any value but these six is taken as the tenant's.
DATAVERSE_STATUSCODES = {0: (1, 2), 1: (3,), 2: (4,), 3: (5, 6)}
DEFAULT_DATAVERSE_STATUS_MAP: dict[str, tuple[tuple[int, int], ...]] = {
    "prospect": ((0, 1),),
    "hold": ((0, 1),),
    "tentative": ((0, 2),),
    "confirmed": ((3, 5), (3, 6), (1, 3)),
    "cancelled": ((2, 4),),
}
_SALESFORCE_API_VERSION = re.compile(r"v\d{2,3}\.0")
_SALESFORCE_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_]*__c")  # a custom field's API name
_SALESFORCE_ORG_ID = re.compile(r"00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 9110 token


def is_header_name(name: str) -> bool:
    """True for a valid HTTP field name (RFC 9110 5.1: a token)."""
    return bool(_HEADER_NAME.fullmatch(name))


def _alias(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    """Every setting the app reads. Field aliases are the app-setting names."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", populate_by_name=False)

    # Storage: a connection string (Azurite, local) or identity-based service URIs (Azure).
    storage_connection_string: str | None = Field(None, validation_alias=_alias("AzureWebJobsStorage"))
    storage_queue_uri: str | None = Field(
        None, validation_alias=_alias("AzureWebJobsStorage__queueServiceUri")
    )
    storage_table_uri: str | None = Field(
        None, validation_alias=_alias("AzureWebJobsStorage__tableServiceUri")
    )
    storage_credential: str | None = Field(None, validation_alias=_alias("AzureWebJobsStorage__credential"))
    storage_client_id: str | None = Field(None, validation_alias=_alias("AzureWebJobsStorage__clientId"))

    # Microsoft Graph.
    graph_base_url: str = Field(GRAPH_PUBLIC_BASE_URL, validation_alias=_alias("GRAPH_BASE_URL"))
    graph_auth_mode: Literal["client_secret", "certificate", "managed_identity", "emulator"] = Field(
        "client_secret", validation_alias=_alias("GRAPH_AUTH_MODE")
    )
    graph_tenant_id: str | None = Field(None, validation_alias=_alias("GRAPH_TENANT_ID"))
    graph_client_id: str | None = Field(None, validation_alias=_alias("GRAPH_CLIENT_ID"))
    graph_client_secret: str | None = Field(None, validation_alias=_alias("GRAPH_CLIENT_SECRET"))
    graph_certificate_path: str | None = Field(None, validation_alias=_alias("GRAPH_CERTIFICATE_PATH"))
    graph_managed_identity_client_id: str | None = Field(
        None, validation_alias=_alias("GRAPH_MANAGED_IDENTITY_CLIENT_ID")
    )

    # Where Graph and the CRM reach us.
    public_base_url: str | None = Field(None, validation_alias=_alias("PUBLIC_BASE_URL"))
    webhook_function_key: str | None = Field(None, validation_alias=_alias("WEBHOOK_FUNCTION_KEY"))

    # CRM: which connector (`rest`: our contract, `dataverse`: Dynamics 365 / Dataverse Web API).
    crm_connector: str = Field("rest", validation_alias=_alias("CRM_CONNECTOR"))
    dataverse_url: str | None = Field(None, validation_alias=_alias("DATAVERSE_URL"))
    # `app`: the app registration's client credentials (as GRAPH_AUTH_MODE); `emulator`: a static token.
    dataverse_auth_mode: str = Field("app", validation_alias=_alias("DATAVERSE_AUTH_MODE"))
    # Salesforce (docs/connectors/salesforce.md): the org's My Domain URL, an External Client App's
    # client credentials.
    salesforce_instance_url: str | None = Field(None, validation_alias=_alias("SALESFORCE_INSTANCE_URL"))
    salesforce_auth_mode: str = Field("client_credentials", validation_alias=_alias("SALESFORCE_AUTH_MODE"))
    salesforce_client_id: str | None = Field(None, validation_alias=_alias("SALESFORCE_CLIENT_ID"))
    salesforce_client_secret: str | None = Field(None, validation_alias=_alias("SALESFORCE_CLIENT_SECRET"))
    salesforce_api_version: str = Field("v62.0", validation_alias=_alias("SALESFORCE_API_VERSION"))
    salesforce_external_id_field: str | None = Field(
        None, validation_alias=_alias("SALESFORCE_EXTERNAL_ID_FIELD")
    )
    salesforce_org_id: str | None = Field(None, validation_alias=_alias("SALESFORCE_ORG_ID"))
    salesforce_field_profile: str = Field("standard", validation_alias=_alias("SALESFORCE_FIELD_PROFILE"))
    salesforce_contact_email_fields: str | None = Field(
        None, validation_alias=_alias("SALESFORCE_CONTACT_EMAIL_FIELDS")
    )
    # How a cancel is held (`status`: the status field's cancelled value; `delete`: the Event is deleted, to
    # the Recycle Bin), the status field, and which of its picklist values are which of our statuses (JSON).
    salesforce_cancel: str = Field("status", validation_alias=_alias("SALESFORCE_CANCEL"))
    salesforce_status_field: str = Field(
        SALESFORCE_STATUS_FIELD, validation_alias=_alias("SALESFORCE_STATUS_FIELD")
    )
    salesforce_status_map: str | None = Field(None, validation_alias=_alias("SALESFORCE_STATUS_MAP"))
    # Our status -> [statecode, statuscode] (or a list of pairs: the first is written), JSON.
    dataverse_status_map: str | None = Field(None, validation_alias=_alias("DATAVERSE_STATUS_MAP"))
    crm_base_url: str | None = Field(None, validation_alias=_alias("CRM_BASE_URL"))
    crm_api_token: str | None = Field(None, validation_alias=_alias("CRM_API_TOKEN"))
    # How CRM_API_TOKEN is sent: `bearer` (Authorization: Bearer) or `api_key` (in CRM_API_KEY_HEADER).
    # Plain strings, checked in problems(), so a wrong value is listed with every other problem.
    crm_auth_scheme: str = Field("bearer", validation_alias=_alias("CRM_AUTH_SCHEME"))
    crm_api_key_header: str = Field("X-Api-Key", validation_alias=_alias("CRM_API_KEY_HEADER"))
    crm_webhook_secrets: str | None = Field(None, validation_alias=_alias("CRM_WEBHOOK_SECRETS"))

    # The MAC keys of the tag we put on the events we write (current first, then the one being retired).
    event_tag_secrets: str | None = Field(None, validation_alias=_alias("EVENT_TAG_SECRETS"))

    # Sync policy: inline JSON or a file path (JSON).
    sync_policy: str | None = Field(None, validation_alias=_alias("SYNC_POLICY"))
    sync_policy_file: str | None = Field(None, validation_alias=_alias("SYNC_POLICY_FILE"))

    @property
    def crm_secrets(self) -> list[str]:
        return _listed(self.crm_webhook_secrets)

    @property
    def tag_secrets(self) -> list[str]:
        """EVENT_TAG_SECRETS, current first; against the Graph emulator a fixed development key when unset."""
        secrets = _listed(self.event_tag_secrets)
        if not secrets and self.graph_auth_mode == "emulator":
            return [EMULATOR_TAG_SECRET]
        return secrets

    @property
    def crm_uses_api_key(self) -> bool:
        """CRM_AUTH_SCHEME=api_key: CRM_API_TOKEN goes in the CRM_API_KEY_HEADER header, not as a bearer."""
        return self.crm_auth_scheme.strip().lower() == "api_key"

    def notification_url(self, route: str) -> str:
        """The public URL of one of our webhook routes, with the function key Graph will pass back."""
        base = (self.public_base_url or "").rstrip("/")
        url = f"{base}/api/{route}"
        return f"{url}?code={self.webhook_function_key}" if self.webhook_function_key else url

    def problems(self) -> list[str]:
        """Cross-setting checks; each problem names the settings involved."""
        out: list[str] = []
        if not self.storage_connection_string and not (self.storage_queue_uri and self.storage_table_uri):
            out.append(
                "AzureWebJobsStorage: set a connection string, or AzureWebJobsStorage__queueServiceUri "
                "and AzureWebJobsStorage__tableServiceUri for identity-based access"
            )
        if self.graph_auth_mode == "client_secret":
            for name, value in (
                ("GRAPH_TENANT_ID", self.graph_tenant_id),
                ("GRAPH_CLIENT_ID", self.graph_client_id),
                ("GRAPH_CLIENT_SECRET", self.graph_client_secret),
            ):
                if not value:
                    out.append(f"{name}: required when GRAPH_AUTH_MODE=client_secret")
        elif self.graph_auth_mode == "certificate":
            for name, value in (
                ("GRAPH_TENANT_ID", self.graph_tenant_id),
                ("GRAPH_CLIENT_ID", self.graph_client_id),
                ("GRAPH_CERTIFICATE_PATH", self.graph_certificate_path),
            ):
                if not value:
                    out.append(f"{name}: required when GRAPH_AUTH_MODE=certificate")
        elif self.graph_auth_mode == "managed_identity":
            for name, value in (
                ("GRAPH_TENANT_ID", self.graph_tenant_id),
                ("GRAPH_CLIENT_ID", self.graph_client_id),
            ):
                if not value:
                    out.append(
                        f"{name}: required when GRAPH_AUTH_MODE=managed_identity (federated credential)"
                    )
        if not self.graph_base_url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            out.append("GRAPH_BASE_URL: must be https, or http on loopback for the emulator")
        if self.graph_auth_mode == "emulator" and self.graph_base_url == GRAPH_PUBLIC_BASE_URL:
            out.append("GRAPH_AUTH_MODE=emulator needs GRAPH_BASE_URL pointing at the Graph emulator")
        connector = self.crm_connector.strip().lower()
        if connector not in CRM_CONNECTORS:
            out.append(f"CRM_CONNECTOR: {self.crm_connector!r} is not one of {', '.join(CRM_CONNECTORS)}")
        elif connector == "dataverse":
            out += self._dataverse_problems()
        elif connector == "salesforce":
            out += self._salesforce_problems()
        elif not self.crm_base_url:
            out.append("CRM_BASE_URL: required")
        elif not self.crm_api_token:
            out.append("CRM_API_TOKEN: required with CRM_BASE_URL (the CRM refuses requests without it)")
        scheme = self.crm_auth_scheme.strip().lower()
        if scheme not in CRM_AUTH_SCHEMES:
            out.append(
                f"CRM_AUTH_SCHEME: {self.crm_auth_scheme!r} is not one of {', '.join(CRM_AUTH_SCHEMES)}"
            )
        elif self.crm_uses_api_key and not is_header_name(self.crm_api_key_header.strip()):
            out.append(
                f"CRM_API_KEY_HEADER: {self.crm_api_key_header!r} is not an HTTP header name "
                "(letters, digits and !#$%&'*+-.^_`|~, e.g. X-Api-Key)"
            )
        if len(self.crm_secrets) > 2:
            out.append("CRM_WEBHOOK_SECRETS: at most two secrets (current and next) may be active")
        if not self.crm_secrets:
            out.append("CRM_WEBHOOK_SECRETS: at least one secret is required to accept CRM webhooks")
        if not self.tag_secrets:
            out.append(
                "EVENT_TAG_SECRETS: required (at least 32 characters): the key that signs our tag on the "
                "events we write, so a tag a mailbox owner copies or forges is not taken for ours"
            )
        elif any(len(s) < 32 for s in self.tag_secrets):
            out.append("EVENT_TAG_SECRETS: each secret needs at least 32 characters")
        if len(self.tag_secrets) > 2:
            out.append("EVENT_TAG_SECRETS: at most two secrets (current and the one being retired)")
        if self.sync_policy and self.sync_policy_file:
            out.append("SYNC_POLICY and SYNC_POLICY_FILE: set one, not both")
        if not self.public_base_url:
            out.append("PUBLIC_BASE_URL: required, the https address Graph sends notifications to")
        return out

    def _dataverse_problems(self) -> list[str]:
        out: list[str] = []
        url = (self.dataverse_url or "").strip()
        if not url:
            out.append(
                "DATAVERSE_URL: required with CRM_CONNECTOR=dataverse (e.g. https://contoso.crm4.dynamics.com)"
            )
        elif not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            out.append("DATAVERSE_URL: must be https, or http on loopback for the emulator")
        mode = self.dataverse_auth_mode.strip().lower()
        if mode not in DATAVERSE_AUTH_MODES:
            out.append(
                f"DATAVERSE_AUTH_MODE: {self.dataverse_auth_mode!r} is not one of "
                f"{', '.join(DATAVERSE_AUTH_MODES)}"
            )
        elif mode == "app" and self.graph_auth_mode == "emulator":
            out.append(
                "DATAVERSE_AUTH_MODE=app needs the app registration (GRAPH_AUTH_MODE other than emulator); "
                "use DATAVERSE_AUTH_MODE=emulator against the Dataverse emulator"
            )
        elif mode == "emulator" and url.startswith("https://") and ".dynamics.com" in url:
            out.append("DATAVERSE_AUTH_MODE=emulator cannot reach a real Dataverse organization")
        out += _dataverse_status_map(self.dataverse_status_map)[1]
        return out

    @property
    def salesforce_email_fields(self) -> list[str]:
        """SALESFORCE_CONTACT_EMAIL_FIELDS: the Contact fields, beside Email, that match an attendee."""
        return _listed(self.salesforce_contact_email_fields)

    @property
    def salesforce_statuses(self) -> dict[str, tuple[str, ...]]:
        """SALESFORCE_STATUS_MAP: our status -> the status field's picklist values that mean it (the first is
        the one written); unset, each status is its own name (our package's msync_Status__c)."""
        return _salesforce_status_map(self.salesforce_status_map)[0]

    @property
    def dataverse_statuses(self) -> dict[str, tuple[tuple[int, int], ...]]:
        """DATAVERSE_STATUS_MAP over the default: our status -> its (statecode, statuscode) pairs, the first
        written (an out-of-office appointment: the pair with statuscode 6, if listed)."""
        return _dataverse_status_map(self.dataverse_status_map)[0]

    def _salesforce_problems(self) -> list[str]:
        out: list[str] = []
        url = (self.salesforce_instance_url or "").strip()
        if not url:
            out.append(
                "SALESFORCE_INSTANCE_URL: required with CRM_CONNECTOR=salesforce "
                "(the org's My Domain URL, e.g. https://contoso.my.salesforce.com)"
            )
        elif not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            out.append("SALESFORCE_INSTANCE_URL: must be https, or http on loopback for the emulator")
        mode = self.salesforce_auth_mode.strip().lower()
        if mode not in SALESFORCE_AUTH_MODES:
            out.append(
                f"SALESFORCE_AUTH_MODE: {self.salesforce_auth_mode!r} is not one of "
                f"{', '.join(SALESFORCE_AUTH_MODES)}"
            )
        elif mode == "client_credentials":
            for name, value in (
                ("SALESFORCE_CLIENT_ID", self.salesforce_client_id),
                ("SALESFORCE_CLIENT_SECRET", self.salesforce_client_secret),
            ):
                if not value:
                    out.append(f"{name}: required when SALESFORCE_AUTH_MODE=client_credentials")
        elif url.startswith("https://"):
            out.append("SALESFORCE_AUTH_MODE=emulator cannot reach a real Salesforce org (https)")
        if not _SALESFORCE_API_VERSION.fullmatch(self.salesforce_api_version.strip()):
            out.append(f"SALESFORCE_API_VERSION: {self.salesforce_api_version!r} is not like v62.0")
        field = (self.salesforce_external_id_field or "").strip()
        if field and not _SALESFORCE_FIELD.fullmatch(field):
            out.append(
                f"SALESFORCE_EXTERNAL_ID_FIELD: {field!r} is not a custom field API name (msync_Key__c)"
            )
        org = (self.salesforce_org_id or "").strip()
        if org and not _SALESFORCE_ORG_ID.fullmatch(org):
            out.append(f"SALESFORCE_ORG_ID: {org!r} is not an organization id (00D followed by 12 or 15)")
        profile = self.salesforce_field_profile.strip().lower()
        if profile not in SALESFORCE_FIELD_PROFILES:
            out.append(
                f"SALESFORCE_FIELD_PROFILE: {self.salesforce_field_profile!r} is not one of "
                f"{', '.join(SALESFORCE_FIELD_PROFILES)}"
            )
        elif profile == "practifi" and not self.salesforce_email_fields:
            out.append(
                "SALESFORCE_CONTACT_EMAIL_FIELDS: required with SALESFORCE_FIELD_PROFILE=practifi "
                "(the API names of the Contact's Alternate Email and other email fields to match on)"
            )
        bad = [f for f in self.salesforce_email_fields if f != "Email" and not _SALESFORCE_FIELD.fullmatch(f)]
        if bad:
            out.append(f"SALESFORCE_CONTACT_EMAIL_FIELDS: not custom field API names: {', '.join(bad)}")
        cancel = self.salesforce_cancel.strip().lower()
        if cancel not in SALESFORCE_CANCELS:
            out.append(
                f"SALESFORCE_CANCEL: {self.salesforce_cancel!r} is not one of {', '.join(SALESFORCE_CANCELS)}"
            )
        status_field = self.salesforce_status_field.strip()
        if not _SALESFORCE_FIELD.fullmatch(status_field):
            out.append(
                f"SALESFORCE_STATUS_FIELD: {status_field!r} is not a custom field API name (msync_Status__c)"
            )
        statuses, problems = _salesforce_status_map(self.salesforce_status_map)
        out += problems
        needed = ["confirmed"] + (["cancelled"] if cancel == "status" else [])
        missing = [s for s in needed if not problems and s not in statuses]
        if missing:
            out.append(
                f"SALESFORCE_STATUS_MAP: no picklist value for {', '.join(missing)} (needed: confirmed is "
                "what most meetings are, and SALESFORCE_CANCEL=status writes cancelled)"
            )
        return out

    @property
    def crm_connector_name(self) -> str:
        return self.crm_connector.strip().lower()


def _listed(value: str | None) -> list[str]:
    """A comma-separated setting (secrets: current first, then the one being rotated out)."""
    return [s.strip() for s in (value or "").split(",") if s.strip()]


def _salesforce_status_map(raw: str | None) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """SALESFORCE_STATUS_MAP parsed (the whole map: the field's values are the tenant's), with its problems:
    `{"confirmed": ["Confirmed", "Scheduled"], "cancelled": "Cancelled", ...}`."""
    name = "SALESFORCE_STATUS_MAP"
    if raw is None or not raw.strip():
        return {s: (s,) for s in STATUSES}, []
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return {}, [f"{name}: not JSON ({exc})"]
    if not isinstance(data, dict):
        return {}, [f"{name}: a JSON object of our status -> picklist value or list of values, got {raw!r}"]
    out: dict[str, tuple[str, ...]] = {}
    problems: list[str] = []
    owner: dict[str, str] = {}
    for status, values in data.items():
        if status not in STATUSES:
            problems.append(f"{name}: {status!r} is not one of our statuses ({', '.join(STATUSES)})")
            continue
        listed = [values] if isinstance(values, str) else values
        if (
            not isinstance(listed, list)
            or not listed
            or not all(isinstance(v, str) and v.strip() and len(v) <= 255 for v in listed)
        ):
            problems.append(
                f"{name}: {status}: a picklist value or a non-empty list of them (1 to 255 characters "
                f"each), got {values!r}"
            )
            continue
        for value in listed:
            if owner.setdefault(value, status) != status:
                problems.append(f"{name}: the picklist value {value!r} is both {owner[value]} and {status}")
        out[status] = tuple(dict.fromkeys(listed))
    return out, problems


def _dataverse_pairs(status: str, values: object) -> tuple[tuple[tuple[int, int], ...], list[str]]:
    name = f"DATAVERSE_STATUS_MAP: {status}"
    listed = values if isinstance(values, list) and values and isinstance(values[0], list) else [values]
    pairs: list[tuple[int, int]] = []
    problems: list[str] = []
    for pair in listed:
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(type(v) is int for v in pair)  # not bool
        ):
            problems.append(f"{name}: [statecode, statuscode] or a list of them, got {values!r}")
            continue
        state, code = pair
        codes = DATAVERSE_STATUSCODES.get(state)
        if codes is None:
            problems.append(f"{name}: statecode {state} is not one of the appointment's (0, 1, 2, 3)")
        elif code < 1 or (code not in codes and any(code in c for c in DATAVERSE_STATUSCODES.values())):
            others = [s for s, c in DATAVERSE_STATUSCODES.items() if code in c]
            where = f" (it is statecode {others[0]}'s)" if others else ""
            problems.append(
                f"{name}: statuscode {code} does not belong to statecode {state}, whose statuscodes are "
                f"{', '.join(map(str, codes))} and the tenant's own{where}"
            )
        else:
            pairs.append((state, code))
    if not problems:
        closed = [p for p in pairs if (p[0] == 2) != (status == "cancelled")]
        if closed:
            problems.append(
                f"{name}: {'only' if status == 'cancelled' else 'never'} statecode 2 (Canceled), got "
                f"{', '.join(f'[{s}, {c}]' for s, c in closed)}"
            )
        elif pairs[0][0] == 1:
            problems.append(
                f"{name}: the first pair is what is written, and a Completed (1) appointment is read-only"
            )
    return tuple(dict.fromkeys(pairs)), problems


def _dataverse_status_map(raw: str | None) -> tuple[dict[str, tuple[tuple[int, int], ...]], list[str]]:
    """DATAVERSE_STATUS_MAP parsed over the default (a tenant names only what it changes), with its problems:
    `{"hold": [0, 100000001], "confirmed": [[3, 5], [3, 6]]}`."""
    name = "DATAVERSE_STATUS_MAP"
    out = dict(DEFAULT_DATAVERSE_STATUS_MAP)
    if raw is None or not raw.strip():
        return out, []
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return out, [f"{name}: not JSON ({exc})"]
    if not isinstance(data, dict):
        return out, [f"{name}: a JSON object of our status -> [statecode, statuscode], got {raw!r}"]
    problems: list[str] = []
    for status, values in data.items():
        if status not in STATUSES:
            problems.append(f"{name}: {status!r} is not one of our statuses ({', '.join(STATUSES)})")
            continue
        pairs, wrong = _dataverse_pairs(status, values)
        problems += wrong
        if not wrong:
            out[status] = pairs
    return out, problems


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate settings; raise ConfigurationError listing every problem."""
    env = dict(os.environ if environ is None else environ)
    try:
        settings = Settings.model_validate(env)
    except ValidationError as exc:
        raise ConfigurationError(
            [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        ) from exc
    problems = settings.problems()
    if problems:
        raise ConfigurationError(problems)
    return settings
