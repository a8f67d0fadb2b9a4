"""F5: the attachments of the Microsoft 365 side of a change, read before the engine decides. I/O side.

Graph returns an event without its attachments (`hasAttachments` only), so the event the engine merges gets
them here: one list call, and with `attachments: content` the bytes of each file within
`attachment_content_max_bytes` that the CRM record does not already hold in that version (id,
lastModifiedDateTime, size). A meeting edit that leaves the files alone downloads nothing, and the merge sends
attachments to the CRM only when their metadata differs (W4). Nothing is read under `attachments: none`, nor
for a private event the policy syncs without details (S3) or skips.
"""

from __future__ import annotations

from sync_core.domain.model import CrmRecord, GraphEvent
from sync_core.domain.policy import Policy
from sync_core.engine.scope import is_private
from sync_core.errors import NotFoundError
from sync_core.ports.calendar import Calendar


async def with_attachments(
    graph: Calendar, event: GraphEvent | None, crm: CrmRecord | None, policy: Policy
) -> GraphEvent | None:
    """`event` with its attachments as the policy syncs them (unchanged when it has none to read)."""
    if event is None or policy.attachments == "none" or not event.has_attachments:
        return event
    if is_private(event.appointment) and policy.private_events != "full":
        return event
    limit = policy.attachment_content_max_bytes if policy.attachments == "content" else None
    known = crm.appointment.attachments if crm is not None else ()
    try:
        found = await graph.read_attachments(
            event.mailbox, event.event_id, known=known, content_max_bytes=limit
        )
    except NotFoundError:  # deleted since it was read: the next notification says so
        return event
    appointment = event.appointment.model_copy(update={"attachments": found})
    return event.model_copy(update={"appointment": appointment})
