"""The Salesforce outbound message door: the golden transcript (fixtures/salesforce/outbound-*.http)
replayed, refusals with their reasons, de-duplication through the real ReplayGuard on Azurite.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.data.tables.aio import TableClient

from devstack.salesforce_emulator.outbound import acknowledged, soap_message
from sync_core.adapters.crm.salesforce_outbound import MAX_BODY_BYTES, NS_OUTBOUND, NS_SOAP, parse_message
from sync_core.adapters.storage.replays import ReplayGuard
from sync_core.domain.messages import CrmChange, decode
from sync_core.ingress.salesforce import handle_salesforce_outbound
from sync_core.ports.crm_webhook import WebhookRejected
from tests import front_door
from tests.golden import Transcript, load_transcript

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "salesforce" / "outbound-notifications.http"
DOC_ORG = "00De0000000pmu1EAA"  # the captured message's organization
DOC_RECORD = "a29e0000000K4P0AAK"
ORG = "00D000000000001EAA"
NOW = datetime(2026, 5, 28, 20, 30, tzinfo=UTC)


def golden() -> Transcript:
    return load_transcript(FIXTURE)


def as_event(body: str) -> bytes:
    """The captured message with its object made an Event (as the REST transcripts adapt Account)."""
    return (
        body.replace("sf:State_Province__c", "sf:Event").replace(DOC_RECORD, "00U" + DOC_RECORD[3:]).encode()
    )


def message(*notifications: tuple[str, str | None], org: str = ORG, obj: str = "Event") -> bytes:
    """An outbound message of `(notification id, Event id or None for "no data")` each."""
    return soap_message(
        org,
        [
            (nid, obj, None if rid is None else {"Id": rid, "msync_Status__c": None})
            for nid, rid in notifications
        ],
    )


def nid(n: int) -> str:
    return f"04l{n:012d}AAA"


def rid(n: int) -> str:
    return f"00U{n:012d}AAA"


class Queue(front_door.Queue):
    """tests/front_door.py's queue, read back as the Event ids it was handed."""

    def ids(self) -> list[str]:
        out = []
        for text in self.sent:
            change = decode(text)
            assert isinstance(change, CrmChange) and change.change_type == "updated"
            out.append(change.crm_id)
        return out


async def deliver(
    body: bytes,
    queue: Queue,
    table: TableClient,
    *,
    org_id: str | None = ORG,
    connector: str = "salesforce",
    now: datetime = NOW,
) -> tuple[int, str]:
    reply = await handle_salesforce_outbound(
        body, connector=connector, org_id=org_id, enqueue=queue.enqueue, replays=ReplayGuard(table), now=now
    )
    assert reply.content_type.startswith("text/xml")
    return reply.status, reply.body


def is_ack(body: str) -> bool:
    return acknowledged(body.encode())


def fault_string(body: str) -> str:
    found = ET.fromstring(body).find(f"{{{NS_SOAP}}}Body/{{{NS_SOAP}}}Fault/faultstring")
    assert found is not None, body
    return found.text or ""


# -- the golden transcript ------------------------------------------------------------------------------


def test_the_fixture_names_its_sources_and_decodes_to_what_the_capture_says() -> None:
    t = golden()
    assert t.source.startswith("https://developer.salesforce.com/") and "outboundmessaging" in t.source
    assert t.request.start == "POST /api/crm/salesforce/webhook HTTP/1.1"
    parsed = parse_message(t.request.body.encode())
    assert (parsed.organization_id, parsed.action_id) == (DOC_ORG, "04ke0000000Cb2DAAS")
    [n] = parsed.notifications
    assert (n.notification_id, n.object_type, n.record_id) == (
        "04le0000004lnFFAAY",
        "State_Province__c",
        DOC_RECORD,
    )
    assert dict(n.fields) == {
        "Id": DOC_RECORD,
        "Abbrev__c": "AR",
        "Country__c": "a28e00000002hMtAAI",
        "Name": "Arkansas",
    }


async def test_the_captured_message_adapted_to_an_event_is_queued_and_acknowledged_as_documented(
    seen: TableClient,
) -> None:
    t, queue = golden(), Queue()
    status, body = await deliver(as_event(t.request.body), queue, seen, org_id=DOC_ORG[:15])
    assert status == int(t.response.start.split()[1]) == 200
    assert is_ack(body) and is_ack(t.response.body)
    ours, documented = ET.fromstring(body), ET.fromstring(t.response.body)
    assert [e.tag for e in ours.iter()] == [e.tag for e in documented.iter()]
    assert [e.tag for e in ours.iter()][-2:] == [
        f"{{{NS_OUTBOUND}}}notificationsResponse",
        f"{{{NS_OUTBOUND}}}Ack",
    ]
    assert queue.ids() == ["00U" + DOC_RECORD[3:]]


async def test_the_captured_message_as_published_is_about_another_object_and_refused(
    seen: TableClient,
) -> None:
    queue = Queue()
    status, body = await deliver(golden().request.body.encode(), queue, seen, org_id=DOC_ORG)
    assert status == 422 and "State_Province__c" in fault_string(body) and queue.sent == []


# -- the organization --------------------------------------------------------------------------------------


@pytest.mark.parametrize("configured", [ORG, ORG[:15]], ids=["18", "15"])
async def test_our_org_id_in_either_form_is_taken(configured: str, seen: TableClient) -> None:
    queue = Queue()
    assert (await deliver(message((nid(1), rid(1))), queue, seen, org_id=configured))[0] == 200
    assert (await deliver(message((nid(2), rid(2)), org=ORG[:15]), queue, seen, org_id=configured))[0] == 200
    assert queue.ids() == [rid(1), rid(2)]


@pytest.mark.parametrize(
    ("org", "configured"),
    [
        ("00D000000000002EAA", ORG),
        ("00D00000000000aEAA", "00D00000000000AEAA"),  # a 15-character id is case-sensitive
        ("not-an-org", ORG),
        (ORG, None),
    ],
    ids=["other", "case", "garbage", "unset"],
)
async def test_another_organization_is_403_and_nothing_is_queued(
    org: str, configured: str | None, seen: TableClient
) -> None:
    queue = Queue()
    status, body = await deliver(message((nid(1), rid(1)), org=org), queue, seen, org_id=configured)
    assert status == 403 and queue.sent == []
    assert ("SALESFORCE_ORG_ID" if configured is None else "OrganizationId") in fault_string(body)


# -- refusals: a clear 4xx, nothing queued ----------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&lol2;</soapenv:Body>
</soapenv:Envelope>"""
EXTERNAL = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><x>&xxe;</x>"""
UTF16_DOCTYPE = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'.encode(
    "utf-16"
)


@pytest.mark.parametrize(
    ("body", "status", "said"),
    [
        (BILLION_LAUGHS, 400, "document type"),
        (EXTERNAL, 400, "document type"),
        (UTF16_DOCTYPE, 400, "document type"),
        (b"<x>&undefined;</x>", 400, "malformed XML"),
        (b"not xml", 400, "malformed XML"),
        (b"", 400, "empty"),
        (b'{"OrganizationId": "00D000000000001EAA"}', 400, "malformed XML"),
        (b"<Envelope/>", 400, "Envelope"),
        (message().replace(b"OrganizationId>", b"Organization>"), 400, "OrganizationId"),
        (message(), 400, "no Notification"),
        (message(*[(nid(i), rid(i)) for i in range(101)]), 400, "at most 100"),
        (message((nid(1), "00U-bad")), 400, "sObject Id"),
        (message(("04l-bad", rid(1))), 400, "Notification Id"),
        (message((nid(1), rid(1)), obj="Task"), 422, "'Task'"),
        (b" " * (MAX_BODY_BYTES + 1), 413, "larger"),
    ],
    ids=[
        "billion-laughs", "external-entity", "utf16-doctype", "undefined-entity", "text", "empty",
        "json", "not-soap", "no-org", "no-notification", "101", "bad-record-id", "bad-notification-id",
        "task", "large",
    ],
)  # fmt: skip
async def test_what_is_not_an_outbound_message_for_events_is_refused_with_the_reason(
    body: bytes, status: int, said: str, seen: TableClient
) -> None:
    queue = Queue()
    got, reply = await deliver(body, queue, seen)
    assert (got, queue.sent) == (status, [])
    assert said in fault_string(reply)
    assert [e async for e in seen.list_entities()] == []


def test_a_doctype_is_refused_before_any_entity_is_expanded() -> None:
    with pytest.raises(WebhookRejected) as caught:
        parse_message(BILLION_LAUGHS)
    assert caught.value.status == 400 and "document type" in caught.value.reason


async def test_with_another_connector_the_door_is_404(seen: TableClient) -> None:
    queue = Queue()
    status, body = await deliver(message((nid(1), rid(1))), queue, seen, connector="dataverse")
    assert status == 404 and "CRM_CONNECTOR=salesforce" in fault_string(body) and queue.sent == []


# -- many notifications, duplicates, failures ------------------------------------------------------------


async def test_a_hundred_notifications_are_a_hundred_hints_and_one_ack(seen: TableClient) -> None:
    queue = Queue()
    status, body = await deliver(message(*[(nid(i), rid(i)) for i in range(100)]), queue, seen)
    assert status == 200 and is_ack(body)
    assert queue.ids() == [rid(i) for i in range(100)]


async def test_a_notification_delivered_again_is_acknowledged_and_queued_once(seen: TableClient) -> None:
    queue = Queue()
    body = message((nid(1), rid(1)))
    assert (await deliver(body, queue, seen))[0] == 200
    status, again = await deliver(body, queue, seen, now=NOW + timedelta(minutes=3))
    assert status == 200 and is_ack(again)
    # A retry may batch it with a new notification: only the new one is queued.
    assert (await deliver(message((nid(1), rid(1)), (nid(2), rid(1))), queue, seen))[0] == 200
    assert queue.ids() == [rid(1), rid(1)]


async def test_another_organizations_notification_id_is_not_a_duplicate_of_ours(seen: TableClient) -> None:
    queue = Queue()
    other = "00D000000000002EAA"
    assert (await deliver(message((nid(1), rid(1)), org=other), queue, seen, org_id=other))[0] == 200
    assert (await deliver(message((nid(1), rid(2))), queue, seen))[0] == 200
    assert queue.ids() == [rid(1), rid(2)]


async def test_a_record_deleted_before_sending_is_acknowledged_without_a_hint(seen: TableClient) -> None:
    queue = Queue()
    status, body = await deliver(message((nid(1), None)), queue, seen)
    assert status == 200 and is_ack(body) and queue.sent == []


async def test_a_change_that_could_not_be_queued_is_503_not_acknowledged_and_then_taken(
    seen: TableClient,
) -> None:
    queue = Queue()
    body = message((nid(1), rid(1)), (nid(2), rid(2)))
    queue.fail = True
    status, reply = await deliver(body, queue, seen)
    assert status == 503 and not is_ack(reply) and "try again" in fault_string(reply)
    queue.fail = False
    status, reply = await deliver(body, queue, seen)
    assert status == 200 and is_ack(reply) and queue.ids() == [rid(1), rid(2)]


async def test_an_unreachable_dedupe_table_is_503(storage_connection_string: str, unique_name: str) -> None:
    queue = Queue()
    async with TableClient.from_connection_string(storage_connection_string, f"Gone{unique_name}") as table:
        status, reply = await deliver(message((nid(1), rid(1))), queue, table)  # the table does not exist
    assert status == 503 and not is_ack(reply) and queue.sent == []


def test_the_emulators_message_has_the_shape_of_the_documented_one() -> None:
    documented = ET.fromstring(golden().request.body)
    ours = ET.fromstring(message((nid(1), rid(1))))
    head = [e.tag for e in documented.iter() if not e.tag.startswith("{urn:sobject")]
    assert [e.tag for e in ours.iter() if not e.tag.startswith("{urn:sobject")] == head
