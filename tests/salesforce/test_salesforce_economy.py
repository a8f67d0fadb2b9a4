"""Calls per change through the Salesforce emulator (`connector.calls`, the unit of the 24-hour allocation),
counted, not timed, so a regression fails; and the composite call's all-or-none semantics the connector relies
on: a refused invitee leaves no Event, a subrequest's failure raises what the request alone would.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

import httpx
import pytest

from devstack.salesforce_emulator import API_VERSION, SalesforceEmulator
from sync_core.adapters.crm import salesforce_composite as composite
from sync_core.adapters.crm.salesforce import SalesforceConnector
from sync_core.adapters.crm.salesforce_composite import Sub
from sync_core.adapters.crm.salesforce_wire import FieldProfile
from sync_core.domain.model import Appointment, Attendee, Person, Response
from sync_core.errors import ConcurrencyError, NotFoundError, PermanentError, UnprocessableError
from tests.crm.test_crm_contract import make_appointment
from tests.salesforce.conftest import connect

U1 = "005000000000U01AAA"
C1 = "003000000000C01AAA"
C2 = "003000000000C02AAA"
UPSERT = FieldProfile.of("standard", (), "msync_Key__c")
LOOKUP = FieldProfile.of("standard", (), None)
DELETE = FieldProfile.of("standard", (), None, cancel_by_delete=True)
T = TypeVar("T")


@pytest.fixture
def backend(backend: SalesforceEmulator) -> SalesforceEmulator:
    """tests/salesforce/conftest.py's emulator, reset, with a user and two contacts."""
    backend.seed(
        users=[
            {"id": U1, "email": "alice@contoso.example", "name": "Alice", "mailbox": "alice@contoso.example"}
        ],
        contacts=[
            {"id": C1, "email": "bob@fabrikam.example", "name": "Bob"},
            {"id": C2, "email": "cy@fabrikam.example", "name": "Cy"},
        ],
    )
    return backend


def meeting(subject: str = "Review", *people: str) -> Appointment:
    return make_appointment(
        subject=subject,
        organizer=Person(email="alice@contoso.example", name="Alice"),
        attendees=tuple(Attendee(email=e, name=e, response=Response.ACCEPTED) for e in people),
    )


async def counted(connector: SalesforceConnector, work: Awaitable[T]) -> tuple[int, T]:
    before = connector.calls
    result = await work
    return connector.calls - before, result


# Calls per change before the composite requests (measured on the connector as it was) and now, for the
# lookup-then-create profile, the upsert profile and SALESFORCE_CANCEL=delete (lookup-then-create). The cold
# directory is the key lookup, then User, Contact and Lead queries for two invitees (one unknown).
BEFORE = {
    "create, 2 invitees, cold directory": (7, 7, 7),
    "create, 2 invitees, warm directory": (4, 4, 4),
    "create, no invitees": (3, 3, 3),
    "create again (found by key)": (2, 2, 2),
    "update subject": (3, 3, 3),
    "update attendees (one out, warm)": (4, 4, 4),
    "read (an echo)": (1, 1, 1),
    "cancel": (3, 3, 4),
}
# Lookup-then-create pays one query more than the composite alone: the check that no other worker created
# under the same key meanwhile (test_salesforce_concurrent_create.py); the upsert profile needs no check.
NOW = {
    "create, 2 invitees, cold directory": (6, 6, 6),  # upsert: alone, then invitees + read back
    "create, 2 invitees, warm directory": (3, 3, 3),  # the key lookup, one composite call (+ the check)
    "create, no invitees": (3, 2, 3),
    "create again (found by key)": (2, 2, 2),
    "update subject": (2, 2, 2),  # the read, then PATCH + read back
    "update attendees (one out, warm)": (2, 2, 2),  # the read, then PATCH + invitee removed + read back
    "read (an echo)": (1, 1, 1),
    "cancel": (2, 2, 2),  # the read, then PATCH (and DELETE) + read back
}


@pytest.mark.parametrize(
    "column, profile", [(0, LOOKUP), (1, UPSERT), (2, DELETE)], ids=["lookup", "upsert", "delete"]
)
async def test_calls_per_change(backend: SalesforceEmulator, column: int, profile: FieldProfile) -> None:
    async with connect(backend, profile) as connector:
        calls: dict[str, int] = {}

        async def run(label: str, work: Awaitable[T]) -> T:
            calls[label], result = await counted(connector, work)
            return result

        create = connector.create_appointment
        two = ("bob@fabrikam.example", "nobody@else.example")
        made = await run(
            "create, 2 invitees, cold directory",
            create(meeting("one", *two), idempotency_key="k1", external_ref="ical:1"),
        )
        await run(
            "create, 2 invitees, warm directory",
            create(meeting("two", *two), idempotency_key="k2", external_ref="ical:2"),
        )
        await run(
            "create, no invitees", create(meeting("three"), idempotency_key="k3", external_ref="ical:3")
        )
        await run(
            "create again (found by key)",
            create(meeting("three"), idempotency_key="k3", external_ref="ical:3"),
        )
        made = await run(
            "update subject",
            connector.update_appointment(
                made.crm_id, meeting("renamed"), fields=["subject"], expected_version=made.version
            ),
        )
        made = await run(
            "update attendees (one out, warm)",
            connector.update_appointment(
                made.crm_id,
                meeting("renamed", "nobody@else.example"),
                fields=["attendees"],
                expected_version=made.version,
            ),
        )
        await run("read (an echo)", connector.get_appointment(made.crm_id))
        cancelled = await run("cancel", connector.cancel_appointment(made.crm_id))
    assert calls == {label: now[column] for label, now in NOW.items()}
    assert all(calls[label] <= before[column] for label, before in BEFORE.items())
    assert cancelled.appointment.status.value == "cancelled"
    assert [a.email for a in made.appointment.attendees] == ["nobody@else.example"]
    assert {e["Subject"]: len(backend.relations(e["Id"])) for e in backend.events()} == {
        "two": 1,  # Bob; nobody@else.example is kept by us
        "three": 0,
    } | ({} if profile.cancel_by_delete else {"renamed": 0})


async def test_a_refused_invitee_leaves_no_event(backend: SalesforceEmulator) -> None:
    """All or none: the create and its invitees commit together, so a retry finds nothing half made."""
    async with connect(backend, LOOKUP) as connector:
        connector._people["bob@fabrikam.example"] = ("003000000000ZZZAAA", float("inf"))  # a stale id
        with pytest.raises(UnprocessableError, match="refused an invitee"):
            await connector.create_appointment(
                meeting("one", "bob@fabrikam.example"), idempotency_key="k1", external_ref="ical:1"
            )
        assert backend.events() == []


async def test_outbound_messages_wait_for_the_commit(backend: SalesforceEmulator) -> None:
    """The emulator's outbound message (store.on_change) for a composite call's writes: none when it rolls
    back, each after it commits."""
    seen: list[str] = []
    original = backend.store.on_change
    backend.store.on_change = lambda obj, row: seen.append(obj)
    try:
        async with connect(backend, LOOKUP) as connector:
            connector._people["bob@fabrikam.example"] = ("003000000000ZZZAAA", float("inf"))
            with pytest.raises(UnprocessableError):
                await connector.create_appointment(
                    meeting("one", "bob@fabrikam.example"), idempotency_key="k1", external_ref="ical:1"
                )
            assert seen == []
            connector._people.clear()
            await connector.create_appointment(
                meeting("one", "bob@fabrikam.example"), idempotency_key="k1", external_ref="ical:1"
            )
            assert seen == ["Event", "EventRelation"]
    finally:
        backend.store.on_change = original


async def test_a_subrequest_failure_is_the_error_the_request_alone_raises(
    backend: SalesforceEmulator,
) -> None:
    async with connect(backend, LOOKUP) as connector:
        made = await connector.create_appointment(meeting(), idempotency_key="k", external_ref="ical:1")
        url = f"sobjects/Event/{made.crm_id}"
        gone = "00U000000000GONAAA"
        with pytest.raises(NotFoundError):  # 404 NOT_FOUND, the PATCH before it rolled back
            await composite.send(
                connector,
                [
                    Sub("PATCH", url, "a", {"Subject": "kept?"}),
                    Sub("PATCH", f"sobjects/Event/{gone}", "b", {}),
                ],
                item_id=made.crm_id,
            )
        assert [e["Subject"] for e in backend.events()] == ["Review"]
        backend.advance(timedelta(seconds=5))
        stale = {"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
        with pytest.raises(ConcurrencyError):  # 412 from the guarded subrequest
            await composite.send(connector, [Sub("PATCH", url, "a", {"Subject": "x"}, stale)], item_id=None)
        twins = {"msync_Key__c": "twin"}
        await connector._send("PATCH", url, item_id=None, json_body=twins)
        other = await connector.create_appointment(meeting("b"), idempotency_key="k2", external_ref="ical:2")
        await connector._send("PATCH", f"sobjects/Event/{other.crm_id}", item_id=None, json_body=twins)
        with pytest.raises(PermanentError):  # 300: several records hold the key, an operator hold
            await composite.send(
                connector,
                [Sub("PATCH", "sobjects/Event/msync_Key__c/twin", "a", {"Subject": "y"})],
                item_id=None,
            )


def _token(backend: SalesforceEmulator) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": backend.client_id,
        "client_secret": backend.client_secret,
    }
    return str(httpx.post(f"{backend.base_url}/services/oauth2/token", data=form).json()["access_token"])


def test_an_all_or_none_collection_keeps_nothing_of_a_refused_batch(backend: SalesforceEmulator) -> None:
    headers = {"Authorization": f"Bearer {_token(backend)}"}
    data = f"{backend.base_url}/services/data/{API_VERSION}"
    times = {"StartDateTime": "2026-03-02T09:30:00.000+0000", "EndDateTime": "2026-03-02T10:30:00.000+0000"}
    event = httpx.post(f"{data}/sobjects/Event/", json={"Subject": "s"} | times, headers=headers).json()["id"]
    good = {"attributes": {"type": "EventRelation"}, "EventId": event, "RelationId": C1}
    bad = good | {"RelationId": "003000000000ZZZAAA"}
    for all_or_none, kept in ((True, 0), (False, 1)):
        body = {"allOrNone": all_or_none, "records": [good, bad]}
        answer = httpx.post(f"{data}/composite/sobjects", json=body, headers=headers)
        assert answer.status_code == 200 and [r["success"] for r in answer.json()] == [
            all_or_none is False,
            False,
        ]
        assert len(backend.relations(event)) == kept
    first = answer.json()[0]["id"]
    answer = httpx.delete(
        f"{data}/composite/sobjects",
        params={"ids": f"{first},0RE000000000ZZZAAA", "allOrNone": "true"},
        headers=headers,
    )
    assert [r["success"] for r in answer.json()] == [False, False] and len(backend.relations(event)) == 1


def test_the_emulator_refuses_more_than_25_subrequests_and_6_queries(backend: SalesforceEmulator) -> None:
    token = _token(backend)
    url = f"{backend.base_url}/services/data/{API_VERSION}/composite"
    get = {"method": "GET", "url": f"/services/data/{API_VERSION}/sobjects/User/{U1}"}
    query = {"method": "GET", "url": f"/services/data/{API_VERSION}/query/?q=SELECT+Id+FROM+User"}
    headers = {"Authorization": f"Bearer {token}"}
    many = [get | {"referenceId": f"r{n}"} for n in range(26)]
    assert httpx.post(url, json={"compositeRequest": many}, headers=headers).status_code == 400
    assert httpx.post(url, json={"compositeRequest": many[:25]}, headers=headers).status_code == 200
    queries = [query | {"referenceId": f"q{n}"} for n in range(6)]
    assert httpx.post(url, json={"compositeRequest": queries}, headers=headers).status_code == 400
    answer = httpx.post(url, json={"compositeRequest": queries[:5]}, headers=headers)
    assert answer.status_code == 200 and len(answer.json()["compositeResponse"]) == 5
    assert sum(r.path.endswith("/composite") for r in backend.requests) == 4  # one call each
