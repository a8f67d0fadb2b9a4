"""The Microsoft Graph adapter: every call we make to Graph, on msgraph-sdk, with errors translated once.

I/O side. Every request carries `Prefer: IdType="ImmutableId"` and `Prefer: outlook.timezone="UTC"` (I4, F4),
goes through the per-mailbox limiter, and raises only sync_core.errors.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    AuthenticationProvider,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_http.middleware.options import RetryHandlerOption
from msgraph.generated.models.subscription import Subscription
from msgraph.generated.users.item.events.item.accept.accept_post_request_body import AcceptPostRequestBody
from msgraph.generated.users.item.events.item.cancel.cancel_post_request_body import CancelPostRequestBody
from msgraph.generated.users.item.events.item.decline.decline_post_request_body import DeclinePostRequestBody
from msgraph.generated.users.item.events.item.event_item_request_builder import EventItemRequestBuilder
from msgraph.generated.users.item.events.item.tentatively_accept.tentatively_accept_post_request_body import (
    TentativelyAcceptPostRequestBody,
)
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory

from sync_core.errors import (
    ConcurrencyError,
    NotFoundError,
    SyncError,
    ThrottledError,
    TransientError,
    UnprocessableError,
)
from sync_core.graph_convert import appointment_to_event, event_to_graph_event
from sync_core.graph_errors import server_retry_after, translate
from sync_core.graph_limits import Backoff, MailboxLimiter, deadline, shared_limiter
from sync_core.model import Appointment, GraphEvent
from sync_core.settings import Settings

T = TypeVar("T")

PREFER_HEADERS = ('IdType="ImmutableId"', 'outlook.timezone="UTC"')
# Retry inline only when Graph asks for a short pause; longer ones go back to the queue with a visibility
# delay equal to Retry-After (sync_core.dispatch), which does not spend the message's dequeue count.
INLINE_RETRY_MAX_SECONDS = 2.0
INLINE_RETRIES = 3
REQUEST_TIMEOUT_SECONDS = 30.0
CALENDAR_VIEW_PAGE = 100  # $top per calendarView page; the rest comes through @odata.nextLink


def _config(query: Any = None) -> RequestConfiguration[Any]:
    cfg: RequestConfiguration[Any] = RequestConfiguration(query_parameters=query)
    for value in PREFER_HEADERS:
        cfg.headers.add("Prefer", value)
    return cfg


def _graph_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _StaticToken(AccessTokenProvider):
    """For the local Graph emulator only: it accepts any bearer token."""

    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] | None = None
    ) -> str:
        return "emulator-token"

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return AllowedHostsValidator([])


def _auth_provider(settings: Settings) -> AuthenticationProvider:
    if settings.graph_auth_mode == "emulator":
        return BaseBearerTokenAuthenticationProvider(_StaticToken())
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
    return AzureIdentityAuthenticationProvider(credential, scopes=["https://graph.microsoft.com/.default"])


def build_client(settings: Settings, *, timeout: float = 30.0) -> GraphServiceClient:
    """A GraphServiceClient for real Graph or the emulator; kiota's own retries are off (we own them)."""
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=100)),
        options={
            RetryHandlerOption.RETRY_HANDLER_OPTION_KEY: RetryHandlerOption(max_retries=0, should_retry=False)
        },
    )
    adapter = GraphRequestAdapter(_auth_provider(settings), client=http)
    adapter.base_url = settings.graph_base_url.rstrip("/")
    return GraphServiceClient(request_adapter=adapter)


@dataclass(frozen=True)
class DeltaPage:
    """One page of calendarView/delta: changed events, ids removed, and the link to follow or keep."""

    events: list[GraphEvent]
    removed_ids: list[str]
    next_link: str | None
    delta_link: str | None


@dataclass(frozen=True)
class CreatedSubscription:
    subscription_id: str
    expires_at: datetime


class GraphAdapter:
    """Calendar operations on mailboxes, translated to and from the neutral model."""

    def __init__(
        self,
        client: GraphServiceClient,
        *,
        extended_property_id: str,
        limiter: MailboxLimiter | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._prop = extended_property_id
        self._limiter = limiter or shared_limiter()
        self._sleep = sleep
        self._backoff = backoff or Backoff()
        self._clock = clock
        self.requests = 0  # Graph requests sent by this adapter (economy benchmarks)

    @property
    def limiter(self) -> MailboxLimiter:
        return self._limiter

    async def _call(
        self,
        mailbox: str,
        item_id: str | None,
        op: Callable[[], Awaitable[T]],
        *,
        slots: int = 1,
        idempotent: bool = True,
    ) -> T:
        """One request: a limiter slot, errors translated, retried inline while the time limit allows.

        Throttling (429/503/509 with Retry-After) is retried after Retry-After when that is short, else
        raised for the queue to delay the message. Other transient failures back off exponentially with
        jitter. A request that is not idempotent (sendMail) is retried only when Graph refused it unread
        (throttled). Nothing waits past `graph_limits.deadline()`.
        """
        until = deadline(clock=self._clock)
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._limiter.slot(mailbox, slots, until=until):
                    self.requests += slots
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

    def _event(self, mailbox: str, event_id: str) -> EventItemRequestBuilder:
        return self._client.users.by_user_id(mailbox).events.by_event_id(event_id)

    async def get_event(self, mailbox: str, event_id: str) -> GraphEvent | None:
        """The event as it is now, with our write tag; None when it no longer exists."""
        query = EventItemRequestBuilder.EventItemRequestBuilderGetQueryParameters(
            expand=[f"singleValueExtendedProperties($filter=id eq '{self._prop}')"]
        )
        try:
            event = await self._call(
                mailbox, event_id, lambda: self._event(mailbox, event_id).get(_config(query))
            )
        except NotFoundError:
            return None
        if event is None:
            return None
        return event_to_graph_event(event, mailbox, extended_property_id=self._prop)

    async def create_event(
        self, mailbox: str, appointment: Appointment, *, transaction_id: str, tag: str
    ) -> GraphEvent:
        """Create in the organizer's mailbox; a retried POST with the same transactionId returns the first."""
        body = appointment_to_event(
            appointment, extended_property=(self._prop, tag), transaction_id=transaction_id
        )
        created = await self._call(
            mailbox,
            transaction_id,
            lambda: self._client.users.by_user_id(mailbox).events.post(body, _config()),
        )
        if created is None:
            raise TransientError("Graph returned no event on create", side="graph", mailbox=mailbox)
        return event_to_graph_event(created, mailbox, extended_property_id=self._prop)

    async def update_event(
        self, mailbox: str, event_id: str, appointment: Appointment, *, fields: Iterable[str], tag: str
    ) -> GraphEvent:
        """PATCH only the fields that differ (W4), re-tagging the item as written by us."""
        body = appointment_to_event(appointment, fields=list(fields), extended_property=(self._prop, tag))
        updated = await self._call(
            mailbox, event_id, lambda: self._event(mailbox, event_id).patch(body, _config())
        )
        if updated is None:
            raise TransientError(
                "Graph returned no event on update", side="graph", mailbox=mailbox, item_id=event_id
            )
        return event_to_graph_event(updated, mailbox, extended_property_id=self._prop)

    async def cancel_event(self, mailbox: str, event_id: str, comment: str = "") -> None:
        """Cancel as organizer: Exchange tells the attendees (L3)."""
        body = CancelPostRequestBody(comment=comment)
        await self._call(
            mailbox, event_id, lambda: self._event(mailbox, event_id).cancel.post(body, _config())
        )

    async def delete_event(self, mailbox: str, event_id: str) -> None:
        try:
            await self._call(mailbox, event_id, lambda: self._event(mailbox, event_id).delete(_config()))
        except NotFoundError:
            return

    async def cancel_occurrence(self, mailbox: str, series_event_id: str, original_start: datetime) -> None:
        """Delete one occurrence of a series (R3): the instance whose original start matches."""
        from msgraph.generated.users.item.events.item.instances.instances_request_builder import (
            InstancesRequestBuilder,
        )

        query = InstancesRequestBuilder.InstancesRequestBuilderGetQueryParameters(
            start_date_time=_graph_time(original_start - timedelta(days=1)),
            end_date_time=_graph_time(original_start + timedelta(days=2)),
        )
        series = self._event(mailbox, series_event_id)
        page = await self._call(mailbox, series_event_id, lambda: series.instances.get(_config(query)))
        for item in page.value if page and page.value else []:
            seen = item.original_start
            if item.id and seen is not None and seen.astimezone(UTC) == original_start.astimezone(UTC):
                await self.delete_event(mailbox, item.id)
                return

    async def respond(self, mailbox: str, event_id: str, response: str, comment: str = "") -> None:
        """Accept, tentatively accept or decline this mailbox's copy (rooms: M4, attendees: L3)."""
        item = self._event(mailbox, event_id)
        if response == "accept":
            a = AcceptPostRequestBody(comment=comment, send_response=True)
            await self._call(mailbox, event_id, lambda: item.accept.post(a, _config()))
        elif response == "tentativelyAccept":
            t = TentativelyAcceptPostRequestBody(comment=comment, send_response=True)
            await self._call(mailbox, event_id, lambda: item.tentatively_accept.post(t, _config()))
        elif response == "decline":
            d = DeclinePostRequestBody(comment=comment, send_response=True)
            await self._call(mailbox, event_id, lambda: item.decline.post(d, _config()))
        else:
            raise UnprocessableError(f"unknown response {response!r}", side="graph", mailbox=mailbox)

    async def send_mail(self, mailbox: str, subject: str, text: str) -> None:
        """Tell a mailbox's owner something (M4, M5): a plain-text mail from their own mailbox to itself."""
        from msgraph.generated.models.body_type import BodyType
        from msgraph.generated.models.email_address import EmailAddress
        from msgraph.generated.models.item_body import ItemBody
        from msgraph.generated.models.message import Message
        from msgraph.generated.models.recipient import Recipient
        from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody

        message = Message(
            subject=subject,
            body=ItemBody(content_type=BodyType.Text, content=text),
            to_recipients=[Recipient(email_address=EmailAddress(address=mailbox))],
        )
        body = SendMailPostRequestBody(message=message, save_to_sent_items=False)
        send = self._client.users.by_user_id(mailbox).send_mail
        await self._call(mailbox, None, lambda: send.post(body, _config()), idempotent=False)

    async def calendar_view(self, mailbox: str, start: datetime, end: datetime) -> list[GraphEvent]:
        """Every event instance in [start, end) of the primary calendar, series expanded into occurrences.

        `/users/{id}/calendarView`, following `@odata.nextLink` to the end; each page is one limited,
        translated request. Our write tag is expanded so callers can tell our own writes (E1).
        """
        from msgraph.generated.users.item.calendar_view.calendar_view_request_builder import (
            CalendarViewRequestBuilder,
        )

        builder = self._client.users.by_user_id(mailbox).calendar_view
        query = CalendarViewRequestBuilder.CalendarViewRequestBuilderGetQueryParameters(
            start_date_time=_graph_time(start),
            end_date_time=_graph_time(end),
            expand=[f"singleValueExtendedProperties($filter=id eq '{self._prop}')"],
            top=CALENDAR_VIEW_PAGE,
        )
        page = await self._call(mailbox, None, lambda: builder.get(_config(query)))
        events: list[GraphEvent] = []
        seen: set[str] = set()
        while True:
            for item in page.value if page and page.value else []:
                if item.id and item.id not in seen:
                    seen.add(item.id)
                    events.append(event_to_graph_event(item, mailbox, extended_property_id=self._prop))
            link = page.odata_next_link if page else None
            if not link:
                return events
            page = await self._call(mailbox, None, functools.partial(builder.with_url(link).get, _config()))

    async def delta_page(
        self, mailbox: str, *, link: str | None, start: datetime | None = None, end: datetime | None = None
    ) -> DeltaPage:
        """One page of `/users/{id}/calendarView/delta`: first the window, then links verbatim (facts §7).

        A delta token Graph no longer knows (410, syncStateNotFound) raises NotFoundError: start again.
        """
        from msgraph.generated.users.item.calendar_view.delta.delta_request_builder import DeltaRequestBuilder

        builder = self._client.users.by_user_id(mailbox).calendar_view.delta
        if link:
            page = await self._call(mailbox, None, lambda: builder.with_url(link).get(_config()))
        else:
            if start is None or end is None:
                raise UnprocessableError("a first delta round needs a window", side="graph", mailbox=mailbox)
            query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
                start_date_time=_graph_time(start), end_date_time=_graph_time(end)
            )
            page = await self._call(mailbox, None, lambda: builder.get(_config(query)))
        events: list[GraphEvent] = []
        removed: list[str] = []
        for item in page.value if page and page.value else []:
            if "@removed" in (item.additional_data or {}):
                if item.id:
                    removed.append(item.id)
                continue
            events.append(event_to_graph_event(item, mailbox, extended_property_id=self._prop))
        return DeltaPage(
            events=events,
            removed_ids=removed,
            next_link=page.odata_next_link if page else None,
            delta_link=page.odata_delta_link if page else None,
        )

    async def create_subscription(
        self,
        mailbox: str,
        *,
        notification_url: str,
        lifecycle_url: str,
        client_state: str,
        expires_at: datetime,
    ) -> CreatedSubscription:
        """Subscribe to a mailbox's events, lifecycle URL set at creation (it cannot be added later)."""
        body = Subscription(
            change_type="created,updated,deleted",
            notification_url=notification_url,
            lifecycle_notification_url=lifecycle_url,
            resource=f"/users/{mailbox}/events",
            expiration_date_time=expires_at,
            client_state=client_state,
        )
        sub = await self._call(mailbox, None, lambda: self._client.subscriptions.post(body, _config()))
        if sub is None or not sub.id or sub.expiration_date_time is None:
            raise TransientError("Graph returned no subscription", side="graph", mailbox=mailbox)
        return CreatedSubscription(sub.id, sub.expiration_date_time)

    async def subscription_exists(self, subscription_id: str, mailbox: str) -> bool:
        """Whether Graph still has the subscription (it deletes expired or removed ones without a word)."""
        builder = self._client.subscriptions.by_subscription_id(subscription_id)
        try:
            await self._call(mailbox, subscription_id, lambda: builder.get(_config()))
        except NotFoundError:
            return False
        return True

    async def renew_subscription(self, subscription_id: str, mailbox: str, expires_at: datetime) -> datetime:
        body = Subscription(expiration_date_time=expires_at)
        sub = await self._call(
            mailbox,
            subscription_id,
            lambda: self._client.subscriptions.by_subscription_id(subscription_id).patch(body, _config()),
        )
        return sub.expiration_date_time if sub and sub.expiration_date_time else expires_at

    async def reauthorize_subscription(self, subscription_id: str, mailbox: str) -> None:
        builder = self._client.subscriptions.by_subscription_id(subscription_id)
        await self._call(mailbox, subscription_id, lambda: builder.reauthorize.post(_config()))

    async def delete_subscription(self, subscription_id: str, mailbox: str) -> None:
        builder = self._client.subscriptions.by_subscription_id(subscription_id)
        try:
            await self._call(mailbox, subscription_id, lambda: builder.delete(_config()))
        except NotFoundError:
            return
