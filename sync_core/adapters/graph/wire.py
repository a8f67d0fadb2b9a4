"""The requests of every synced change (read, create, update, find our create; cancel, delete, respond),
built without request builders: no I/O.

msgraph-sdk's request builders keep a URL template that kiota expands on every read of the URL, in Python,
character by character (stduritemplate: about 5 ms under the profiler for a read naming its 34 properties,
issue 20), and kiota's ParametersNameDecodingHandler then parses the URL again to turn `%24select` back into
`$select`. Here the URL is written as those two steps leave it: each path segment and query value as RFC
6570 expands it (`quote(value, safe="")`: the unreserved characters stay), the query names as `$select`,
in the template's order; the query of a read is built once per property id. Headers and bodies are those
the builders set. The request still goes through the SDK's request adapter (auth, middleware, errors).
tests/graph/test_wire.py sends each request both ways and compares what reaches the transport.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from urllib.parse import quote

from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_http.middleware.options import ParametersNameDecodingHandlerOption

from sync_core.adapters.graph.base import PREFER_HEADERS
from sync_core.adapters.graph.convert import EVENT_PROPERTIES

# Our query names are written decoded already: the handler would parse the URL again to change nothing.
_NAMES_DECODED = ParametersNameDecodingHandlerOption(enable=False)


def segment(value: str) -> str:
    """A path segment or query value as RFC 6570 simple expansion writes it."""
    return quote(value, safe="")


def query(*params: tuple[str, Sequence[str] | str | int | None]) -> str:
    """`?name=value&...` in the given order (a template's), lists joined by commas; None left out."""
    parts = []
    for name, value in params:
        if value is None:
            continue
        if isinstance(value, int):
            text = str(value)
        elif isinstance(value, str):
            text = segment(value)
        else:
            text = ",".join(segment(v) for v in value)
        parts.append(f"{name}={text}")
    return "?" + "&".join(parts) if parts else ""


def expand_tag(prop_id: str) -> str:
    """`$expand` of our single-value extended property alone."""
    return f"singleValueExtendedProperties($filter=id eq '{prop_id}')"


@cache
def get_event_query(prop_id: str) -> str:
    """The query of a read by id: every property the conversion reads, the cancelled and exception
    occurrences (a series master's, R3), and our tag (template order: $expand, $select)."""
    return query(
        ("$expand", [expand_tag(prop_id)]),
        ("$select", [*EVENT_PROPERTIES, "cancelledOccurrences", "exceptionOccurrences"]),
    )


def events_url(base_url: str, mailbox: str) -> str:
    """`/users/{id}/events` (create, list)."""
    return f"{base_url}/users/{segment(mailbox)}/events"


def event_url(base_url: str, mailbox: str, event_id: str) -> str:
    """`/users/{id}/events/{id}` (read, update)."""
    return f"{base_url}/users/{segment(mailbox)}/events/{segment(event_id)}"


def request(method: Method, url: str, body: bytes | None = None) -> RequestInformation:
    """A request with our Prefer headers, as a builder's `to_*_request_information` makes it; a body is
    JSON (event_json)."""
    info = RequestInformation(method)
    info.url = url
    for value in PREFER_HEADERS:
        info.headers.add("Prefer", value)
    info.headers.try_add("Accept", "application/json")
    if body is not None:
        info.headers.try_add(RequestInformation.CONTENT_TYPE_HEADER, "application/json")
        info.content = body
    info.add_request_options([_NAMES_DECODED])
    return info
