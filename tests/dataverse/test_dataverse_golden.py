"""Golden transcripts: documented Dataverse Web API request/response pairs (tests/fixtures/dataverse/*.http,
each with its source repo@commit:path in a header), replayed against the Dataverse emulator.

Microsoft's examples use `accounts`; the emulator serves `appointments`, so the replay adapts the entity set,
the key and the columns (ACCOUNT_TO_APPOINTMENT) and compares, with ids, ETags, tokens and data masked:
the status, the documented headers, the JSON structure (keys and annotations), the OData context fragments,
and the error messages word for word. The error `code` is not compared: the pages show it empty.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.golden import Transcript, load_transcript

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dataverse"
ACCOUNT_TO_APPOINTMENT = {
    "accounts": "appointments",
    "accountid": "activityid",
    "account": "appointment",
    "name": "subject",
    "accountnumber": "location",
    "telephone1": "description",
    "fax": "category",
}
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_WORD = re.compile(r"\b(" + "|".join(sorted(ACCOUNT_TO_APPOINTMENT, key=len, reverse=True)) + r")\b")


def load(name: str) -> Transcript:
    return load_transcript(FIXTURES / name)


def adapt(text: str) -> str:
    return _WORD.sub(lambda m: ACCOUNT_TO_APPOINTMENT[m.group(1)], text)


def mask(value: Any) -> Any:
    """Ids, ETags, links and data out of the way; keys, annotations and context fragments kept."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "@odata.context":
                out[k] = str(v).split("#", 1)[1]
            elif k in ("@odata.deltaLink", "@odata.nextLink"):
                out[k] = "<link with $deltatoken>" if "$deltatoken=" in str(v) else "<link>"
            elif k == "@odata.etag":
                out[k] = "<etag>" if re.fullmatch(r'W/"\d+"', str(v)) else v
            elif k in ("id", "activityid", "accountid", "reason", "value"):
                out[k] = mask(v)
            else:
                out[k] = "<data>"
        return out
    if isinstance(value, list):
        return [mask(v) for v in value]
    if isinstance(value, str):
        return _GUID.sub("<guid>", value)
    return value


def replay(
    client: httpx.Client, transcript: Transcript, *, key: str | None = None, etag: str | None = None
) -> httpx.Response:
    method, _, rest = adapt(transcript.request.start).partition(" ")
    path = rest.split("/api/data/v9.0/", 1)[1].removesuffix(" HTTP/1.1").strip()
    if key is not None:
        path = _GUID.sub(key, path, count=1)
    headers = {k: v for k, v in transcript.request.headers.items() if k not in ("Content-Type",)}
    if etag is not None:
        for name in ("If-Match", "If-None-Match"):
            if name in headers and headers[name] != "*":
                headers[name] = etag
    body = json.loads(adapt(transcript.request.body)) if transcript.request.body else None
    return client.request(method, path.replace("%24", "$"), headers=headers, json=body)


def expect(response: httpx.Response, transcript: Transcript, *, key: str | None = None) -> None:
    documented = transcript.response
    assert response.status_code == int(documented.start.split(" ")[1]), response.text
    for name in ("OData-Version", "Preference-Applied"):
        if name in documented.headers:
            assert response.headers.get(name) == documented.headers[name]
    if not documented.body:
        assert response.content == b""
        return
    wanted = json.loads(adapt(documented.body))
    got = response.json()
    if "error" in wanted:
        message = wanted["error"]["message"]
        if key is not None:
            message = _GUID.sub(key, message)
        assert set(got) == {"error"} and set(got["error"]) == {"code", "message"}
        assert got["error"]["message"] == message
        return
    assert mask(got) == mask(wanted)


def _appointment(client: httpx.Client, key: str | None = None) -> tuple[str, str]:
    row_id = key or str(uuid.uuid4())
    body = {
        "subject": "Monte Orton",
        "scheduledstart": "2026-03-02T09:30:00Z",
        "scheduledend": "2026-03-02T10:30:00Z",
    }
    client.patch(f"appointments({row_id})", json=body).raise_for_status()
    etag = client.get(f"appointments({row_id})?$select=subject").json()["@odata.etag"]
    return row_id, etag


def test_every_transcript_names_its_source() -> None:
    files = sorted(FIXTURES.glob("*.http"))
    assert len(files) >= 7
    for f in files:
        assert re.fullmatch(
            r"MicrosoftDocs/powerapps-docs@[0-9a-f]{40}:powerapps-docs/\S+\.md", load(f.name).source
        )


def test_prevent_update_in_upsert(client: httpx.Client) -> None:
    t = load("prevent-update-in-upsert.http")
    key, _ = _appointment(client)
    expect(replay(client, t, key=key), t)


def test_prevent_create_in_upsert(client: httpx.Client) -> None:
    t = load("prevent-create-in-upsert.http")
    key = str(uuid.uuid4())
    expect(replay(client, t, key=key), t, key=key)
    assert client.get(f"appointments({key})").status_code == 404  # nothing was created


@pytest.mark.parametrize("name", ["optimistic-concurrency-update.http", "optimistic-concurrency-delete.http"])
def test_optimistic_concurrency(client: httpx.Client, name: str) -> None:
    t = load(name)
    key, etag = _appointment(client)
    expect(replay(client, t, key=key), t)  # the documented stale ETag W/"470867"
    assert client.get(f"appointments({key})?$select=subject").json()["@odata.etag"] == etag  # unchanged


def test_conditional_retrieval(client: httpx.Client) -> None:
    t = load("conditional-retrieval.http")
    key, etag = _appointment(client)
    expect(replay(client, t, key=key, etag=etag), t)


def test_change_tracking_initial_then_delta(client: httpx.Client) -> None:
    first = load("change-tracking-initial.http")
    kept, _ = _appointment(client)
    gone, _ = _appointment(client)
    client.delete(f"appointments({gone})").raise_for_status()
    response = replay(client, first)
    expect(response, first)
    delta_link = response.json()["@odata.deltaLink"]
    client.patch(f"appointments({kept})", json={"subject": "Monte Orton, again"}, headers={"If-Match": "*"})
    other, _ = _appointment(client)
    client.delete(f"appointments({other})").raise_for_status()  # created and deleted since: listed as deleted
    second = load("change-tracking-delta.http")
    got = client.get(delta_link, headers={"OData-Version": "4.0"})
    assert got.status_code == 200
    body = got.json()
    documented = json.loads(adapt(second.response.body))
    # The page's delta row lists fewer columns than its request selected (its context names
    # `accounts(name,telephone1,fax)`): the documented keys must all be there, the deleted entity exactly.
    row, deleted = mask(body["value"])
    doc_row, doc_deleted = mask(documented["value"])
    assert set(doc_row) <= set(row) and {k: row[k] for k in doc_row} == doc_row
    assert deleted == doc_deleted
    assert mask(body)["@odata.context"].endswith("/$delta") and "$deltatoken=" in body["@odata.deltaLink"]
    assert [r.get("activityid") or r.get("id") for r in body["value"]] == [kept, other]
