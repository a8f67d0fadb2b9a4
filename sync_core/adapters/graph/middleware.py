"""The kiota middleware chain of our Graph client: msgraph-core's default, less what does nothing for us.

No I/O of its own. Each handler below runs on every request and opens a tracing span (an exported span
once Application Insights is configured), so one that has nothing to do costs CPU for nothing (issue 20,
docs/benchmarks.md). Kept, in the default order:
- RedirectHandler: follows a 3xx as msgraph-sdk does.
- ParametersNameDecodingHandler: turns `%24select` back into `$select` for URLs a request builder
  expanded (wire.py writes its URLs decoded and turns it off per request).
- UserAgentHandler: kiota's User-Agent.
- GraphTelemetryHandler: client-request-id, SdkVersion, HostOs, RuntimeEnvironment on requests to Graph;
  whether a URL is Graph's is read from httpx's parsed URL instead of parsing it again with urllib3.
Dropped:
- RetryHandler: we configured it never to retry (GraphBase owns retries: limiter places, the deadline,
  queue delays). Its presence is a featureUsage flag, which msgraph-core 1.5 leaves out of the SdkVersion
  header without an api_version option (the header carries the unformatted placeholder either way).
- UrlReplaceHandler: its default has no replacement pairs (it exists for `/users/me-token-to-replace`, a
  URL we never build), yet it parses every request's URL again.
- HeadersInspectionHandler: by default copies every request and response header into a collection that
  only a caller passing its option would read; we never do.
- BodyInspectionHandler: reads bodies only for a caller passing its option; we never do.
tests/graph/test_wire.py sends the same requests through this chain and the default one and compares
what reaches the transport.
"""

from __future__ import annotations

from typing import Any

from kiota_http.middleware import (
    BaseMiddleware,
    ParametersNameDecodingHandler,
    RedirectHandler,
    UserAgentHandler,
)
from msgraph_core import NationalClouds
from msgraph_core.middleware import GraphTelemetryHandler

_GRAPH_ENDPOINTS = frozenset(cloud.value for cloud in NationalClouds)


class GraphTelemetry(GraphTelemetryHandler):  # type: ignore[misc]
    """msgraph-core's telemetry headers; `is_graph_url` reads the URL httpx has parsed already.

    The same answer as msgraph-core's (`scheme://host[:port]` is a national cloud's endpoint): httpx keeps the
    scheme and host lower-case and drops a default port, as urllib3's `parse_url` does."""

    def is_graph_url(self, url: Any) -> bool:
        return f"{url.scheme}://{url.netloc.decode('ascii')}" in _GRAPH_ENDPOINTS


def middleware() -> list[BaseMiddleware]:
    """A new chain (handlers hold per-client options): see the module docstring for each choice."""
    return [
        RedirectHandler(),
        ParametersNameDecodingHandler(),
        UserAgentHandler(),
        GraphTelemetry(),
    ]
