"""The Azurite launcher: loopback ports, a usable connection string, clean stop, persistence on disk."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient

from devstack import azurite as azurite_module
from devstack.azurite import ACCOUNT_KEY, Azurite, AzuriteError


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_connection_string_is_explicit_and_loopback(azurite: Azurite) -> None:
    parts = dict(p.split("=", 1) for p in azurite.connection_string.rstrip(";").split(";"))
    assert parts["AccountName"] == "devstoreaccount1"
    assert parts["AccountKey"] == ACCOUNT_KEY
    assert parts["QueueEndpoint"] == f"http://127.0.0.1:{azurite.queue_port}/devstoreaccount1"
    assert parts["TableEndpoint"] == f"http://127.0.0.1:{azurite.table_port}/devstoreaccount1"
    assert parts["BlobEndpoint"] == f"http://127.0.0.1:{azurite.blob_port}/devstoreaccount1"


def test_queue_and_table_services_answer(storage_connection_string: str, unique_name: str) -> None:
    with QueueClient.from_connection_string(storage_connection_string, f"probe-{unique_name}") as queue:
        queue.create_queue()
        queue.send_message("hello")
        assert [m.content for m in queue.receive_messages()] == ["hello"]
    with TableServiceClient.from_connection_string(storage_connection_string) as tables:
        table = tables.create_table(f"Probe{unique_name}")
        table.create_entity({"PartitionKey": "p", "RowKey": "r", "v": 1})
        assert table.get_entity("p", "r")["v"] == 1


def test_data_dir_persists_across_restarts_and_stop_frees_ports(tmp_path: Path, unique_name: str) -> None:
    name = f"persist-{unique_name}"
    with Azurite(data_dir=tmp_path / "azurite") as first:
        ports = (first.blob_port, first.queue_port, first.table_port)
        with QueueClient.from_connection_string(first.connection_string, name) as queue:
            queue.create_queue()
            queue.send_message("kept")
    assert not any(_accepts(p) for p in ports)
    with (
        Azurite(data_dir=tmp_path / "azurite", queue_port=ports[1]) as second,
        QueueClient.from_connection_string(second.connection_string, name) as queue,
    ):
        assert [m.content for m in queue.receive_messages()] == ["kept"]


def test_missing_node_modules_tells_the_user_to_run_npm_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(azurite_module, "AZURITE_BIN", tmp_path / "node_modules" / ".bin" / "azurite")
    with pytest.raises(AzuriteError, match="npm ci"):
        Azurite().start()
