"""The Dataverse webhook door (sync_core/ingress/dataverse.py) and the emulator's webhook sender.

The documented RemoteExecutionContext (tests/fixtures/dataverse/webhook-remote-execution-context.txt, its
source in its header) is replayed: as published (a contact Update) it is refused with a reason; adapted to an
appointment it is queued as one CrmChange. The emulator's contexts have the documented shape (the same keys at
every level, the same JSON types), and they pass the real door, de-duplicated through the real ReplayGuard
on Azurite.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from azure.data.tables.aio import TableClient

from devstack.dataverse_emulator import DataverseEmulator
from sync_core.adapters.crm.dataverse_webhook import KEY_HEADER, MAX_BODY_BYTES, ms_date, parse_context
from sync_core.adapters.storage.replays import ReplayGuard
from sync_core.domain.messages import CrmChange, decode
from sync_core.ingress.dataverse import handle_dataverse_webhook
from tests import front_door

FIXTURE = (
    Path(__file__).resolve().parents[1] / "fixtures" / "dataverse" / "webhook-remote-execution-context.txt"
)
SECRET = "dataverse-secret-0123456789abcdef"
NEXT_SECRET = "dataverse-next-secret-fedcba987654"
NOW = datetime(2026, 5, 28, 20, 30, tzinfo=UTC)
DOC_ID = "6d81597f-0f9f-e711-8122-000d3aa2331c"  # the page's PrimaryEntityId


def documented() -> tuple[str, bytes]:
    """(source, body) of the documented example: the body exactly as the page prints it."""
    text = FIXTURE.read_text()
    source = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("# source:"))
    return source, text.split("\n\n", 1)[1].encode()


def as_appointment(body: bytes) -> bytes:
    """The documented context with its table changed from contact to appointment (as the golden transcripts
    adapt accounts to appointments); everything else as published."""
    data = json.loads(body)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (
                    "appointment" if k in ("PrimaryEntityName", "LogicalName") and v == "contact" else walk(v)
                )
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [walk(x) for x in node]
        return node

    return json.dumps(walk(data)).encode()


def context(message: str = "Update", entity_id: str | None = None, **changes: Any) -> bytes:
    data = json.loads(as_appointment(documented()[1]))
    data |= {"MessageName": message, "PrimaryEntityId": entity_id or str(uuid.uuid4())}
    return json.dumps(data | changes).encode()


class Queue(front_door.Queue):
    """tests/front_door.py's queue, read back as the (activityid, change type) it was handed."""

    def changes(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for text in self.sent:
            message = decode(text)
            assert isinstance(message, CrmChange)
            out.append((message.crm_id, message.change_type))
        return out


async def deliver(
    body: bytes,
    queue: Queue,
    table: TableClient,
    *,
    headers: dict[str, str] | None = None,
    secrets: tuple[str, ...] = (SECRET,),
    connector: str = "dataverse",
    now: datetime = NOW,
) -> tuple[int, dict[str, Any]]:
    reply = await handle_dataverse_webhook(
        {KEY_HEADER: SECRET} if headers is None else headers,
        body,
        connector=connector,
        secrets=secrets,
        enqueue=queue.enqueue,
        replays=ReplayGuard(table),
        now=now,
    )
    return reply.status, json.loads(reply.body)


# -- the documented example ------------------------------------------------------------------------------


def test_the_fixture_is_the_documented_example_with_its_source() -> None:
    source, body = documented()
    assert source.startswith("MicrosoftDocs/powerapps-docs@") and source.endswith("use-webhooks.md")
    data = json.loads(body)
    assert (data["MessageName"], data["PrimaryEntityName"], data["Stage"], data["Mode"]) == (
        "Update",
        "contact",
        40,
        1,
    )
    assert ms_date(data["OperationCreatedOn"]) == datetime.fromtimestamp(1506409448, tz=UTC)


async def test_the_documented_contact_update_is_refused_with_the_reason(seen: TableClient) -> None:
    queue = Queue()
    status, body = await deliver(documented()[1], queue, seen)
    assert status == 422 and "contact" in body["error"] and "appointment" in body["error"]
    assert queue.sent == [] and [e async for e in seen.list_entities()] == []


async def test_the_documented_context_of_an_appointment_is_queued_as_one_hint(seen: TableClient) -> None:
    queue = Queue()
    assert await deliver(as_appointment(documented()[1]), queue, seen) == (202, {"accepted": 1})
    assert queue.changes() == [(DOC_ID, "updated")]


@pytest.mark.parametrize(
    ("message", "change"), [("Create", "created"), ("Update", "updated"), ("Delete", "deleted")]
)
async def test_each_message_we_take_becomes_its_change_type(
    message: str, change: str, seen: TableClient
) -> None:
    queue = Queue()
    entity = str(uuid.uuid4())
    assert (await deliver(context(message, entity), queue, seen))[0] == 202
    assert queue.changes() == [(entity, change)]


async def test_an_upper_case_or_braced_id_is_the_canonical_guid(seen: TableClient) -> None:
    queue = Queue()
    entity = str(uuid.uuid4())
    await deliver(context("Update", "{" + entity.upper() + "}"), queue, seen)
    assert queue.changes() == [(entity, "updated")]


# -- refusals: a clear 4xx, nothing queued ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "said"),
    [
        (b"not json", 400, "malformed JSON"),
        (b"[]", 400, "RemoteExecutionContext JSON object"),
        (context("Assign"), 422, "MessageName 'Assign'"),
        (context("SetStateDynamicEntity"), 422, "Create, Update, Delete"),
        (context(PrimaryEntityName="contact"), 422, "PrimaryEntityName 'contact'"),
        (context(PrimaryEntityId="apt-1"), 400, "PrimaryEntityId must be a GUID"),
        (context(PrimaryEntityId="00000000-0000-0000-0000-000000000000"), 400, "PrimaryEntityId"),
        (context(MessageName=None), 400, "MessageName"),
        (context(OperationId="op-1"), 400, "OperationId is not a GUID"),
        (b" " * (MAX_BODY_BYTES + 1), 413, "larger"),
    ],
    ids=["not-json", "array", "assign", "setstate", "contact", "id", "nil-id", "no-message", "op", "large"],
)
async def test_what_we_do_not_take_is_refused_with_the_reason(
    body: bytes, status: int, said: str, seen: TableClient
) -> None:
    queue = Queue()
    got, reply = await deliver(body, queue, seen)
    assert (got, queue.sent) == (status, [])
    assert said in reply["error"]


@pytest.mark.parametrize(
    "headers",
    [{}, {KEY_HEADER: ""}, {KEY_HEADER: "wrong"}, {KEY_HEADER: SECRET + "x"}, {"x-functions-key": SECRET}],
    ids=["none", "empty", "wrong", "longer", "other-header"],
)
async def test_without_the_key_it_is_401_and_nothing_is_read(
    headers: dict[str, str], seen: TableClient
) -> None:
    queue = Queue()
    status, reply = await deliver(b"not even json", queue, seen, headers=headers)
    assert status == 401 and KEY_HEADER in reply["error"] and queue.sent == []


async def test_either_secret_of_a_rotation_is_taken_and_the_header_name_has_no_case(
    seen: TableClient,
) -> None:
    queue = Queue()
    rotation = (SECRET, NEXT_SECRET)
    assert (await deliver(context(), queue, seen, headers={KEY_HEADER: SECRET}, secrets=rotation))[0] == 202
    upper = {KEY_HEADER.upper(): NEXT_SECRET}
    assert (await deliver(context(), queue, seen, headers=upper, secrets=rotation))[0] == 202
    assert (await deliver(context(), queue, seen, headers={KEY_HEADER: NEXT_SECRET}))[0] == 401
    assert len(queue.sent) == 2


async def test_with_another_connector_the_door_is_404(seen: TableClient) -> None:
    queue = Queue()
    status, reply = await deliver(context(), queue, seen, connector="rest")
    assert status == 404 and "CRM_CONNECTOR=dataverse" in reply["error"] and queue.sent == []


# -- de-duplication --------------------------------------------------------------------------------------


async def test_a_delivery_repeated_is_answered_200_and_queued_once(seen: TableClient) -> None:
    queue = Queue()
    body = context("Update", OperationId=str(uuid.uuid4()))
    assert await deliver(body, queue, seen) == (202, {"accepted": 1})
    later = NOW + timedelta(minutes=3)
    assert await deliver(body, queue, seen, now=later) == (200, {"accepted": 0, "duplicate": True})
    assert len(queue.sent) == 1


async def test_another_operation_on_the_same_record_is_queued_again(seen: TableClient) -> None:
    queue = Queue()
    entity = str(uuid.uuid4())
    for _ in range(2):
        assert (await deliver(context("Update", entity, OperationId=str(uuid.uuid4())), queue, seen))[
            0
        ] == 202
    assert queue.changes() == [(entity, "updated")] * 2


async def test_without_an_operation_id_an_identical_body_is_the_duplicate(seen: TableClient) -> None:
    queue = Queue()
    body = context("Update", OperationId=None, OperationCreatedOn=None)
    assert (await deliver(body, queue, seen))[0] == 202
    assert (await deliver(body, queue, seen, now=NOW + timedelta(seconds=20)))[0] == 200
    assert (await deliver(context("Update", OperationId=None), queue, seen))[0] == 202
    assert len(queue.sent) == 2


async def test_a_change_that_could_not_be_queued_is_503_so_dataverse_retries_and_then_taken(
    seen: TableClient,
) -> None:
    queue = Queue()
    body = context("Update", OperationId=str(uuid.uuid4()))
    queue.fail = True
    status, reply = await deliver(body, queue, seen)
    assert status == 503 and "try again" in reply["error"]
    queue.fail = False
    assert await deliver(body, queue, seen) == (202, {"accepted": 1})


def test_the_dedupe_key_tells_apart_steps_of_one_operation() -> None:
    op = str(uuid.uuid4())
    entity = str(uuid.uuid4())
    keys = {
        parse_context(context("Update", entity, OperationId=op, Stage=stage)).dedupe_key for stage in (20, 40)
    }
    assert len(keys) == 2


# -- the emulator's webhook ---------------------------------------------------------------------------------


def shape(node: Any) -> Any:
    """Keys and JSON types, values gone; a list is the shape of its items (all alike in these contexts)."""
    if isinstance(node, dict):
        return {k: shape(v) for k, v in node.items()}
    if isinstance(node, list):
        return [shape(node[0])] if node else []
    return type(node).__name__


class Receiver(front_door.Loopback):
    """A loopback endpoint in front of the real door; `answers` are returned first, in order."""

    path = "/api/crm/dataverse/webhook"

    def __init__(self, table: TableClient) -> None:
        super().__init__()
        self.queue = Queue()
        self.table = table
        self.answers: list[int] = []
        self.headers: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        if self.answers:
            return web.Response(status=self.answers.pop(0))
        reply = await handle_dataverse_webhook(
            dict(request.headers),
            await request.read(),
            connector="dataverse",
            secrets=(SECRET,),
            enqueue=self.queue.enqueue,
            replays=ReplayGuard(self.table),
            now=datetime.now(UTC),
        )
        return web.Response(status=reply.status, text=reply.body, content_type="application/json")


@pytest.fixture(scope="module")
def emulator() -> Iterator[DataverseEmulator]:
    with DataverseEmulator() as emu:
        emu.seed(
            users=[
                {
                    "id": str(uuid.uuid4()),
                    "email": "adele@contoso.example",
                    "name": "Adele",
                    "mailbox": "adele@contoso.example",
                }
            ]
        )
        yield emu


@pytest.fixture
async def receiver(emulator: DataverseEmulator, seen: TableClient) -> AsyncIterator[Receiver]:
    emulator.reset()
    async with Receiver(seen) as r:
        emulator.register_webhook(r.url, {KEY_HEADER: SECRET})
        yield r
    emulator.register_webhook(None)


async def settled(emulator: DataverseEmulator) -> None:
    assert await asyncio.to_thread(emulator.wait_for_webhooks, 10.0)


def _appointment_row(emulator: DataverseEmulator) -> str:
    made = emulator._call(
        lambda: emulator.store.create(
            "appointments",
            {
                "subject": "Review",
                "scheduledstart": "2026-06-01T10:00:00Z",
                "scheduledend": "2026-06-01T11:00:00Z",
                "appointment_activity_parties": [
                    {"addressused": "megan@fabrikam.example", "participationtypemask": 5}
                ],
            },
            key=None,
            caller=emulator._user("adele@contoso.example"),
        )
    )
    return str(made["activityid"])


async def test_the_emulator_posts_the_documented_shape_and_the_door_takes_it(
    emulator: DataverseEmulator, receiver: Receiver
) -> None:
    entity = await asyncio.to_thread(_appointment_row, emulator)
    await asyncio.to_thread(emulator.user_update, entity, updated_by="adele@contoso.example", subject="Moved")
    await asyncio.to_thread(emulator.user_cancel, entity)
    await asyncio.to_thread(emulator.user_delete, entity)
    await settled(emulator)
    contexts = emulator.webhook_contexts
    assert [c["MessageName"] for c in contexts] == ["Create", "Update", "Update", "Delete"]
    update = contexts[1]
    # Same keys at every level and the same JSON types as the documented asynchronous Update step.
    assert shape(update) == shape(json.loads(documented()[1]))
    assert update["PrimaryEntityName"] == "appointment" and update["PrimaryEntityId"] == entity
    target = update["InputParameters"][0]["value"]
    assert {a["key"]: a["value"] for a in target["Attributes"]}["subject"] == "Moved"
    assert contexts[3]["InputParameters"][0]["value"]["__type"].startswith("EntityReference:")
    # Asynchronous steps run in no promised order (nor do the deliveries here): a hint each, whatever order.
    assert sorted(receiver.queue.changes()) == [
        (entity, "created"),
        (entity, "deleted"),
        (entity, "updated"),
        (entity, "updated"),
    ]
    sent = receiver.headers[0]
    assert (sent["x-ms-dynamics-entity-name"], sent["x-ms-dynamics-request-name"]) == (
        "appointment",
        "Create",
    )
    assert [d.status for d in emulator.webhook_deliveries] == [202] * 4


async def test_a_delivery_sent_twice_is_queued_once(emulator: DataverseEmulator, receiver: Receiver) -> None:
    emulator.duplicate_webhooks()
    entity = await asyncio.to_thread(_appointment_row, emulator)
    await settled(emulator)
    assert sorted(d.status or 0 for d in emulator.webhook_deliveries) == [200, 202]
    assert receiver.queue.changes() == [(entity, "created")]


@pytest.mark.parametrize(
    ("answers", "attempts"),
    [([503], [503, 202]), ([502], [502, 202]), ([504, 504], [504, 504]), ([500], [500]), ([401], [401])],
)
async def test_the_emulator_tries_again_once_only_after_502_503_504(
    answers: list[int], attempts: list[int], emulator: DataverseEmulator, receiver: Receiver
) -> None:
    receiver.answers = list(answers)
    await asyncio.to_thread(_appointment_row, emulator)
    await settled(emulator)
    assert [d.status for d in emulator.webhook_deliveries] == attempts
