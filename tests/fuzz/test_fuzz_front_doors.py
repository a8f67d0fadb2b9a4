"""Fuzz the front doors over HTTP and the queue message decoder.

Properties, for every generated input: the answer is never a 5xx; nothing is enqueued unless the input
carries an authentic item (our subscription and clientState; a valid CRM signature), and then only
messages that decode and name what the input named; an authentic, well-formed item is enqueued exactly
once; the decoder raises nothing but UnprocessableError, so a worker never crashes on a message.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_core.domain import identity
from sync_core.domain.messages import CrmChange, GraphChange, decode, encode
from sync_core.errors import UnprocessableError
from sync_core.ports.crm_webhook import sign
from tests.fuzz.conftest import CRM_SECRET, FrontDoor

# Generous: a Storage call that stalls is retried after its 10 s read timeout; the request must still end
# here, not leak its messages into the next example's drain.
CLIENT_TIMEOUT = 120


def distinct(enqueued: list[str]) -> list[str]:
    """Each message once. Every message carries its own correlation id, so two identical texts are one send
    retried by the Storage client after a timeout: at-least-once delivery, which processing absorbs."""
    return list(dict.fromkeys(enqueued))


pytestmark = [pytest.mark.chaos, pytest.mark.fuzz, pytest.mark.timeout(3600)]

CHANGE_TYPES = ["created", "updated", "deleted"]
LIFECYCLE = ["reauthorizationRequired", "subscriptionRemoved", "missed"]
CRM_TYPES = ["appointment.created", "appointment.updated", "appointment.cancelled", "appointment.deleted"]

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40)
)
json_any = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
ids = st.one_of(
    st.text(min_size=1, max_size=60), st.just(""), st.text(max_size=3000), st.integers(), st.none()
)


def _notification(door: FrontDoor) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "subscriptionId": st.one_of(st.just(door.subscription_id), ids),
            "clientState": st.one_of(st.just(door.client_state), ids),
            "changeType": st.one_of(st.sampled_from(CHANGE_TYPES), json_leaf),
            "resource": st.one_of(st.text(max_size=80), json_leaf),
            "resourceData": st.one_of(st.fixed_dictionaries({"id": ids}), json_any),
            "lifecycleEvent": st.one_of(st.sampled_from(LIFECYCLE), json_leaf),
            "tenantId": json_leaf,
            "subscriptionExpirationDateTime": st.one_of(st.datetimes().map(str), json_leaf),
        },
    )


def _authentic(door: FrontDoor) -> st.SearchStrategy[dict[str, Any]]:
    """A well-formed change notification of our subscription: must be enqueued exactly once."""
    return st.builds(
        lambda change, event_id: {
            "subscriptionId": door.subscription_id,
            "clientState": door.client_state,
            "changeType": change,
            "resource": f"Users/x/Events/{event_id}",
            "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "id": event_id},
        },
        st.sampled_from(CHANGE_TYPES),
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=200),
    )


def _graph_bodies(door: FrontDoor) -> st.SearchStrategy[bytes]:
    notifications = st.one_of(_notification(door), _authentic(door), json_any)
    return st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(str.encode),
        json_any.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries({"value": st.lists(notifications, max_size=5)}).map(
            lambda v: json.dumps(v).encode()
        ),
        st.fixed_dictionaries({"value": json_any}).map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries({"value": st.lists(_authentic(door), min_size=1, max_size=5)}).map(
            lambda v: json.dumps(v).encode()
        ),
    )


def _expected_graph(door: FrontDoor, body: bytes) -> tuple[int, set[str], int]:
    """(items carrying our subscription and clientState, the event ids they name, how many of them are
    well-formed changes that must be enqueued)."""
    try:
        data = json.loads(body)
    except ValueError:
        return 0, set(), 0
    items = data.get("value") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return 0, set(), 0
    ours = [
        n
        for n in items
        if isinstance(n, dict)
        and n.get("subscriptionId") == door.subscription_id
        and n.get("clientState") == door.client_state
    ]
    names = {str(n["resourceData"].get("id")) for n in ours if isinstance(n.get("resourceData"), dict)}
    # Only a batch made wholly of authentic changes has a fixed answer (one invalid item refuses the batch);
    # a notification repeated within one request is taken once.
    whole = items and all(_is_authentic_change(door, n) for n in items)
    must = len({json.dumps(n, sort_keys=True) for n in items}) if whole else 0
    return len(ours), names, must


def _is_authentic_change(door: FrontDoor, n: Any) -> bool:
    if not isinstance(n, dict):
        return False
    rd = n.get("resourceData")
    return (
        n.get("subscriptionId") == door.subscription_id
        and n.get("clientState") == door.client_state
        and n.get("changeType") in CHANGE_TYPES
        and "lifecycleEvent" not in n
        and isinstance(rd, dict)
        and set(rd) == {"@odata.type", "id"}
        and isinstance(rd["id"], str)
        and 1 <= len(rd["id"]) <= 1024
        and identity.unsafe_id(rd["id"]) is None  # `.`, `..`, blank or control characters: refused (400)
    )


@pytest.mark.parametrize("route", ["graph/notifications", "graph/lifecycle"])
def test_graph_front_doors_never_5xx_and_enqueue_only_authentic_items(
    front_door: FrontDoor, fuzz_settings: settings, route: str
) -> None:
    client = httpx.Client(timeout=CLIENT_TIMEOUT)

    @fuzz_settings
    @given(body=_graph_bodies(front_door))
    def check(body: bytes) -> None:
        reply = client.post(front_door.url(route), content=body)
        enqueued = distinct(front_door.drain())
        assert reply.status_code < 500, reply.text
        ours, names, must = _expected_graph(front_door, body)
        if not ours:
            assert enqueued == [], f"{route} enqueued {enqueued} for an input with no authentic item"
        messages = [decode(m) for m in enqueued]  # UnprocessableError here: an invalid message was enqueued
        changes = [m for m in messages if isinstance(m, GraphChange)]
        assert all(m.event_id in names for m in changes), f"enqueued {changes}, not naming {names}"
        if must:
            assert reply.status_code == 202 and len(changes) == must, f"{must} authentic, {enqueued} enqueued"
        assert len(messages) <= ours
        if reply.status_code != 202:
            assert enqueued == []

    try:
        check()
    finally:
        client.close()


def _crm_event() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "id": st.text(min_size=1, max_size=40),
            "type": st.sampled_from(CRM_TYPES),
            "appointment_id": st.text(min_size=1, max_size=40),
            "version": st.text(min_size=1, max_size=20),
            "occurred_at": st.just("2026-01-01T10:00:00Z"),
        }
    )


crm_bodies = st.one_of(
    st.binary(max_size=300),
    json_any.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"events": st.lists(st.one_of(_crm_event(), json_any), max_size=4)}).map(
        lambda v: json.dumps(v).encode()
    ),
    st.fixed_dictionaries({"events": st.lists(_crm_event(), min_size=1, max_size=4)}).map(
        lambda v: json.dumps(v).encode()
    ),
)


def test_crm_webhook_never_5xx_and_enqueues_only_signed_valid_events(
    front_door: FrontDoor, fuzz_settings: settings
) -> None:
    client = httpx.Client(timeout=CLIENT_TIMEOUT)

    @fuzz_settings
    @given(
        body=crm_bodies,
        signing=st.sampled_from(["valid", "wrong-secret", "stale", "none", "garbage"]),
        garbage=st.dictionaries(
            st.sampled_from(["X-Crm-Timestamp", "X-Crm-Signature", "Content-Type"]),
            # Any printable header value; control characters and surrounding whitespace are refused by the
            # HTTP client itself (h11), so they never reach a server.
            st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=80).map(str.strip),
        ),
    )
    def check(body: bytes, signing: str, garbage: dict[str, str]) -> None:
        now = int(time.time())
        headers = {
            "valid": sign(body, CRM_SECRET, now),
            "wrong-secret": sign(body, "not-the-secret", now),
            "stale": sign(body, CRM_SECRET, now - 3600),
            "none": {},
            "garbage": garbage,
        }[signing]
        headers = {k: v.encode("utf-8") for k, v in headers.items()}  # bytes: any octet reaches the host
        reply = client.post(front_door.url("crm/webhook"), content=body, headers=headers)
        enqueued = distinct(front_door.drain())
        assert reply.status_code < 500, reply.text
        if signing != "valid" or reply.status_code != 202:
            assert enqueued == [], f"enqueued {enqueued} for a {signing} request answered {reply.status_code}"
            return
        events = json.loads(body)["events"]
        messages = [decode(m) for m in enqueued]
        assert all(isinstance(m, CrmChange) for m in messages)
        assert sorted(m.crm_id for m in messages) == sorted(e["appointment_id"] for e in events)

    try:
        check()
    finally:
        client.close()


message_fields = st.fixed_dictionaries(
    {},
    optional={
        "v": st.one_of(st.just(1), json_leaf),
        "type": st.one_of(st.sampled_from(["graph_change", "crm_change", "mailbox_resync"]), json_leaf),
        "correlation_id": st.one_of(st.text(max_size=80), json_leaf),
        "received_at": st.one_of(st.datetimes().map(lambda d: d.isoformat()), json_leaf),
        "mailbox": ids,
        "event_id": ids,
        "crm_id": ids,
        "change_type": st.one_of(st.sampled_from(["created", "updated", "deleted", "cancelled"]), json_leaf),
        "reason": st.one_of(st.text(max_size=300), json_leaf),
        "full": json_leaf,
        "version": json_leaf,
    },
)


def test_decode_raises_only_unprocessable_and_round_trips(fuzz_settings: settings) -> None:
    @fuzz_settings
    @given(
        body=st.one_of(
            st.binary(max_size=200),
            st.text(max_size=200),
            json_any.map(json.dumps),
            message_fields.map(json.dumps),
        )
    )
    def check(body: bytes | str) -> None:
        try:
            message = decode(body)
        except UnprocessableError:
            return
        assert decode(encode(message)) == message

    check()
