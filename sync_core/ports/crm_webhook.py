"""CRM webhook security and decoding: HMAC-SHA256 signature check, replay window, event parsing. Pure: no
I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from sync_core.domain import identity
from sync_core.errors import ConfigurationError

TIMESTAMP_HEADER = "X-Crm-Timestamp"
SIGNATURE_HEADER = "X-Crm-Signature"
SIGNATURE_SCHEME = "v1"
MAX_BODY_BYTES = 256 * 1024
MAX_EVENTS = 500
DEFAULT_WINDOW_SECONDS = 300
# Bounds on header work: a rotation needs two signatures; a handful more is tolerated, not hundreds.
_MAX_SIGNATURES = 8
_MAX_HEADER_CHARS = 1024
_HEX_DIGEST_CHARS = 64

EventType = Literal[
    "appointment.created", "appointment.updated", "appointment.cancelled", "appointment.deleted"
]


class WebhookRejected(Exception):
    """The webhook request must be refused with `status` (400, 401 or 413); `reason` says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class CrmWebhookEvent(BaseModel):
    """One change announced by the CRM. A hint only: the worker reads the current record."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    type: EventType
    appointment_id: str = Field(min_length=1, max_length=200)

    @field_validator("appointment_id")
    @classmethod
    def _usable(cls, value: str) -> str:
        why = identity.unsafe_id(value)
        if why is not None:
            raise ValueError(why)
        return value

    version: str = Field(min_length=1, max_length=200)
    occurred_at: AwareDatetime


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    events: list[CrmWebhookEvent]


def _digest(secret: str, timestamp: str, body: bytes) -> str:
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str | Sequence[str], timestamp: int) -> dict[str, str]:
    """The two headers a sender attaches. Several secrets (during a rotation) give one `v1=` each."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    ts = str(int(timestamp))
    signature = ",".join(f"{SIGNATURE_SCHEME}={_digest(s, ts, body)}" for s in secrets if s)
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: signature}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _signatures(raw: str) -> list[str]:
    """The `v1=` values of the signature header; other schemes are ignored (forward compatible)."""
    if len(raw) > _MAX_HEADER_CHARS:
        raise WebhookRejected(400, f"malformed {SIGNATURE_HEADER}: header too long")
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if len(parts) > _MAX_SIGNATURES:
        raise WebhookRejected(400, f"malformed {SIGNATURE_HEADER}: more than {_MAX_SIGNATURES} signatures")
    found: list[str] = []
    for part in parts:
        scheme, sep, value = part.partition("=")
        if not sep or not scheme.strip():
            raise WebhookRejected(400, f"malformed {SIGNATURE_HEADER}: expected scheme=value pairs")
        if scheme.strip() != SIGNATURE_SCHEME:
            continue
        value = value.strip().lower()
        if len(value) != _HEX_DIGEST_CHARS or any(c not in "0123456789abcdef" for c in value):
            raise WebhookRejected(400, f"malformed {SIGNATURE_HEADER}: v1 must be 64 hex characters")
        found.append(value)
    return found


def verify_signature(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    now: float,
    window_seconds: int = DEFAULT_WINDOW_SECONDS,
) -> int:
    """Accept the request (returning its signed timestamp) or raise WebhookRejected. Any configured
    secret may match (rotation).

    Order: size (413), headers present (401) and well formed (400), signature (401), then the
    replay window (401). The window is checked after the signature, so a "stale"/"future" reason
    always means an authentic request from a sender whose clock is off, which is worth telling apart.
    No usable secret at all is a ConfigurationError: refusing every webhook with 401 would hide it.
    """
    active = [s for s in secrets if s]
    if not active:
        raise ConfigurationError(["no CRM webhook secret is configured; every webhook would be refused"])
    if len(body) > MAX_BODY_BYTES:
        raise WebhookRejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    raw_ts = _header(headers, TIMESTAMP_HEADER)
    raw_sig = _header(headers, SIGNATURE_HEADER)
    if raw_sig is None or not raw_sig.strip():
        raise WebhookRejected(401, f"missing {SIGNATURE_HEADER}")
    if raw_ts is None or not raw_ts.strip():
        raise WebhookRejected(401, f"missing {TIMESTAMP_HEADER}")
    ts = raw_ts.strip()
    if not ts.isascii() or not ts.isdigit() or len(ts) > 12:
        raise WebhookRejected(400, f"malformed {TIMESTAMP_HEADER}: expected unix seconds")
    provided = _signatures(raw_sig)
    if not provided:
        raise WebhookRejected(401, f"no {SIGNATURE_SCHEME} signature in {SIGNATURE_HEADER}")
    expected = [_digest(s, ts, body) for s in active]
    # compare_digest on every pair: the time taken does not depend on how many leading characters match.
    if not any(hmac.compare_digest(e, p) for e in expected for p in provided):
        raise WebhookRejected(401, "bad signature")
    age = now - int(ts)
    if age > window_seconds:
        raise WebhookRejected(401, f"stale timestamp: {int(age)} s old, window is {window_seconds} s")
    if age < -window_seconds:
        raise WebhookRejected(401, f"future timestamp: {int(-age)} s ahead, window is {window_seconds} s")
    return int(ts)


def parse_events(body: bytes) -> list[CrmWebhookEvent]:
    """Decode and validate the webhook body `{"events": [...]}`; WebhookRejected(400/413) if unusable."""
    if len(body) > MAX_BODY_BYTES:
        raise WebhookRejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookRejected(400, f"malformed JSON: {exc}") from exc
    except RecursionError as exc:  # nesting deeper than the interpreter's stack: input, not our failure
        raise WebhookRejected(400, "malformed JSON: nested too deeply") from exc
    if not isinstance(data, dict):
        raise WebhookRejected(400, "invalid payload: expected a JSON object with `events`")
    events = data.get("events")
    if isinstance(events, list) and len(events) > MAX_EVENTS:
        raise WebhookRejected(400, f"too many events: {len(events)} > {MAX_EVENTS}")
    try:
        # Strict, from the JSON itself: the contract's types exactly (`0` is not a date-time, `1` no string).
        return _Payload.model_validate_json(body, strict=True).events
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise WebhookRejected(400, f"invalid payload: {where}: {first['msg']}{more}") from exc
