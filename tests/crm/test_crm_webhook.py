"""CRM webhook security: HMAC signature with rotation, replay window, size and payload validation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sync_core.errors import ConfigurationError
from sync_core.ports.crm_webhook import (
    MAX_BODY_BYTES,
    MAX_EVENTS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookRejected,
    parse_events,
    sign,
    verify_signature,
)

SECRET = "current-secret-0123456789abcdef0123"
NEW_SECRET = "next-secret-fedcba9876543210fedcba98"
NOW = 1_780_000_000.0


def event(**changes: Any) -> dict[str, Any]:
    return {
        "id": "evt-1",
        "type": "appointment.updated",
        "appointment_id": "apt-1",
        "version": "v2",
        "occurred_at": "2026-05-28T20:26:40Z",
    } | changes


BODY = json.dumps({"events": [event()]}).encode()


def rejected(
    headers: dict[str, str], body: bytes = BODY, secrets: tuple[str, ...] = (SECRET,)
) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as caught:
        verify_signature(headers, body, secrets, NOW)
    return caught.value


def test_a_correct_signature_inside_the_window_is_accepted() -> None:
    verify_signature(sign(BODY, SECRET, int(NOW)), BODY, [SECRET], NOW)


def test_header_names_are_matched_case_insensitively() -> None:
    headers = {k.lower(): v for k, v in sign(BODY, SECRET, int(NOW)).items()}
    verify_signature(headers, BODY, [SECRET], NOW)
    verify_signature({k.upper(): v for k, v in headers.items()}, BODY, [SECRET], NOW)


def test_a_signature_made_with_another_secret_is_401_bad_signature() -> None:
    err = rejected(sign(BODY, "someone-else", int(NOW)))
    assert (err.status, err.reason) == (401, "bad signature")


def test_a_body_changed_after_signing_is_401_bad_signature() -> None:
    err = rejected(sign(BODY, SECRET, int(NOW)), body=BODY.replace(b"apt-1", b"apt-2"))
    assert (err.status, err.reason) == (401, "bad signature")


def test_a_timestamp_changed_after_signing_is_401_bad_signature() -> None:
    err = rejected(sign(BODY, SECRET, int(NOW)) | {TIMESTAMP_HEADER: str(int(NOW) + 1)})
    assert (err.status, err.reason) == (401, "bad signature")


def test_rotation_the_new_secret_is_accepted_while_both_are_configured() -> None:
    verify_signature(sign(BODY, NEW_SECRET, int(NOW)), BODY, [SECRET, NEW_SECRET], NOW)
    verify_signature(sign(BODY, SECRET, int(NOW)), BODY, [SECRET, NEW_SECRET], NOW)


def test_rotation_a_sender_signing_with_both_secrets_passes_a_receiver_holding_either() -> None:
    headers = sign(BODY, [SECRET, NEW_SECRET], int(NOW))
    assert headers[SIGNATURE_HEADER].count("v1=") == 2
    verify_signature(headers, BODY, [SECRET], NOW)
    verify_signature(headers, BODY, [NEW_SECRET], NOW)


def test_rotation_an_empty_secret_slot_is_ignored() -> None:
    verify_signature(sign(BODY, SECRET, int(NOW)), BODY, ["", SECRET], NOW)


def test_unknown_signature_schemes_are_ignored_beside_a_good_v1() -> None:
    headers = sign(BODY, SECRET, int(NOW))
    headers[SIGNATURE_HEADER] = "v9=whatever, " + headers[SIGNATURE_HEADER]
    verify_signature(headers, BODY, [SECRET], NOW)


@pytest.mark.parametrize(
    ("age", "word"), [(301, "stale"), (3600, "stale"), (-301, "future"), (-86400, "future")]
)
def test_a_timestamp_outside_the_five_minute_window_is_401(age: int, word: str) -> None:
    ts = int(NOW) - age
    err = rejected(sign(BODY, SECRET, ts))
    assert err.status == 401 and err.reason.startswith(f"{word} timestamp")


@pytest.mark.parametrize("age", [300, -300, 0])
def test_a_timestamp_at_the_edge_of_the_window_is_accepted(age: int) -> None:
    verify_signature(sign(BODY, SECRET, int(NOW) - age), BODY, [SECRET], NOW)


@pytest.mark.parametrize(
    ("drop", "reason"),
    [(SIGNATURE_HEADER, "missing X-Crm-Signature"), (TIMESTAMP_HEADER, "missing X-Crm-Timestamp")],
)
def test_a_missing_header_is_401(drop: str, reason: str) -> None:
    headers = sign(BODY, SECRET, int(NOW))
    del headers[drop]
    err = rejected(headers)
    assert (err.status, err.reason) == (401, reason)


def test_no_headers_at_all_is_401() -> None:
    assert rejected({}).status == 401


def test_a_signature_header_without_v1_is_401() -> None:
    headers = sign(BODY, SECRET, int(NOW)) | {SIGNATURE_HEADER: "v2=abc"}
    err = rejected(headers)
    assert (err.status, err.reason) == (401, "no v1 signature in X-Crm-Signature")


@pytest.mark.parametrize(
    ("header", "value", "reason_start"),
    [
        (TIMESTAMP_HEADER, "yesterday", "malformed X-Crm-Timestamp"),
        (TIMESTAMP_HEADER, "-12", "malformed X-Crm-Timestamp"),
        (TIMESTAMP_HEADER, "1780000000.5", "malformed X-Crm-Timestamp"),
        (SIGNATURE_HEADER, "deadbeef", "malformed X-Crm-Signature"),
        (SIGNATURE_HEADER, "v1=nothex", "malformed X-Crm-Signature"),
        (SIGNATURE_HEADER, ",".join(["v1=" + "a" * 64] * 9), "malformed X-Crm-Signature"),
        (SIGNATURE_HEADER, "v1=" + "a" * 2000, "malformed X-Crm-Signature"),
    ],
)
def test_malformed_headers_are_400(header: str, value: str, reason_start: str) -> None:
    headers = sign(BODY, SECRET, int(NOW)) | {header: value}
    err = rejected(headers)
    assert err.status == 400 and err.reason.startswith(reason_start)


def test_a_body_over_256_kib_is_413_before_any_hmac() -> None:
    big = b"x" * (MAX_BODY_BYTES + 1)
    err = rejected(sign(big, SECRET, int(NOW)), body=big)
    assert (err.status, err.reason) == (413, f"body larger than {MAX_BODY_BYTES} bytes")
    assert parse_events_rejected(big).status == 413


def test_no_configured_secret_is_a_configuration_error_not_a_401() -> None:
    with pytest.raises(ConfigurationError):
        verify_signature(sign(BODY, SECRET, int(NOW)), BODY, ["", ""], NOW)


def parse_events_rejected(body: bytes) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as caught:
        parse_events(body)
    return caught.value


def test_parse_events_returns_validated_events_and_their_change_hints() -> None:
    body = json.dumps(
        {
            "events": [
                event(),
                event(id="evt-2", type="appointment.cancelled"),
                event(id="e3", type="appointment.deleted"),
            ]
        }
    ).encode()
    events = parse_events(body)
    assert [e.id for e in events] == ["evt-1", "evt-2", "e3"]
    assert [e.type for e in events] == ["appointment.updated", "appointment.cancelled", "appointment.deleted"]
    assert events[0].appointment_id == "apt-1"


def test_parse_events_ignores_unknown_fields_for_forward_compatibility() -> None:
    assert parse_events(json.dumps({"events": [event(extra=1)], "sent_by": "crm"}).encode())[0].id == "evt-1"


@pytest.mark.parametrize(
    ("body", "reason_start"),
    [
        (b"{not json", "malformed JSON"),
        (b"\xff\xfe", "malformed JSON"),
        (b"[]", "invalid payload: expected a JSON object"),
        (b"{}", "invalid payload: events: Field required"),
        (json.dumps({"events": [event(type="contact.updated")]}).encode(), "invalid payload: events.0.type"),
        (
            json.dumps({"events": [event(appointment_id="")]}).encode(),
            "invalid payload: events.0.appointment_id",
        ),
        (
            json.dumps({"events": [event(occurred_at="2026-05-28T20:26:40")]}).encode(),
            "invalid payload: events.0.occ",
        ),
        (json.dumps({"events": [event(version=None)]}).encode(), "invalid payload: events.0.version"),
        # Found by schemathesis: lax parsing took a number for a date-time (seconds since 1970).
        (json.dumps({"events": [event(occurred_at=0)]}).encode(), "invalid payload: events.0.occurred_at"),
        (json.dumps({"events": [event(version=2)]}).encode(), "invalid payload: events.0.version"),
        (json.dumps({"events": [event()] * (MAX_EVENTS + 1)}).encode(), f"too many events: {MAX_EVENTS + 1}"),
    ],
)
def test_malformed_bodies_are_400_with_a_reason(body: bytes, reason_start: str) -> None:
    err = parse_events_rejected(body)
    assert err.status == 400 and err.reason.startswith(reason_start), err.reason


def test_sign_produces_the_documented_hmac() -> None:
    # HMAC-SHA256(key="secret", message="1700000000.{}"), computed independently with `openssl dgst`.
    headers = sign(b"{}", "secret", 1_700_000_000)
    assert headers[TIMESTAMP_HEADER] == "1700000000"
    assert headers[SIGNATURE_HEADER] == "v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
