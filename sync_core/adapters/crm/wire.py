"""The CRM contract's wire format (docs/crm-contract.openapi.yaml): its JSON shapes as pydantic models,
and the one translation of an httpx failure or a non-2xx answer into sync_core.errors. No I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict

from sync_core.adapters.crm.transport import answer_error, transport_error
from sync_core.domain.model import Appointment, CrmRecord
from sync_core.errors import SyncError

SIDE = "crm"
DEFAULT_RETRY_AFTER_S = 5.0  # a 429 without a usable Retry-After still means "slow down"
APPOINTMENT_FIELDS: frozenset[str] = frozenset(Appointment.model_fields)


def _error_detail(response: httpx.Response) -> str:
    """`code: message` from the contract's error body, or the start of whatever came instead."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = data["error"]
        return f"{err.get('code', '')}: {err.get('message', '')}"
    return response.text[:200]


def translate_error(
    outcome: httpx.Response | httpx.HTTPError, *, item_id: str | None, now: float | None = None
) -> SyncError:
    """The one map from an httpx exception or a non-2xx response to the sync's error tree (side="crm").

    429 (and 503 with Retry-After) -> ThrottledError; other 5xx, 408, timeouts and connection
    errors -> TransientError; 412 -> ConcurrencyError; 404/410 -> NotFoundError; 409 -> ConflictError;
    401/403 -> PermissionError_; 400/422 -> UnprocessableError; any other 3xx/4xx -> PermanentError.
    """
    if isinstance(outcome, httpx.HTTPStatusError):
        outcome = outcome.response
    if isinstance(outcome, httpx.HTTPError):
        return transport_error(outcome, "CRM", side=SIDE, item_id=item_id)

    status = outcome.status_code
    message = f"CRM answered {status} to {outcome.request.method} {outcome.request.url.path}"
    detail = _error_detail(outcome)
    if detail:
        message = f"{message}: {detail}"
    return answer_error(
        outcome, message, None, side=SIDE, item_id=item_id, now=now, default_retry_after=DEFAULT_RETRY_AFTER_S
    )


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)


_W = TypeVar("_W", bound=_Wire)


class _WireRecordMeta(_Wire):
    id: str
    version: str
    external_ref: str | None = None
    created_by: str | None = None
    updated_by: str | None = None
    mailbox_hint: str | None = None
    updated_at: datetime | None = None


class _WireMatches(_Wire):
    records: list[dict[str, Any]]


class _WirePage(_Wire):
    records: list[dict[str, Any]]
    deleted_ids: list[str] = []
    cursor: str
    more: bool = False


class _WireContact(_Wire):
    id: str
    email: str
    name: str = ""


class _WireUser(_Wire):
    id: str
    email: str
    name: str = ""
    mailbox: str | None = None


class _WireSpace(_Wire):
    id: str
    name: str
    room_mailbox: str | None = None
    management_mode: Literal["outlook_auto_accept", "outlook_moderated", "crm_managed"] = (
        "outlook_auto_accept"
    )


def appointment_to_wire(appointment: Appointment, fields: set[str] | None = None) -> dict[str, Any]:
    """The contract's appointment JSON (only `fields`, when given). F5: a file attachment whose bytes the
    sync copies carries them as `content_base64`; the model never serialises them itself."""
    dumped = appointment.model_dump(mode="json", include=fields)
    if "attachments" in dumped:
        for item, attachment in zip(dumped["attachments"], appointment.attachments, strict=True):
            if attachment.content is not None:
                item["content_base64"] = base64.b64encode(attachment.content).decode("ascii")
    return dumped


def record_from_wire(data: Mapping[str, Any]) -> CrmRecord:
    """A CrmRecord from the contract's appointment JSON; unknown top-level keys are ignored."""
    meta = _WireRecordMeta.model_validate(data)
    appointment = Appointment.model_validate({k: v for k, v in data.items() if k in APPOINTMENT_FIELDS})
    return CrmRecord(
        crm_id=meta.id,
        version=meta.version,
        appointment=appointment,
        mailbox_hint=meta.mailbox_hint,
        created_by=meta.created_by,
        updated_by=meta.updated_by,
        external_ref=meta.external_ref,
        updated_at=meta.updated_at,
    )
