"""The base of the Graph adapter: the msgraph-sdk client, and one guarded call with retries. I/O side."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    AuthenticationProvider,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.request_information import RequestInformation
from msgraph.generated.models.event import Event
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory

from sync_core.adapters.graph.convert import event_to_graph_event
from sync_core.adapters.graph.errors import server_retry_after, translate
from sync_core.adapters.graph.limits import Backoff, MailboxLimiter, deadline, shared_limiter
from sync_core.adapters.graph.middleware import middleware
from sync_core.domain import identity
from sync_core.domain.model import GraphEvent
from sync_core.errors import ConcurrencyError, PermanentError, SyncError, ThrottledError, TransientError
from sync_core.settings import Settings

T = TypeVar("T")


def _remember_missing_sniffio() -> None:
    """httpcore asks `import sniffio` on every connection-pool operation (`current_async_library`) and falls
    back to asyncio when it is missing; a missing module is searched for on sys.path each time (about 35
    failed imports and 140 stat calls per change, issue 20). A None in sys.modules makes that import fail at
    once, as Python documents; nothing else changes, and an installed sniffio is left alone."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


_remember_missing_sniffio()

# Bodies as text (Graph converts the HTML Outlook writes): a body we wrote reads back equal (D4, W4).
PREFER_HEADERS = ('IdType="ImmutableId"', 'outlook.timezone="UTC"', 'outlook.body-content-type="text"')
# Retry inline only when Graph asks for a short pause; longer ones go back to the queue with a visibility
# delay equal to Retry-After (sync_core.service.retry), which does not spend the message's dequeue count.
INLINE_RETRY_MAX_SECONDS = 2.0
INLINE_RETRIES = 3
REQUEST_TIMEOUT_SECONDS = 30.0


def config(query: Any = None) -> RequestConfiguration[Any]:
    cfg: RequestConfiguration[Any] = RequestConfiguration(query_parameters=query)
    for value in PREFER_HEADERS:
        cfg.headers.add("Prefer", value)
    return cfg


def graph_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _StaticToken(AccessTokenProvider):
    """For the local Graph emulator only: it accepts any bearer token, sent to the emulator's host alone."""

    def __init__(self, host: str) -> None:
        self._hosts = AllowedHostsValidator([host])

    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] | None = None
    ) -> str:
        return "emulator-token" if self._hosts.is_url_host_valid(uri) else ""

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._hosts


def _auth_provider(settings: Settings) -> AuthenticationProvider:
    host = urlsplit(settings.graph_base_url).hostname or "graph.microsoft.com"
    if settings.graph_auth_mode == "emulator":
        return BaseBearerTokenAuthenticationProvider(_StaticToken(host))
    from azure.identity.aio import (
        CertificateCredential,
        ClientAssertionCredential,
        ClientSecretCredential,
    )
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )

    tenant, client = settings.graph_tenant_id or "", settings.graph_client_id or ""
    credential: Any
    if settings.graph_auth_mode == "client_secret":
        credential = ClientSecretCredential(tenant, client, settings.graph_client_secret or "")
    elif settings.graph_auth_mode == "certificate":
        credential = CertificateCredential(tenant, client, certificate_path=settings.graph_certificate_path)
    else:
        # Managed identity as a federated credential of the app registration (no secret anywhere).
        # The assertion callback is synchronous; the sync credential caches its token for about an hour.
        from azure.identity import ManagedIdentityCredential as SyncManagedIdentityCredential

        mi = SyncManagedIdentityCredential(client_id=settings.graph_managed_identity_client_id)
        credential = ClientAssertionCredential(
            tenant, client, lambda: mi.get_token("api://AzureADTokenExchange/.default").token
        )
    # The token goes to Graph's host alone, whatever URL a request is built from.
    return AzureIdentityAuthenticationProvider(
        credential, scopes=["https://graph.microsoft.com/.default"], allowed_hosts=[host]
    )


def build_client(
    settings: Settings, *, timeout: float = 30.0, transport: httpx.AsyncBaseTransport | None = None
) -> GraphServiceClient:
    """A GraphServiceClient for real Graph or the emulator: msgraph-core's middleware less the handlers
    that do nothing for us (adapters/graph/middleware.py); kiota's own retries are off (we own them)."""
    http = GraphClientFactory.create_with_custom_middleware(
        middleware(),
        client=httpx.AsyncClient(
            timeout=timeout, limits=httpx.Limits(max_connections=100), transport=transport
        ),
    )
    adapter = GraphRequestAdapter(_auth_provider(settings), client=http)
    adapter.base_url = settings.graph_base_url.rstrip("/")
    return GraphServiceClient(request_adapter=adapter)


async def close_client(client: GraphServiceClient) -> None:
    """Close a GraphServiceClient's httpx client and every transport it wraps.

    msgraph-core's AsyncGraphTransport inherits a no-op aclose and never closes the transport it wraps (the
    bug kiota-python#494 fixed in kiota's own wrapper), so the chain is closed down to httpx's pool.
    """
    http = getattr(client.request_adapter, "_http_client", None)  # kiota's HttpxRequestAdapter
    if not isinstance(http, httpx.AsyncClient):
        return
    transport = getattr(http, "_transport", None)
    await http.aclose()
    while transport is not None:
        inner = getattr(transport, "transport", None)
        if isinstance(inner, httpx.AsyncBaseTransport):
            await inner.aclose()
        transport = inner


class GraphBase:
    """The client, the limiter and the one way to send a request; GraphAdapter adds the operations."""

    def __init__(
        self,
        client: GraphServiceClient,
        *,
        extended_property_id: str,
        tag_secrets: Sequence[str],
        limiter: MailboxLimiter | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._prop = extended_property_id
        if not tag_secrets:
            raise ValueError(
                "the Graph adapter needs a secret to sign and verify our tag (EVENT_TAG_SECRETS)"
            )
        self._tag_secrets = tuple(tag_secrets)
        self._limiter = limiter or shared_limiter()
        self._sleep = sleep
        self._backoff = backoff or Backoff()
        self._clock = clock
        self.requests = 0  # Graph requests sent by this adapter (economy benchmarks)

    @property
    def limiter(self) -> MailboxLimiter:
        return self._limiter

    @property
    def client(self) -> GraphServiceClient:
        return self._client

    @property
    def backoff(self) -> Backoff:
        return self._backoff

    @property
    def extended_property_id(self) -> str:
        """The id of the single-value extended property that tags our writes."""
        return self._prop

    def checked_link(self, link: str, mailbox: str) -> str:
        """A `@odata.nextLink` or `deltaLink` to follow, if it points at the Graph we are configured for
        (scheme, host and API root); a link elsewhere would receive our token: refused, permanently."""
        base, target = urlsplit(self._client.request_adapter.base_url), urlsplit(link)
        if (target.scheme, target.netloc.lower()) != (base.scheme, base.netloc.lower()) or not (
            target.path.startswith(base.path.rstrip("/") + "/")
        ):
            raise PermanentError(
                f"refusing to follow a link outside {base.scheme}://{base.netloc}{base.path}: {link[:200]!r}",
                side="graph",
                mailbox=mailbox,
            )
        return link

    def signed_tag(self, meeting_key: str, mailbox: str) -> str:
        """Our tag for `meeting_key` on an event in `mailbox`, signed with the current secret."""
        return identity.sign_tag(meeting_key, mailbox, self._tag_secrets[0])

    def signed_tags(self, meeting_key: str, mailbox: str) -> list[str]:
        """The tag as each active secret signs it (the current one first): what an event of ours carries."""
        return [identity.sign_tag(meeting_key, mailbox, s) for s in self._tag_secrets]

    async def send_json(self, info: RequestInformation) -> Any:
        """Send a request built by an msgraph-sdk request builder through the SDK's request adapter (auth,
        middleware, ODataError mapping) and return its JSON body as Python values, not models: parsing into
        models costs milliseconds of CPU per event (adapters/graph/json_view.py reads the values under the
        models' names). The URL template is expanded once, not on every read of `info.url`."""
        adapter = self._client.request_adapter
        # The request holds its builder's own dicts, and setting `url` clears them: copies, so the builder
        # (reused by a retry, or by the next page) keeps its user and event ids.
        info.path_parameters = {**info.path_parameters, "baseurl": adapter.base_url}
        info.query_parameters = dict(info.query_parameters)
        info.url = info.url
        send: Any = adapter.send_primitive_async  # typed as returning None for every response type
        raw = await send(info, "bytes", {"XXX": ODataError})
        return json.loads(raw) if raw else None

    async def send(self, info: RequestInformation) -> None:
        """Send a request whose answer has no content we read (cancel, respond, delete), as the request
        builders' `post`/`delete` send it."""
        await self._client.request_adapter.send_no_response_content_async(info, {"XXX": ODataError})

    def to_model(self, event: Event, mailbox: str) -> GraphEvent:
        """A Graph event as the model, its tag taken as ours only if it verifies for this mailbox."""
        model = event_to_graph_event(event, mailbox, extended_property_id=self._prop)
        if model.written_by_us is None:
            return model
        ours = identity.verify_tag(model.written_by_us, mailbox, self._tag_secrets)
        return model.model_copy(update={"written_by_us": ours})

    async def aclose(self) -> None:
        """Close the HTTP client's pooled connections; call it before the event loop that used them ends."""
        await close_client(self._client)

    async def _call(
        self,
        mailbox: str,
        item_id: str | None,
        op: Callable[[], Awaitable[T]],
        *,
        idempotent: bool = True,
    ) -> T:
        """One request for one mailbox; see `_guarded`."""
        return await self._guarded({mailbox: 1}, op, mailbox=mailbox, item_id=item_id, idempotent=idempotent)

    async def _guarded(
        self,
        slots: Mapping[str, int],
        op: Callable[[], Awaitable[T]],
        *,
        mailbox: str | None,
        item_id: str | None,
        idempotent: bool = True,
    ) -> T:
        """One request holding `slots` limiter places per mailbox, errors translated, retried inline.

        Throttling (429/503/509 with Retry-After) is retried after Retry-After when that is short, else
        raised for the queue to delay the message. Other transient failures back off exponentially with
        jitter. A request that is not idempotent (sendMail) is retried only when Graph refused it unread
        (throttled). Nothing waits past `graph_limits.deadline()`: neither a limiter place, nor a pause,
        nor the request itself. Places are taken in mailbox order, so two batches cannot deadlock.
        """
        until = deadline(clock=self._clock)
        attempt = 0
        while True:
            attempt += 1
            try:
                async with AsyncExitStack() as held:
                    for name in sorted(slots, key=str.lower):
                        await held.enter_async_context(self._limiter.slot(name, slots[name], until=until))
                    self.requests += sum(slots.values())
                    remaining = until - self._clock()
                    if remaining <= 0:
                        raise TimeoutError("the function's time limit is reached")
                    async with asyncio.timeout(min(remaining, REQUEST_TIMEOUT_SECONDS)):
                        return await op()
            except Exception as exc:
                err = translate(exc, mailbox=mailbox, item_id=item_id)
                pause = self._retry_pause(err, exc, attempt, idempotent)
                if pause is None or self._clock() + pause >= until:
                    raise err from exc
                await self._sleep(pause)

    def time_left(self) -> float:
        """Seconds until the time limit of the current invocation (graph_limits.deadline)."""
        return deadline(clock=self._clock) - self._clock()

    def _retry_pause(
        self, err: SyncError, exc: BaseException, attempt: int, idempotent: bool
    ) -> float | None:
        """Seconds to wait before trying again inline, or None to give up (raise `err`)."""
        if attempt >= max(INLINE_RETRIES, self._backoff.attempts):
            return None
        if isinstance(err, ThrottledError):
            told = err.retry_after if isinstance(exc, SyncError) else server_retry_after(exc)
            if told is None:
                return self._backoff.delay(attempt)
            if told > INLINE_RETRY_MAX_SECONDS or attempt >= INLINE_RETRIES:
                return None  # the queue waits instead (visibility delay = Retry-After)
            return told + self._backoff.rng.uniform(0, 0.1)
        if isinstance(err, TransientError) and not isinstance(err, ConcurrencyError) and idempotent:
            return self._backoff.delay(attempt)
        return None
