"""The CRM sweep hands every id of a change page to the worker, the ones the connector could not read too."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from azure.core.exceptions import ResourceNotFoundError

from sync_core.domain.messages import CrmChange, decode
from sync_core.ports.crm import ChangedPage, CrmConnector
from sync_core.service.sweeps import CrmSweep

NOW = datetime(2031, 3, 4, 9, 0, tzinfo=UTC)


class _Table:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}

    async def get_entity(self, pk: str, rk: str) -> Any:
        raise ResourceNotFoundError("not found")

    async def upsert_entity(self, entity: dict[str, Any], **_: Any) -> None:
        self.rows[(entity["PartitionKey"], entity["RowKey"])] = entity


class _Crm:
    async def list_changed(self, cursor: str | None, *, limit: int = 100) -> ChangedPage:
        return ChangedPage(records=(), deleted_ids=("gone",), unreadable_ids=("odd",), cursor="c1")


async def test_X2_an_unreadable_record_is_queued_for_the_worker_and_the_cursor_moves_on() -> None:
    queued: list[str] = []

    async def enqueue(text: str) -> None:
        queued.append(text)

    table = _Table()
    sweep = CrmSweep(cast(CrmConnector, _Crm()), cast(Any, table), enqueue, lambda: NOW)
    assert await sweep.run() == 2
    changes = [decode(text) for text in queued]
    assert all(isinstance(c, CrmChange) for c in changes)
    assert sorted((c.crm_id, c.change_type) for c in changes if isinstance(c, CrmChange)) == [
        ("gone", "deleted"),
        ("odd", "updated"),
    ]
    assert table.rows[("cursor", "crm")]["Cursor"] == "c1"
