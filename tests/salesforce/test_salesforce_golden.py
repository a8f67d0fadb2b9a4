"""Golden transcripts: documented Salesforce REST API request/response examples
(tests/fixtures/salesforce/*.http, each with its source URL in a header), replayed against the emulator.

The pages' examples use Account and Merchandise__c; the emulator serves Event, so the replay adapts the
object, its fields (OBJECT_TO_EVENT) and the API version, adds the times an Event requires, and moves the
pages' 2013 replication windows to the emulator's today. Compared, with ids, times and data masked: the
status, the documented headers' form, the JSON structure (keys, `attributes.type`, URL shapes) and error
bodies word for word.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from devstack.salesforce_emulator import API_VERSION, SalesforceEmulator
from tests.golden import Transcript, load_transcript

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "salesforce"
OBJECT_TO_EVENT = {
    "Account": "Event",
    "Merchandise__c": "Event",
    "customExtIdField__c": "msync_Key__c",
    "ExternalAcctId__c": "msync_Key__c",
    "Name": "Subject",
    "name": "subject",
    "Type": "Location",
}
_WORD = re.compile(r"\b(" + "|".join(sorted(OBJECT_TO_EVENT, key=len, reverse=True)) + r")\b")
_ID = re.compile(r"\b[0-9a-zA-Z]{3}[0-9A-Za-z]{12}(?:[0-9A-Za-z]{3})?\b")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
TIMES = {"StartDateTime": "2026-03-02T09:30:00.000+0000", "EndDateTime": "2026-03-02T10:30:00.000+0000"}


def load(name: str) -> Transcript:
    return load_transcript(FIXTURES / name)


def adapt(text: str) -> str:
    return re.sub(r"/v\d+\.0/", f"/{API_VERSION}/", _WORD.sub(lambda m: OBJECT_TO_EVENT[m.group(1)], text))


def mask(value: Any, key: str = "") -> Any:
    """Ids, times and data out of the way; keys, `attributes.type` and URL shapes kept."""
    if isinstance(value, dict):
        return {k: mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, key) for v in value]
    if isinstance(value, str):
        if _TIME.match(value):
            return "<time>"
        if key in ("type", "errorCode", "message"):
            return value
        if key == "url" or key == "":
            return _ID.sub("<id>", value)
        return "<id>" if _ID.fullmatch(value) else "<data>"
    return value


@pytest.fixture
def client(backend: SalesforceEmulator) -> Iterator[httpx.Client]:
    form = {
        "grant_type": "client_credentials",
        "client_id": backend.client_id,
        "client_secret": backend.client_secret,
    }
    token = httpx.post(f"{backend.base_url}/services/oauth2/token", data=form).json()["access_token"]
    with httpx.Client(
        base_url=backend.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=5.0
    ) as c:
        yield c


def replay(
    client: httpx.Client, t: Transcript, *, path: str | None = None, event: bool = True
) -> httpx.Response:
    method, target, _ = adapt(t.request.start).split(" ")
    body = json.loads(adapt(t.request.body)) if t.request.body else None
    if isinstance(body, dict) and event and method in ("POST", "PATCH") and "id" not in body:
        body |= TIMES  # an Event needs its times; the pages' Account does not
    return client.request(method, path or target, json=body)


def expect(response: httpx.Response, t: Transcript) -> Any:
    documented = t.response
    assert response.status_code == int(documented.start.split(" ")[1]), response.text
    wanted = json.loads(adapt(documented.body))
    got = response.json()
    if isinstance(wanted, list) and wanted and "errorCode" in wanted[0]:
        assert got == wanted  # error bodies word for word
    else:
        assert mask(got) == mask(wanted)
    return got


def _event(client: httpx.Client, subject: str) -> str:
    made = client.post(f"/services/data/{API_VERSION}/sobjects/Event/", json={"Subject": subject, **TIMES})
    made.raise_for_status()
    return str(made.json()["id"])


def test_every_transcript_names_its_source() -> None:
    files = sorted(FIXTURES.glob("*.http"))
    assert len(files) >= 9
    for f in files:
        assert re.fullmatch(
            r"https://developer\.salesforce\.com/docs/\S+\.(htm|html|md)", load(f.name).source
        ), f.name


def test_create_a_record(client: httpx.Client) -> None:
    t = load("create-record.http")
    got = expect(replay(client, t), t)
    assert got["id"].startswith("00U") and len(got["id"]) == 18  # an Event id


def test_create_a_record_with_an_id_is_refused(client: httpx.Client) -> None:
    t = load("create-record-with-id.http")
    expect(replay(client, t), t)


def test_execute_a_soql_query(client: httpx.Client) -> None:
    t = load("query.http")
    _event(client, "Test 1")
    _event(client, "Test 2")
    response = replay(client, t)
    documented = json.loads(adapt(t.response.body))
    got = response.json()
    assert response.status_code == 200 and got["done"] is True and got["totalSize"] == 2
    assert mask(got["records"]) == mask(documented["records"])


def _window(t: Transcript, emulator_now: datetime) -> str:
    _, target, _ = adapt(t.request.start).split(" ")
    start = (emulator_now - timedelta(days=1)).replace(second=0, microsecond=0)
    end = emulator_now + timedelta(minutes=2)
    base = target.split("?", 1)[0]
    iso = "%Y-%m-%dT%H:%M:%S+00:00"
    return f"{base}?start={quote(start.strftime(iso), safe='')}&end={quote(end.strftime(iso), safe='')}"


def test_get_updated_and_deleted_windows(client: httpx.Client, backend: SalesforceEmulator) -> None:
    kept = [_event(client, "a"), _event(client, "b"), _event(client, "c")]
    gone = _event(client, "d")
    client.delete(f"/services/data/{API_VERSION}/sobjects/Event/{gone}").raise_for_status()
    backend.advance(timedelta(minutes=1))  # whole minutes: the windows ignore seconds
    now = datetime.now(UTC) + timedelta(minutes=1)
    updated = load("get-updated.http")
    got = expect(replay(client, updated, path=_window(updated, now)), updated)
    assert got["ids"] == kept and got["latestDateCovered"].endswith(":00.000+0000")
    deleted = load("get-deleted.http")
    got = expect(replay(client, deleted, path=_window(deleted, now)), deleted)
    assert [d["id"] for d in got["deletedRecords"]] == [gone]


def test_the_limit_info_header_on_a_record(client: httpx.Client) -> None:
    t = load("limit-info-header.http")
    key = _event(client, "Phone Case - iPhone 4/4S")
    _, target, _ = adapt(t.request.start).split(" ")
    response = client.get(_ID.sub(key, target))
    assert response.status_code == 200
    assert re.fullmatch(r"api-usage=\d+/\d+", response.headers["Sforce-Limit-Info"])
    assert re.fullmatch(
        t.response.headers["Sforce-Limit-Info"].replace("18/5000", r"\d+/\d+"),
        response.headers["Sforce-Limit-Info"],
    )
    documented = mask(json.loads(adapt(t.response.body)))
    got = mask(response.json())
    assert {k: got[k] for k in documented} == documented  # every documented field, in its form


def test_upsert_a_new_record_then_the_same_key_updates_it(client: httpx.Client) -> None:
    t = load("upsert-new-record.http")
    got = expect(replay(client, t), t)
    again = replay(client, t)
    assert again.status_code == 200 and again.json() == {
        "id": got["id"],
        "errors": [],
        "success": True,
        "created": False,
    }


def test_upsert_on_a_key_two_records_hold_answers_300(client: httpx.Client) -> None:
    t = load("upsert-new-record.http")
    first = replay(client, t).json()["id"]
    second = _event(client, "twin")
    client.patch(
        f"/services/data/{API_VERSION}/sobjects/Event/{second}", json={"msync_Key__c": "11999"}
    ).raise_for_status()
    response = replay(client, t)
    assert response.status_code == 300
    assert [u.rsplit("/", 1)[1] for u in response.json()] == [first, second]


COMPOSITE_RELATION = {"Contact": "EventRelation", "AccountId": "EventId", "LastName": "RelationId"}


def test_composite_upsert_then_a_child_that_references_it(
    client: httpx.Client, backend: SalesforceEmulator
) -> None:
    """The page's Account upsert and Contact create are an Event upsert and an EventRelation create here:
    the invitee names the Event the first subrequest made through `@{NewAccount.id}`."""
    t = load("composite-upsert-and-create.http")
    backend.seed(contacts=[{"id": "003000000000HARAAA", "email": "harrison@example.com", "name": "Harrison"}])

    def relation(text: str) -> str:
        text = re.sub(
            r"\b(Contact|AccountId|LastName)\b", lambda m: COMPOSITE_RELATION[m.group(1)], adapt(text)
        )
        return text.replace('"Harrison"', '"003000000000HARAAA"')

    method, target, _ = adapt(t.request.start).split(" ")
    body = json.loads(relation(t.request.body))
    body["compositeRequest"][0]["body"] |= TIMES
    response = client.request(method, target, json=body)
    assert response.status_code == 200, response.text
    wanted = json.loads(relation(t.response.body))
    got = response.json()
    assert mask(got) == mask(wanted)
    event, invitee = (r["body"]["id"] for r in got["compositeResponse"])
    assert event.startswith("00U") and invitee.startswith("0RE")
    assert [r["httpHeaders"]["Location"] for r in got["compositeResponse"]] == [
        f"/services/data/{API_VERSION}/sobjects/Event/{event}",
        f"/services/data/{API_VERSION}/sobjects/EventRelation/{invitee}",
    ]
    assert [r["EventId"] for r in backend.relations(event)] == [event]
