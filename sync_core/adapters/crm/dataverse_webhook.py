"""Dataverse webhooks: the key check (HttpHeader authentication, `x-msync-webhook-key`) and the decoding of
the RemoteExecutionContext, a hint naming the change. Pure: no I/O (docs/connectors/dataverse.md, "Webhooks").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sync_core.adapters.crm.dataverse_wire import as_guid
from sync_core.errors import ConfigurationError
from sync_core.ports.crm_webhook import WebhookRejected

KEY_HEADER = "x-msync-webhook-key"
# use-webhooks.md: above 256 KB Dataverse drops ParentContext, InputParameters and the images and says so in
# x-ms-dynamics-msg-size-exceeded, so a genuine body stays near that size.
MAX_BODY_BYTES = 512 * 1024
ENTITY = "appointment"
MESSAGES: dict[str, Literal["created", "updated", "deleted"]] = {
    "Create": "created",
    "Update": "updated",  # a cancel is an Update of statecode/statuscode: the worker reads the status
    "Delete": "deleted",
}
NIL_GUID = "00000000-0000-0000-0000-000000000000"
_MAX_KEY_CHARS = 1024
_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


@dataclass(frozen=True)
class DataverseNotice:
    """One webhook call: which appointment changed and how (a hint), and what makes the call unique."""

    message: str  # Create, Update or Delete
    change_type: Literal["created", "updated", "deleted"]
    appointment_id: str  # canonical lower-case GUID
    operation_id: str | None
    correlation_id: str | None
    occurred_at: datetime | None  # OperationCreatedOn
    dedupe_key: str  # equal for every delivery of the same step execution

    @property
    def occurred_seconds(self) -> int | None:
        return None if self.occurred_at is None else int(self.occurred_at.timestamp())


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def authenticate(headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    """Accept the request's `x-msync-webhook-key` or raise WebhookRejected(401). Every configured secret is
    compared (compare_digest, on equal-length digests): the time taken says nothing about how much matched,
    nor which secret. No secret at all is a ConfigurationError: refusing everything would hide it."""
    active = [s for s in secrets if s]
    if not active:
        raise ConfigurationError(
            ["no CRM webhook secret is configured; every Dataverse webhook would be refused"]
        )
    given = _header(headers, KEY_HEADER)
    if given is None or not given.strip():
        raise WebhookRejected(
            401, f"missing {KEY_HEADER} (register the webhook with HttpHeader authentication)"
        )
    if len(given) > _MAX_KEY_CHARS:
        raise WebhookRejected(401, f"bad {KEY_HEADER}")
    digest = hashlib.sha256(given.strip().encode("utf-8")).digest()
    matched = False
    for secret in active:
        matched |= hmac.compare_digest(digest, hashlib.sha256(secret.encode("utf-8")).digest())
    if not matched:
        raise WebhookRejected(401, f"bad {KEY_HEADER}")


def ms_date(value: Any) -> datetime | None:
    """A WCF JSON date, `/Date(1506409448000-0700)/`: milliseconds since the epoch in UTC; the offset only
    names the sender's zone. None when absent or not in that form."""
    if not isinstance(value, str):
        return None
    match = _MS_DATE.match(value)
    if match is None:
        return None
    try:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _text(data: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise WebhookRejected(400, f"invalid RemoteExecutionContext: {name} must be a non-empty string")
    return value.strip()


def _guid(data: Mapping[str, Any], name: str) -> str | None:
    raw = data.get(name)
    if raw is None:
        return None
    guid = as_guid(raw) if isinstance(raw, str) else None
    if guid is None:
        raise WebhookRejected(400, f"invalid RemoteExecutionContext: {name} is not a GUID")
    return None if guid == NIL_GUID else guid


def parse_context(body: bytes) -> DataverseNotice:
    """Decode a RemoteExecutionContext; WebhookRejected (400, 413 or 422) when it is not one we take.

    400: not JSON, not an object, or a field we read is missing or malformed. 422: a well-formed context for
    something this endpoint does not sync (another table or message): the step is registered wrongly, and
    Dataverse records the failure in its System Jobs for the administrator to see."""
    if len(body) > MAX_BODY_BYTES:
        raise WebhookRejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookRejected(400, f"malformed JSON: {exc}") from exc
    except RecursionError as exc:
        raise WebhookRejected(400, "malformed JSON: nested too deeply") from exc
    if not isinstance(data, dict):
        raise WebhookRejected(400, "invalid payload: expected a RemoteExecutionContext JSON object")
    message = _text(data, "MessageName")
    entity = _text(data, "PrimaryEntityName")
    assert message is not None and entity is not None
    raw_id = data.get("PrimaryEntityId")
    appointment_id = as_guid(raw_id) if isinstance(raw_id, str) else None
    if appointment_id is None or appointment_id == NIL_GUID:
        raise WebhookRejected(400, "invalid RemoteExecutionContext: PrimaryEntityId must be a GUID")
    if entity != ENTITY:
        raise WebhookRejected(
            422, f"PrimaryEntityName {entity[:100]!r} is not synced: register the step on {ENTITY} only"
        )
    change_type = MESSAGES.get(message)
    if change_type is None:
        raise WebhookRejected(
            422,
            f"MessageName {message[:100]!r} is not synced: register steps for {', '.join(MESSAGES)} only",
        )
    operation_id = _guid(data, "OperationId")
    correlation_id = _guid(data, "CorrelationId")
    stage, depth = data.get("Stage"), data.get("Depth")
    if operation_id is not None:
        # One step execution, however often it is delivered; its stage and depth tell apart two steps of
        # the same operation (a synchronous and an asynchronous one, or a nested call).
        dedupe = f"op:{operation_id}:{message}:{appointment_id}:{stage}:{depth}"
    else:  # synchronous steps may carry no operation id: a retried delivery repeats the body exactly
        dedupe = "body:" + hashlib.sha256(body).hexdigest()
    return DataverseNotice(
        message=message,
        change_type=change_type,
        appointment_id=appointment_id,
        operation_id=operation_id,
        correlation_id=correlation_id,
        occurred_at=ms_date(data.get("OperationCreatedOn")),
        dedupe_key=dedupe,
    )
