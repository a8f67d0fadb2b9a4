"""Azure Storage plumbing: queue and table names, async clients, key hashing, and error translation.

I/O side. Every azure-core exception from Tables or Queues is translated here, once, into sync_core.errors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.request import getproxies

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from sync_core.adapters.storage.names import BULK_QUEUE as BULK_QUEUE
from sync_core.adapters.storage.names import CHANGES_QUEUE as CHANGES_QUEUE
from sync_core.adapters.storage.names import POISON_QUEUE as POISON_QUEUE
from sync_core.adapters.storage.names import QUEUES as QUEUES
from sync_core.errors import (
    ConcurrencyError,
    NotFoundError,
    PermanentError,
    SyncError,
    ThrottledError,
    TransientError,
    status_class,
)
from sync_core.settings import Settings

MAPPINGS_TABLE = "SyncMappings"
DECISIONS_TABLE = "SyncDecisions"
SUBSCRIPTIONS_TABLE = "SyncSubscriptions"
MAILBOXES_TABLE = "SyncMailboxes"
FAILURES_TABLE = "SyncFailures"
TABLES = (MAPPINGS_TABLE, DECISIONS_TABLE, SUBSCRIPTIONS_TABLE, MAILBOXES_TABLE, FAILURES_TABLE)

# A string property holds at most 64 KiB (32K UTF-16 characters); longer JSON is split over several.
_CHUNK = 30_000
_MAX_CHUNKS = 30

T = TypeVar("T")


def proxy_configured() -> bool:
    """Whether the environment names a proxy (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY...; NO_PROXY alone is not).

    azure-core's aiohttp transport trusts the environment by default: then aiohttp looks up the proxy
    variables and ~/.netrc again on every request, each lookup a hop to a worker thread (two per send,
    about 40% of an enqueue's CPU here). The queue and table clients trust the environment only when it
    names a proxy, so a proxied deployment is still proxied (netrc holds basic-auth credentials, which Storage
    never uses)."""
    return any(scheme != "no" for scheme in getproxies())


CONNECTION_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 10  # azure-core's default is 300 s: a stalled socket would hold a webhook answer


def transport_options() -> dict[str, Any]:
    """Transport settings of every Storage client: proxy from the environment only when one is named, and
    bounded waits, so a stalled connection is retried (azure-core's retry policy) instead of holding the
    front door's answer (Graph wants one within 3 s) or a worker for minutes. A retried enqueue may land
    twice; processing is idempotent."""
    return {
        "use_env_settings": proxy_configured(),
        "connection_timeout": CONNECTION_TIMEOUT_SECONDS,
        "read_timeout": READ_TIMEOUT_SECONDS,
    }


def key_of(*parts: str) -> str:
    """A Table-safe key for arbitrary ids (Graph ids hold '/', '+', '=' and are case-sensitive)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def put_json(entity: dict[str, Any], name: str, value: Any) -> None:
    """Store JSON under `name`, split into `name0..nameN` when it exceeds one property."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    chunks = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
    if len(chunks) > _MAX_CHUNKS:
        raise PermanentError(f"{name} is too large to store ({len(text)} characters)")
    entity[f"{name}Parts"] = len(chunks)
    for i, chunk in enumerate(chunks):
        entity[f"{name}{i}"] = chunk


def get_json(entity: dict[str, Any], name: str) -> Any:
    parts = int(entity.get(f"{name}Parts", 0))
    if not parts:
        return None
    return json.loads("".join(str(entity[f"{name}{i}"]) for i in range(parts)))


def translate(exc: BaseException, *, item_id: str | None = None) -> SyncError:
    """Map an azure-core error to the sync error tree (the one place that knows Storage's errors)."""
    kw: dict[str, str | None] = {"side": "storage", "item_id": item_id}
    if isinstance(exc, SyncError):
        return exc
    if isinstance(exc, ResourceModifiedError):
        return ConcurrencyError(f"storage precondition failed: {exc.message}", **kw)
    if isinstance(exc, ResourceExistsError):
        return ConcurrencyError(f"storage entity already exists: {exc.message}", **kw)
    if isinstance(exc, ResourceNotFoundError):
        return NotFoundError(f"storage resource not found: {exc.message}", **kw)
    if isinstance(exc, TableTransactionError) and exc.status_code in (409, 412):
        # an entity group transaction whose create found the row, or whose ETag condition failed: a race
        return ConcurrencyError(f"storage transaction lost a race ({exc.status_code}): {exc.message}", **kw)
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        # Storage answers 503 ServerBusy without Retry-After: it is throttling all the same (a second).
        target = status_class(status, has_retry_after=True)
        if target is ThrottledError:
            return ThrottledError(f"storage throttled ({status})", retry_after=1.0, **kw)
        return target(f"storage answered {status}: {exc.message}", **kw)
    if isinstance(exc, ServiceRequestError | ServiceResponseError | AzureError | OSError | TimeoutError):
        return TransientError(f"storage unreachable: {exc}", **kw)
    return TransientError(f"unexpected storage failure: {exc!r}", **kw)


async def call(op: Callable[[], Awaitable[T]], *, item_id: str | None = None) -> T:
    """Run one storage call, translating its errors."""
    try:
        return await op()
    except Exception as exc:  # translated once, here
        raise translate(exc, item_id=item_id) from exc


class Storage:
    """Async queue and table clients for one storage account, created once per event loop."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._credential: Any = None
        if settings.storage_connection_string:
            conn = settings.storage_connection_string
            self._tables = TableServiceClient.from_connection_string(conn, **transport_options())
            self._queues = QueueServiceClient.from_connection_string(conn, **transport_options())
        else:
            from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

            if settings.storage_credential == "managedidentity":
                self._credential = ManagedIdentityCredential(client_id=settings.storage_client_id)
            else:
                self._credential = DefaultAzureCredential()
            assert settings.storage_table_uri and settings.storage_queue_uri  # checked by Settings.problems
            self._tables = TableServiceClient(
                endpoint=settings.storage_table_uri, credential=self._credential, **transport_options()
            )
            self._queues = QueueServiceClient(
                account_url=settings.storage_queue_uri, credential=self._credential, **transport_options()
            )
        self._table_clients: dict[str, TableClient] = {}
        self._queue_clients: dict[str, QueueClient] = {}

    def table(self, name: str) -> TableClient:
        client = self._table_clients.get(name)
        if client is None:
            client = self._table_clients[name] = self._tables.get_table_client(name)
        return client

    def queue(self, name: str) -> QueueClient:
        """A queue client speaking base64 text, as the Functions queue trigger expects (host.json)."""
        client = self._queue_clients.get(name)
        if client is None:
            client = self._queues.get_queue_client(
                name,
                message_encode_policy=TextBase64EncodePolicy(),
                message_decode_policy=TextBase64DecodePolicy(),
            )
            self._queue_clients[name] = client
        return client

    async def ensure(self) -> None:
        """Create every queue and table the app uses (idempotent; infra/ creates them in Azure)."""
        for name in TABLES:
            try:
                await self._tables.create_table_if_not_exists(name)
            except Exception as exc:
                raise translate(exc, item_id=name) from exc
        for qname in QUEUES:
            try:
                await self._queues.create_queue(qname)
            except ResourceExistsError:
                pass
            except Exception as exc:
                raise translate(exc, item_id=qname) from exc

    async def enqueue(
        self, text: str, *, queue: str = CHANGES_QUEUE, visibility_timeout: int | None = None
    ) -> None:
        client = self.queue(queue)
        await call(lambda: client.send_message(text, visibility_timeout=visibility_timeout), item_id=queue)

    async def queue_depth(self, name: str) -> int:
        props = await call(lambda: self.queue(name).get_queue_properties(), item_id=name)
        return int(props.approximate_message_count or 0)

    async def aclose(self) -> None:
        for t in self._table_clients.values():
            await t.close()
        for q in self._queue_clients.values():
            await q.close()
        await self._tables.close()
        await self._queues.close()
        if self._credential is not None:
            await self._credential.close()


async def upsert(table: TableClient, entity: dict[str, Any]) -> None:
    await call(
        lambda: table.upsert_entity(entity, mode=UpdateMode.REPLACE), item_id=str(entity.get("RowKey"))
    )


async def get_entity(table: TableClient, pk: str, rk: str) -> dict[str, Any] | None:
    try:
        entity = await table.get_entity(pk, rk)
    except ResourceNotFoundError:
        return None
    except Exception as exc:
        raise translate(exc, item_id=rk) from exc
    return dict(entity) | {"_etag": entity.metadata.get("etag")}


async def create_entity(table: TableClient, entity: dict[str, Any]) -> str:
    """Insert; ConcurrencyError if the key exists (the cheap claim of I3). Returns the new ETag."""
    meta = await call(lambda: table.create_entity(entity), item_id=str(entity.get("RowKey")))
    return str(meta.get("etag"))


async def replace_if_match(table: TableClient, entity: dict[str, Any], etag: str) -> str:
    """Replace only if unchanged since `etag` was read; ConcurrencyError otherwise. Returns the new ETag."""
    meta = await call(
        lambda: table.update_entity(
            entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
        ),
        item_id=str(entity.get("RowKey")),
    )
    return str(meta.get("etag"))


async def query(table: TableClient, flt: str, **params: Any) -> AsyncIterator[dict[str, Any]]:
    try:
        async for entity in table.query_entities(flt, parameters=params or None):
            yield dict(entity) | {"_etag": entity.metadata.get("etag")}
    except Exception as exc:
        raise translate(exc) from exc
