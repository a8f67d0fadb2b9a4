"""An event's attachments (rule F5), used through GraphAdapter.read_attachments(). I/O side.

One list call selects the metadata only (`$select` without `contentBytes`: Graph would otherwise send every
file's bytes); then one GET per file whose bytes are wanted: a fileAttachment within the size limit that the
target does not have yet. "Has" is by (id, lastModifiedDateTime, size): a meeting edit that leaves a file
alone, or a notification read again, downloads nothing. Item and reference attachments never bring content
(an item is an Outlook item, a reference a link to a file stored elsewhere).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from msgraph.generated.models.file_attachment import FileAttachment
from msgraph.generated.users.item.events.item.attachments.attachments_request_builder import (
    AttachmentsRequestBuilder,
)

from sync_core.adapters.graph.base import GraphBase
from sync_core.adapters.graph.base import config as _config
from sync_core.adapters.graph.convert import ATTACHMENT_PROPERTIES, attachment_from_graph
from sync_core.domain.model import Attachment


def wants_content(item: Attachment, known: set[tuple[str, str, int]], max_bytes: int | None) -> bool:
    """A file within `max_bytes` that the target does not already hold in this version."""
    return (
        max_bytes is not None
        and item.kind == "file"
        and bool(item.id)
        and item.size <= max_bytes
        and item.version_key not in known
    )


async def read_attachments(
    adapter: GraphBase,
    mailbox: str,
    event_id: str,
    builder: AttachmentsRequestBuilder,
    *,
    known: Iterable[Attachment] = (),
    content_max_bytes: int | None = None,
) -> tuple[Attachment, ...]:
    """The event's attachments (`builder`: its `/attachments`), in Graph's order; each file wanted (see
    `wants_content`) carries its bytes."""
    query = AttachmentsRequestBuilder.AttachmentsRequestBuilderGetQueryParameters(
        select=list(ATTACHMENT_PROPERTIES)
    )
    page = await adapter._call(mailbox, event_id, lambda: builder.get(_config(query)))
    listed = [attachment_from_graph(a) for a in (page.value if page and page.value else [])]
    have = {a.version_key for a in known}
    out: list[Attachment] = []
    for item in listed:
        if wants_content(item, have, content_max_bytes):
            one = builder.by_attachment_id(item.id)
            got = await adapter._call(mailbox, event_id, functools.partial(one.get, _config()))
            if isinstance(got, FileAttachment) and got.content_bytes is not None:
                # Metadata from the same read as the bytes, so a file replaced meanwhile stays consistent.
                item = attachment_from_graph(got, content=bytes(got.content_bytes))
        out.append(item)
    return tuple(out)
