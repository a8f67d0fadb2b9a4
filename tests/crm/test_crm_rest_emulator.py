"""RestCrmConnector against the CRM emulator: what goes on the wire (batching, caching, headers,
paging) and how injected faults surface as sync errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from devstack.crm_emulator import CrmEmulator
from sync_core.adapters.crm.rest import RestCrmConnector
from sync_core.domain.model import Appointment
from sync_core.errors import (
    ConcurrencyError,
    ConflictError,
    NotFoundError,
    PermissionError_,
    ThrottledError,
    TransientError,
)

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def make_appointment(subject: str = "Review") -> Appointment:
    return Appointment(subject=subject, start=START, end=START + timedelta(hours=1))


def contact_requests(crm: CrmEmulator) -> list[list[str]]:
    return [[v for k, v in r.query if k == "email"] for r in crm.requests if r.path == "/contacts"]


async def test_find_contacts_asks_at_most_50_emails_per_request(
    crm: CrmEmulator, connector: RestCrmConnector
) -> None:
    crm.seed(contacts=[{"email": f"c{i}@fabrikam.example"} for i in range(0, 120, 2)])
    found = await connector.find_contacts(f"C{i}@Fabrikam.example" for i in range(120))
    assert sorted(found) == sorted(f"c{i}@fabrikam.example" for i in range(0, 120, 2))
    assert [len(batch) for batch in contact_requests(crm)] == [50, 50, 20]


async def test_find_contacts_caches_hits_and_misses_until_the_ttl_expires(crm: CrmEmulator) -> None:
    now = [1000.0]
    crm.seed(contacts=[{"id": "c1", "email": "known@fabrikam.example"}])
    async with RestCrmConnector(
        crm.base_url, token=crm.token, contact_ttl_s=300, clock=lambda: now[0]
    ) as connector:
        first = await connector.find_contacts(["known@fabrikam.example", "unknown@fabrikam.example"])
        again = await connector.find_contacts(["KNOWN@fabrikam.example", "unknown@fabrikam.example", ""])
        assert first == again and list(again) == ["known@fabrikam.example"]
        assert len(contact_requests(crm)) == 1
        await connector.find_contacts(["known@fabrikam.example", "new@fabrikam.example"])
        assert contact_requests(crm)[-1] == ["new@fabrikam.example"]
        # A contact created in the CRM meanwhile is found once the cached miss has expired.
        crm.seed(contacts=[{"id": "c2", "email": "unknown@fabrikam.example"}])
        now[0] += 299
        assert list(await connector.find_contacts(["unknown@fabrikam.example"])) == []
        assert len(contact_requests(crm)) == 2
        now[0] += 1
        found = await connector.find_contacts(["unknown@fabrikam.example", "known@fabrikam.example"])
        assert sorted(found) == ["known@fabrikam.example", "unknown@fabrikam.example"]
        assert found["unknown@fabrikam.example"].crm_id == "c2"
        assert sorted(contact_requests(crm)[-1]) == ["known@fabrikam.example", "unknown@fabrikam.example"]


async def test_list_users_follows_next_cursor_over_every_page(
    crm: CrmEmulator, connector: RestCrmConnector
) -> None:
    crm.seed(users=[{"id": f"u{i:03d}", "email": f"user{i}@contoso.example"} for i in range(230)])
    users = await connector.list_users()
    assert [u.crm_id for u in users] == [f"u{i:03d}" for i in range(230)]
    assert len([r for r in crm.requests if r.path == "/users"]) == 3


async def test_I3_create_sends_the_idempotency_key_and_update_sends_if_match(
    crm: CrmEmulator, connector: RestCrmConnector
) -> None:
    created = await connector.create_appointment(
        make_appointment(), idempotency_key="key-42", external_ref="m"
    )
    await connector.update_appointment(
        created.crm_id, make_appointment(subject="x"), fields=["subject"], expected_version=created.version
    )
    post, patch = crm.requests
    assert post.headers["Idempotency-Key"] == "key-42"
    assert post.body["external_ref"] == "m"
    assert patch.headers["If-Match"] == created.version and patch.body == {"subject": "x"}


async def test_I3_a_create_whose_response_was_lost_is_found_again_by_its_key(
    crm: CrmEmulator, connector: RestCrmConnector
) -> None:
    crm.set_faults(error_after_write_rate=1.0, status=502)
    with pytest.raises(TransientError):
        await connector.create_appointment(make_appointment(), idempotency_key="lost", external_ref="m")
    crm.set_faults()
    retried = await connector.create_appointment(make_appointment(), idempotency_key="lost", external_ref="m")
    assert [a["id"] for a in crm.appointments()] == [retried.crm_id]


async def test_an_api_key_alone_authenticates_and_a_wrong_token_is_a_permission_error(
    crm: CrmEmulator,
) -> None:
    async with RestCrmConnector(crm.base_url, api_key=crm.token) as by_key:
        assert await by_key.list_spaces() == []
    async with RestCrmConnector(crm.base_url, token="wrong") as wrong:
        with pytest.raises(PermissionError_):
            await wrong.list_spaces()


async def test_a_cursor_from_before_a_reset_is_gone(crm: CrmEmulator, connector: RestCrmConnector) -> None:
    await connector.create_appointment(make_appointment(), idempotency_key="k", external_ref="m")
    cursor = (await connector.list_changed(None)).cursor
    crm.reset()
    with pytest.raises(NotFoundError, match="cursor_expired"):
        await connector.list_changed(cursor)


async def test_injected_throttling_is_a_throttled_error_with_retry_after(
    crm: CrmEmulator, connector: RestCrmConnector
) -> None:
    crm.set_faults(error_rate=1.0, status=429)
    with pytest.raises(ThrottledError) as caught:
        await connector.get_appointment("apt-1")
    assert caught.value.retry_after == 1.0


async def test_a_concurrent_crm_write_during_a_conditional_update_is_a_concurrency_error(
    crm: CrmEmulator, connector: RestCrmConnector
) -> None:
    created = await connector.create_appointment(make_appointment(), idempotency_key="k", external_ref="m")
    crm.set_faults(version_conflict_rate=1.0)
    with pytest.raises(ConcurrencyError):
        await connector.update_appointment(
            created.crm_id, make_appointment("mine"), fields=["subject"], expected_version=created.version
        )
    unconditional = await connector.update_appointment(
        created.crm_id, make_appointment("mine"), fields=["subject"], expected_version=None
    )
    assert unconditional.appointment.subject == "mine"


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, TransientError), (503, ThrottledError), (409, ConflictError), (412, ConcurrencyError)],
)
async def test_an_injected_error_is_answered_before_anything_is_written(
    crm: CrmEmulator, connector: RestCrmConnector, status: int, error: type[Exception]
) -> None:
    crm.set_faults(error_rate=1.0, status=status)
    with pytest.raises(error):
        await connector.create_appointment(make_appointment(), idempotency_key="k", external_ref="m")
    assert crm.appointments() == []
    assert [r.status for r in crm.requests] == [status]


async def test_injected_latency_longer_than_the_client_timeout_is_a_transient_error(crm: CrmEmulator) -> None:
    crm.set_faults(latency_ms=500)
    async with RestCrmConnector(crm.base_url, token=crm.token, timeout=0.05) as impatient:
        with pytest.raises(TransientError, match="timed out"):
            await impatient.list_spaces()
    crm.set_faults()
    async with RestCrmConnector(crm.base_url, token=crm.token) as patient:
        assert await patient.list_spaces() == []


async def test_a_version_conflict_fault_applies_only_to_conditional_writes(
    crm: CrmEmulator, connector: RestCrmConnector
) -> None:
    created = await connector.create_appointment(make_appointment(), idempotency_key="k", external_ref="m")
    crm.set_faults(version_conflict_rate=1.0)
    with pytest.raises(ConcurrencyError):
        await connector.update_appointment(
            created.crm_id, make_appointment("mine"), fields=["subject"], expected_version=created.version
        )
    moved = await connector.get_appointment(created.crm_id)
    assert moved is not None and moved.version != created.version  # the "concurrent" CRM edit happened
    assert moved.appointment.subject == "Review"


async def test_I5_the_lookup_by_external_ref_is_one_get_with_only_that_parameter(
    crm: CrmEmulator, connector: RestCrmConnector
) -> None:
    key = "ical:040000008200E00074C5B7101A82E008|2026-03-02T09:30:00Z"
    linked = crm.user_create(make_appointment("Linked"), external_ref=key)
    crm.clear_requests()
    found = await connector.find_by_external_ref(key)
    assert found is not None and found.crm_id == linked["id"]
    assert [(r.method, r.path, r.query, r.status) for r in crm.requests] == [
        ("GET", "/appointments", (("external_ref", key),), 200)
    ]


async def test_I5_the_emulator_refuses_an_empty_external_ref_and_ignores_changed_since_with_one(
    crm: CrmEmulator,
) -> None:
    crm.user_create(make_appointment("Linked"), external_ref="ical:abc")
    async with httpx.AsyncClient(base_url=crm.base_url, headers={"X-Api-Key": crm.token}) as http:
        empty = await http.get("/appointments", params={"external_ref": ""})
        assert (empty.status_code, empty.json()["error"]["code"]) == (400, "invalid_external_ref")
        both = await http.get("/appointments", params={"external_ref": "ical:abc", "changed_since": "x"})
        assert both.status_code == 200 and [r["external_ref"] for r in both.json()["records"]] == ["ical:abc"]
        assert "cursor" not in both.json()


async def test_a_create_with_a_date_time_that_has_no_utc_equivalent_is_422_not_500(crm: CrmEmulator) -> None:
    body = {"start": "0001-01-01T00:00:00+01:00", "end": "2000-01-01T00:00:00Z"}
    async with httpx.AsyncClient(base_url=crm.base_url, headers={"X-Api-Key": crm.token}) as http:
        answer = await http.post("/appointments", json=body, headers={"Idempotency-Key": "k"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "invalid_appointment")
    assert "cannot be expressed in UTC" in answer.json()["error"]["message"]
    assert crm.appointments() == []


async def test_the_longest_contact_lookup_the_contract_allows_gets_a_json_answer(crm: CrmEmulator) -> None:
    """50 emails of 320 characters: a 16 KB request line, past aiohttp's default 8 KB (schemathesis found
    such a request refused in plain text); a 321-character email is the contract's 400, in JSON."""
    longest = [f"{i:03d}@" + "x" * 316 for i in range(50)]
    assert {len(e) for e in longest} == {320}
    async with httpx.AsyncClient(base_url=crm.base_url, headers={"X-Api-Key": crm.token}) as http:
        found = await http.get("/contacts", params=[("email", e) for e in longest])
        too_long = await http.get("/contacts", params=[("email", "a" * 321)])
    assert (found.status_code, found.json()) == (200, {"contacts": []})
    assert (too_long.status_code, too_long.json()["error"]["code"]) == (400, "email_too_long")
