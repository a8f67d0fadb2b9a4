"""DevHost queue triggers on Azurite: decoding, delete on success, retries, poison queue, batch limits."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from devstack.host import DevHost
from devstack.host.options import LEASE_SECONDS, QueueOptions

StartHost = Callable[..., DevHost]
WaitFor = Callable[..., Any]


@dataclass
class Attempt:
    body: bytes
    message_id: str
    dequeue_count: int
    at: float


@dataclass
class Recorder:
    attempts: list[Attempt] = field(default_factory=list)
    running: int = 0
    most_running: int = 0

    def bodies(self) -> list[bytes]:
        return [a.body for a in self.attempts]


recorder = Recorder()
app = func.FunctionApp()


@app.queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="AzureWebJobsStorage")
async def work(msg: func.QueueMessage) -> None:
    """Records every attempt; `fail` always raises, `slow` takes 300 ms."""
    body = msg.get_body()
    recorder.attempts.append(Attempt(body, str(msg.id), int(msg.dequeue_count or 0), time.monotonic()))
    recorder.running += 1
    recorder.most_running = max(recorder.most_running, recorder.running)
    try:
        if body.startswith(b"slow"):
            await asyncio.sleep(0.3)
        if body == b"fail":
            raise RuntimeError(f"asked to fail (attempt {msg.dequeue_count})")
    finally:
        recorder.running -= 1


@app.queue_trigger(arg_name="msg", queue_name="%RELAY_QUEUE%", connection="Storage")
@app.queue_output(arg_name="out", queue_name="%WORK_QUEUE%", connection="AzureWebJobsStorage")
def relay(msg: func.QueueMessage, out: func.Out[str]) -> None:
    """A plain (sync) function with a queue output binding: forwards the body upper-cased.

    `connection="Storage"` resolves to the AzureWebJobsStorage setting, as in the real host.
    """
    out.set(msg.get_body().decode().upper())


@dataclass
class Queues:
    connection_string: str
    work: str
    relay: str

    def client(self, name: str, base64_encoded: bool = True) -> QueueClient:
        policy = TextBase64EncodePolicy() if base64_encoded else None
        return QueueClient.from_connection_string(self.connection_string, name, message_encode_policy=policy)

    def send(self, *texts: str, base64_encoded: bool = True) -> None:
        with self.client(self.work, base64_encoded) as queue:
            for text in texts:
                queue.send_message(text)

    def stored(self, name: str) -> list[str]:
        """Texts currently visible in `name`, as stored (peek leaves them there)."""
        with QueueClient.from_connection_string(self.connection_string, name) as queue:
            return [str(m.content) for m in queue.peek_messages(max_messages=32)]

    def count(self, name: str) -> int:
        with QueueClient.from_connection_string(self.connection_string, name) as queue:
            return int(queue.get_queue_properties().approximate_message_count or 0)


@pytest.fixture
def queues(storage_connection_string: str, unique_name: str) -> Iterator[Queues]:
    recorder.attempts.clear()
    recorder.running = recorder.most_running = 0
    yield Queues(storage_connection_string, f"work-{unique_name}", f"relay-{unique_name}")


def run(start_host: StartHost, queues: Queues, **queue_options: object) -> DevHost:
    options = {"maxPollingInterval": "00:00:00.200", **queue_options}
    settings = {
        "AzureWebJobsStorage": queues.connection_string,
        "WORK_QUEUE": queues.work,
        "RELAY_QUEUE": queues.relay,
    }
    return start_host(app, settings=settings, host_json={"extensions": {"queues": options}})


async def test_base64_messages_are_decoded_processed_and_deleted(
    start_host: StartHost, queues: Queues, wait_for: WaitFor
) -> None:
    run(start_host, queues)
    queues.send("first", "second", "thïrd")
    await wait_for(lambda: len(recorder.attempts) == 3, what="three invocations")
    assert sorted(recorder.bodies()) == sorted([b"first", b"second", "thïrd".encode()])
    assert {a.dequeue_count for a in recorder.attempts} == {1}
    await wait_for(lambda: queues.count(queues.work) == 0, what="messages deleted")
    assert queues.count(f"{queues.work}-poison") == 0


async def test_a_message_that_always_fails_lands_in_poison_after_max_dequeue_count(
    start_host: StartHost, queues: Queues, wait_for: WaitFor
) -> None:
    run(start_host, queues, maxDequeueCount=3)
    queues.send("fail")
    poison = f"{queues.work}-poison"
    await wait_for(lambda: queues.count(poison) == 1, what="poison message")
    assert [a.dequeue_count for a in recorder.attempts] == [1, 2, 3]
    assert len({a.message_id for a in recorder.attempts}) == 1
    # The original stored text, still base64, as the real host copies it.
    assert queues.stored(poison) == [base64.b64encode(b"fail").decode()]
    assert queues.count(queues.work) == 0


async def test_visibility_timeout_delays_the_retry(
    start_host: StartHost, queues: Queues, wait_for: WaitFor
) -> None:
    run(start_host, queues, maxDequeueCount=2, visibilityTimeout="00:00:02")
    queues.send("fail")
    await wait_for(lambda: len(recorder.attempts) == 2, within=10, what="the retry")
    gap = recorder.attempts[1].at - recorder.attempts[0].at
    assert gap >= 1.5, f"retried after {gap:.2f} s despite visibilityTimeout 2 s"


async def test_default_visibility_timeout_retries_at_once(
    start_host: StartHost, queues: Queues, wait_for: WaitFor
) -> None:
    assert QueueOptions.from_host_json({}).visibility_timeout == 0.0  # host.json's "00:00:00"
    run(start_host, queues, maxDequeueCount=2)
    queues.send("fail")
    # The host leases each message for LEASE_SECONDS (10 minutes): the retry comes within the wait
    # only because the failed invocation released the message (visible again at once), not its lease.
    assert LEASE_SECONDS > 60
    await wait_for(lambda: len(recorder.attempts) == 2, within=10, what="the retry")
    first, retry = recorder.attempts
    assert (retry.message_id, retry.dequeue_count) == (first.message_id, 2)


async def test_batch_size_and_new_batch_threshold_bound_concurrency(
    start_host: StartHost, queues: Queues, wait_for: WaitFor
) -> None:
    run(start_host, queues, batchSize=2, newBatchThreshold=1)
    queues.send(*[f"slow-{i}" for i in range(10)])
    await wait_for(lambda: len(recorder.attempts) == 10, what="ten invocations")
    assert 2 <= recorder.most_running <= 3  # batchSize + newBatchThreshold


async def test_message_encoding_none_passes_the_stored_text(
    start_host: StartHost, queues: Queues, wait_for: WaitFor
) -> None:
    run(start_host, queues, messageEncoding="none")
    queues.send("plain text, not base64", base64_encoded=False)
    await wait_for(lambda: len(recorder.attempts) == 1, what="one invocation")
    assert recorder.bodies() == [b"plain text, not base64"]


async def test_a_body_that_is_not_base64_goes_to_poison_without_an_invocation(
    start_host: StartHost, queues: Queues, wait_for: WaitFor
) -> None:
    run(start_host, queues)
    queues.send("not base64 at all!", base64_encoded=False)
    await wait_for(lambda: queues.count(f"{queues.work}-poison") == 1, what="poison message")
    assert queues.stored(f"{queues.work}-poison") == ["not base64 at all!"]
    assert recorder.attempts == []


async def test_a_queue_output_binding_sends_base64_to_its_queue(
    start_host: StartHost, queues: Queues, wait_for: WaitFor
) -> None:
    run(start_host, queues)
    with queues.client(queues.relay) as relay:
        relay.send_message("relayed")
    await wait_for(lambda: recorder.bodies() == [b"RELAYED"], what="relayed message processed")


async def test_the_admin_api_invokes_a_queue_function_with_the_given_input(
    start_host: StartHost, queues: Queues, wait_for: WaitFor
) -> None:
    host = run(start_host, queues)
    host.invoke("work", "direct").result(timeout=30)
    assert recorder.bodies() == [b"direct"]
    with pytest.raises(RuntimeError, match="asked to fail"):
        host.invoke("work", "fail").result(timeout=30)


def test_use_development_storage_means_azurite_on_its_default_ports() -> None:
    host = DevHost(
        app, {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "WORK_QUEUE": "w", "RELAY_QUEUE": "r"}, {}
    )
    connection = host.connection_string("AzureWebJobsStorage")
    assert "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;" in connection
    assert "AccountName=devstoreaccount1;" in connection
    assert host.connection_string("Storage") == connection  # "X" falls back to "AzureWebJobsX"
