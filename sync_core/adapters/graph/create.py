"""Finding an event we created, when Graph refuses a retried create instead of returning it (I3). I/O side."""

from __future__ import annotations

import functools
from typing import cast

from kiota_abstractions.method import Method
from msgraph.generated.models.event import Event

from sync_core.adapters.graph.base import GraphBase, config
from sync_core.adapters.graph.json_view import JsonView
from sync_core.adapters.graph.wire import events_url, expand_tag, query, request
from sync_core.domain.model import GraphEvent

FIND_CREATED_PAGE = 10  # a tag names one meeting: one page is the usual answer


def odata_text(value: str) -> str:
    """A value inside an OData string literal: a single quote is written twice."""
    return value.replace("'", "''")


def tag_filter(prop_id: str, tag: str) -> str:
    """`$filter` for items whose extended property `prop_id` has the value `tag`.

    The form documented in Graph's singleValueLegacyExtendedProperty-get:
    `singleValueExtendedProperties/Any(ep: ep/id eq '{id}' and ep/value eq '{value}')`.
    """
    return (
        f"singleValueExtendedProperties/Any(ep: ep/id eq '{odata_text(prop_id)}'"
        f" and ep/value eq '{odata_text(tag)}')"
    )


async def find_created(
    adapter: GraphBase, mailbox: str, *, tag: str, transaction_id: str
) -> GraphEvent | None:
    """The event created in `mailbox` for meeting key `tag` with `transaction_id`, or None: asked once per
    active tag secret (two while one is being retired), since the tag's value is signed."""
    for signed in adapter.signed_tags(tag, mailbox):
        found = await _find(adapter, mailbox, signed, transaction_id)
        if found is not None:
            return found
    return None


async def _find(adapter: GraphBase, mailbox: str, tag: str, transaction_id: str) -> GraphEvent | None:
    """The event created in `mailbox` under the tag value `tag` with `transaction_id`, or None.

    `GET /users/{id}/events?$filter=<tag_filter>` with our property expanded, following `@odata.nextLink`.
    An event carrying another transactionId is not the create we are retrying and is never taken. Graph
    returns transactionId only when an app set it, so a tagged organizer's event without one is taken when
    no exact match exists.
    """
    prop = adapter.extended_property_id
    url = events_url(adapter.client.request_adapter.base_url, mailbox) + query(
        ("$expand", [expand_tag(odata_text(prop))]),  # the template's order: $expand, $filter, $top
        ("$filter", tag_filter(prop, tag)),
        ("$top", FIND_CREATED_PAGE),
    )
    # JSON read under the models' names (json_view), not parsed into models: one parse per listed event
    data = await adapter._call(mailbox, transaction_id, lambda: adapter.send_json(request(Method.GET, url)))
    page = JsonView(data or {})
    fallback: Event | None = None
    while True:
        for item in page.value if page and page.value else []:
            if item.transaction_id == transaction_id:
                return adapter.to_model(cast(Event, item), mailbox)
            if item.transaction_id is None and item.is_organizer is not False and fallback is None:
                fallback = cast(Event, item)
        link = page.odata_next_link if page else None
        if not link:
            break
        builder = adapter.client.users.by_user_id(mailbox).events
        following = builder.with_url(adapter.checked_link(link, mailbox))
        data = await adapter._call(
            mailbox,
            transaction_id,
            functools.partial(adapter.send_json, following.to_get_request_information(config())),
        )
        page = JsonView(data or {})
    return None if fallback is None else adapter.to_model(fallback, mailbox)
