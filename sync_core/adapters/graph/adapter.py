"""The Microsoft Graph adapter: every call we make to Graph, on msgraph-sdk, with errors translated once. I/O
side.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

from kiota_abstractions.method import Method
from msgraph.generated.models.subscription import Subscription
from msgraph.generated.users.item.events.item.event_item_request_builder import EventItemRequestBuilder

from sync_core.adapters.graph.attachments import read_attachments
from sync_core.adapters.graph.base import (
    GraphBase,
)
from sync_core.adapters.graph.base import config as _config
from sync_core.adapters.graph.base import graph_time as _graph_time
from sync_core.adapters.graph.create import find_created
from sync_core.adapters.graph.event_json import event_json
from sync_core.adapters.graph.json_view import JsonView
from sync_core.adapters.graph.wire import event_url, events_url, get_event_query, request
from sync_core.domain import identity
from sync_core.domain.model import Appointment, Attachment, GraphEvent
from sync_core.domain.subscription import CreatedSubscription
from sync_core.errors import ConflictError, NotFoundError, TransientError, UnprocessableError

if TYPE_CHECKING:
    from msgraph.generated.models.event import Event

CALENDAR_VIEW_PAGE = 100  # $top per calendarView page; the rest comes through @odata.nextLink


@dataclass(frozen=True)
class DeltaPage:
    """One page of calendarView/delta: changed events, ids removed, and the link to follow or keep."""

    events: list[GraphEvent]
    removed_ids: list[str]
    next_link: str | None
    delta_link: str | None


class GraphAdapter(GraphBase):
    """Calendar operations on mailboxes, translated to and from the neutral model."""

    def _event(self, mailbox: str, event_id: str) -> EventItemRequestBuilder:
        self._check_ids(mailbox, event_id)
        return self._client.users.by_user_id(mailbox).events.by_event_id(event_id)

    def _event_url(self, mailbox: str, event_id: str) -> str:
        """The event's URL (wire.event_url), the ids checked as `_event` checks them."""
        self._check_ids(mailbox, event_id)
        return event_url(self._client.request_adapter.base_url, mailbox, event_id)

    @staticmethod
    def _check_ids(mailbox: str, event_id: str) -> None:
        why = identity.unsafe_id(event_id) or identity.unsafe_id(mailbox)
        if why is not None:  # `.` and `..` survive quoting and would be resolved away by httpx
            raise UnprocessableError(
                f"not a Graph id: {why}", side="graph", mailbox=mailbox, item_id=event_id[:100]
            )

    async def get_event(self, mailbox: str, event_id: str) -> GraphEvent | None:
        """The event as it is now, with our write tag; None when it no longer exists. A series master comes
        with its cancelled occurrences (R3), which Graph returns only when a GET by id selects them, and a
        select returns only what it names: every property the conversion reads is named."""
        url = self._event_url(mailbox, event_id) + get_event_query(self._prop)
        try:  # JSON, not models (send_json): the models' parsing was the largest CPU cost of a change
            data = await self._call(mailbox, event_id, lambda: self.send_json(request(Method.GET, url)))
        except NotFoundError:
            return None
        if not data:
            return None
        return self.to_model(cast("Event", JsonView(data)), mailbox)

    async def create_event(
        self, mailbox: str, appointment: Appointment, *, transaction_id: str, tag: str
    ) -> GraphEvent:
        """Create in the organizer's mailbox, at most once per `transaction_id` (I3).

        Graph documents that a retried POST with the same transactionId is not duplicated, not what the
        retry answers: the first event (201), or an error naming the duplicate (`ErrorDuplicateTransactionId`,
        seen as 400 and as 409; both ConflictError). On a conflict the event is looked up by our tag and
        returned; if no event of ours is found the conflict is raised for the operator.
        """
        body = event_json(  # JSON written directly, the bytes msgraph's model would serialize to
            appointment,
            extended_property=(self._prop, self.signed_tag(tag, mailbox)),
            transaction_id=transaction_id,
        )
        url = events_url(self._client.request_adapter.base_url, mailbox)
        try:
            created = await self._call(
                mailbox, transaction_id, lambda: self.send_json(request(Method.POST, url, body))
            )
        except ConflictError:
            found = await self.find_created(mailbox, tag=tag, transaction_id=transaction_id)
            if found is None:
                raise
            return found
        if created is None:
            raise TransientError("Graph returned no event on create", side="graph", mailbox=mailbox)
        return self.to_model(cast("Event", JsonView(created)), mailbox)

    async def read_attachments(
        self,
        mailbox: str,
        event_id: str,
        *,
        known: Iterable[Attachment] = (),
        content_max_bytes: int | None = None,
    ) -> tuple[Attachment, ...]:
        """F5: the event's attachments (one list call, metadata only); with `content_max_bytes`, the bytes of
        each file within it that `known` (what the target holds) lacks in this version."""
        builder = self._event(mailbox, event_id).attachments
        return await read_attachments(
            self, mailbox, event_id, builder, known=known, content_max_bytes=content_max_bytes
        )

    async def find_created(self, mailbox: str, *, tag: str, transaction_id: str) -> GraphEvent | None:
        """The event we created in `mailbox` under `tag` (our extended property), or None."""
        return await find_created(self, mailbox, tag=tag, transaction_id=transaction_id)

    async def update_event(
        self, mailbox: str, event_id: str, appointment: Appointment, *, fields: Iterable[str], tag: str
    ) -> GraphEvent:
        """PATCH only the fields that differ (W4), re-tagging the item as written by us."""
        body = event_json(
            appointment, fields=list(fields), extended_property=(self._prop, self.signed_tag(tag, mailbox))
        )
        url = self._event_url(mailbox, event_id)
        updated = await self._call(
            mailbox, event_id, lambda: self.send_json(request(Method.PATCH, url, body))
        )
        if updated is None:
            raise TransientError(
                "Graph returned no event on update", side="graph", mailbox=mailbox, item_id=event_id
            )
        return self.to_model(cast("Event", JsonView(updated)), mailbox)

    async def cancel_event(self, mailbox: str, event_id: str, comment: str = "") -> None:
        """Cancel as organizer: Exchange tells the attendees (L3)."""
        body = json.dumps({"Comment": comment}).encode()  # CancelPostRequestBody's serialization
        await self._call(
            mailbox,
            event_id,
            lambda: self.send(request(Method.POST, self._event_url(mailbox, event_id) + "/cancel", body)),
        )

    async def delete_event(self, mailbox: str, event_id: str) -> None:
        try:
            await self._call(
                mailbox,
                event_id,
                lambda: self.send(request(Method.DELETE, self._event_url(mailbox, event_id))),
            )
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
        """Accept, tentatively accept or decline this mailbox's copy (rooms: M4, attendees: L3).

        Not retried inline after an unclear failure (sendResponse mails the organiser: a retry could send
        it twice); only a refusal Graph did not read (429) is retried, as for sendMail."""
        url = self._event_url(mailbox, event_id)
        if response not in ("accept", "tentativelyAccept", "decline"):
            raise UnprocessableError(f"unknown response {response!r}", side="graph", mailbox=mailbox)
        # The request bodies' serialization (AcceptPostRequestBody and its siblings): capitalised names.
        body = json.dumps({"Comment": comment, "SendResponse": True}).encode()
        await self._call(
            mailbox,
            event_id,
            lambda: self.send(request(Method.POST, f"{url}/{response}", body)),  # a new one per attempt
            idempotent=False,
        )

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
                    events.append(self.to_model(item, mailbox))
            link = page.odata_next_link if page else None
            if not link:
                return events
            page = await self._call(
                mailbox,
                None,
                functools.partial(builder.with_url(self.checked_link(link, mailbox)).get, _config()),
            )

    async def delta_page(
        self, mailbox: str, *, link: str | None, start: datetime | None = None, end: datetime | None = None
    ) -> DeltaPage:
        """One page of `/users/{id}/calendarView/delta`: first the window, then links verbatim (facts §7).

        A delta token Graph no longer knows (410, syncStateNotFound) raises NotFoundError: start again.
        """
        from msgraph.generated.users.item.calendar_view.delta.delta_request_builder import DeltaRequestBuilder

        builder = self._client.users.by_user_id(mailbox).calendar_view.delta
        if link:
            page = await self._call(
                mailbox, None, lambda: builder.with_url(self.checked_link(link, mailbox)).get(_config())
            )
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
            events.append(self.to_model(item, mailbox))
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
        """Subscribe to a mailbox's events, lifecycle URL set at creation (it cannot be added later).

        Not retried inline (only a 429, which Graph refused unread): after a timeout or a 5xx Graph may have
        made the subscription, and a blind retry would add an untracked one (or meet 409, a duplicate). The
        caller settles such an unclear failure with `list_subscriptions` (SubscriptionManager._create)."""
        body = Subscription(
            change_type="created,updated,deleted",
            notification_url=notification_url,
            lifecycle_notification_url=lifecycle_url,
            resource=f"/users/{mailbox}/events",
            expiration_date_time=expires_at,
            client_state=client_state,
        )
        sub = await self._call(
            mailbox, None, lambda: self._client.subscriptions.post(body, _config()), idempotent=False
        )
        if sub is None or not sub.id or sub.expiration_date_time is None:
            raise TransientError("Graph returned no subscription", side="graph", mailbox=mailbox)
        return CreatedSubscription(sub.id, sub.expiration_date_time)

    async def list_subscriptions(self, mailbox: str, notification_url: str) -> list[str]:
        """Ids of this app's subscriptions to `mailbox`'s events that notify `notification_url`.

        `GET /subscriptions` lists every subscription of the app (application permission), all pages; Graph
        has no $filter here, so the resource (as we create it, /users/{mailbox}/events) and the URL are
        matched locally. Listing is throttled hard (25 per 20 s per tenant): for unclear creates only."""
        builder = self._client.subscriptions
        page = await self._call(mailbox, None, lambda: builder.get(_config()))
        wanted = f"users/{mailbox.lower()}/events"
        found: list[str] = []
        while True:
            for sub in page.value if page and page.value else []:
                resource = (sub.resource or "").strip("/").lower()
                if sub.id and resource == wanted and sub.notification_url == notification_url:
                    found.append(sub.id)
            link = page.odata_next_link if page else None
            if not link:
                return found
            page = await self._call(
                mailbox,
                None,
                functools.partial(builder.with_url(self.checked_link(link, mailbox)).get, _config()),
            )

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
