"""Attack: read the subscriptions table (a storage reader, a leaked SAS, a backup) and forge notifications.

Before: each row held its subscription's clientState in plain text, so anyone who could read the table could
post notifications the ingress accepted as Graph's. Now the secret goes to Graph once, at create, and the
table keeps only its SHA-256; a re-created subscription gets a new secret; rows written before keep working
and lose their plain text at their next save.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from azure.data.tables.aio import TableClient, TableServiceClient

from devstack.azurite import Azurite
from sync_core.domain.subscription import client_state_digest
from tests.subscriptions.test_subscription_writes import ALICE, World, emulator, world

__all__ = ["emulator", "world"]


@pytest.fixture
async def table(azurite: Azurite, unique_name: str, world: World) -> AsyncIterator[TableClient]:
    """The world's subscriptions table, read as an attacker with storage access would."""
    async with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        yield service.get_table_client(f"Subs{unique_name}")


def graphs_secret(world: World, subscription_id: str) -> str:
    """The clientState Graph holds for the subscription: what it puts on every notification."""
    secret = world.emu.state.subscriptions[subscription_id].client_state
    assert secret
    return str(secret)


async def test_the_table_holds_no_client_state_only_its_digest(world: World, table: TableClient) -> None:
    row = await world.manager().ensure(ALICE)
    secret = graphs_secret(world, row.subscription_id)

    entity = await table.get_entity("subscription", row.subscription_id)
    assert secret not in {str(v) for v in entity.values()}  # nothing to copy into a forged notification
    assert entity["ClientStateSha256"] == client_state_digest(secret)
    stored = await world.store.get(row.subscription_id, fresh=True)
    assert stored is not None
    live = stored.expires_at - timedelta(minutes=1)
    assert stored.admits(secret, live)
    assert not stored.admits(entity["ClientStateSha256"], live)  # the digest is no key


async def test_a_re_created_subscription_gets_a_new_secret(world: World) -> None:
    first = await world.manager().ensure(ALICE)
    old_secret = graphs_secret(world, first.subscription_id)

    second = await world.manager().recreate(first, "subscriptionRemoved")

    new_secret = graphs_secret(world, second.subscription_id)
    assert second.subscription_id != first.subscription_id and new_secret != old_secret
    assert second.client_state_hash == client_state_digest(new_secret)
    retired = await world.store.get(first.subscription_id, fresh=True)
    assert retired is not None and retired.status == "removed"


async def test_a_row_written_with_the_plain_secret_still_verifies_and_loses_it_at_its_next_save(
    world: World, table: TableClient
) -> None:
    row = await world.manager().ensure(ALICE)
    secret = graphs_secret(world, row.subscription_id)
    legacy = await table.get_entity("subscription", row.subscription_id)
    legacy["ClientState"], legacy["ClientStateSha256"] = secret, ""  # as rows were written before
    await table.upsert_entity(legacy)

    read = await world.store.get(row.subscription_id, fresh=True)
    assert read is not None and read.client_state_hash == client_state_digest(secret)
    await world.store.save(read)

    entity = await table.get_entity("subscription", row.subscription_id)
    assert entity["ClientState"] == "" and entity["ClientStateSha256"] == client_state_digest(secret)
