"""Graph routes for an event's attachments: list, get, add (rule F5's source).

As documented in microsoftgraph/microsoft-graph-docs-contrib (api-reference/v1.0):
* api/event-list-attachments.md: `GET .../events/{id}/attachments`, a collection of attachment objects;
  OData query parameters apply, so `$select` names the properties returned (`@odata.type` and `id` always).
  Without `$select` a fileAttachment comes with its `contentBytes`, as Graph returns it.
* api/attachment-get.md: `GET .../attachments/{id}` returns the properties of that type of attachment:
  fileAttachment (with `contentBytes`, base64), itemAttachment (the attached item only with
  `$expand=microsoft.graph.itemattachment/item`), referenceAttachment. (`/$value`, the raw bytes, is not
  emulated.)
* api/event-post-attachments.md: `POST .../attachments` adds one "under 3 MB" and answers 201 with the
  attachment. resources/fileattachment.md: `name` and `contentBytes` are required for a file. The v1.0
  referenceAttachment has no create method (Get and Delete only), so a POST of one is refused; a test adds
  one as Outlook would with `GraphEmulator.add_attachment`.

Adding an attachment changes the event (a new changeKey and lastModifiedDateTime, `hasAttachments` true)
and is announced as `updated`, as any change of the item. Attachments belong to the stored item: an
occurrence of a series shows its master's. `size` is the decoded length of a file (Exchange adds MIME
overhead to it: the documented example reports 178 for a 20-byte file), and the JSON length of an item.
What Graph answers to a file of 3 MB or more is not documented; the emulator answers 413
`ErrorAttachmentSizeTooLarge` (an upload session, which Graph documents for 3-150 MB, is not emulated).
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
from typing import Any

from devstack.graph_emulator import ids
from devstack.graph_emulator.errors import GraphError, bad_request, not_found
from devstack.graph_emulator.http import GraphRequest, GraphResponse
from devstack.graph_emulator.service import GraphService
from devstack.graph_emulator.state import EmulatorState, EventRecord
from devstack.graph_emulator.timezones import format_instant

MAX_POST_BYTES = 3 * 1024 * 1024  # event-post-attachments.md: "under 3 MB"
FILE = "#microsoft.graph.fileAttachment"
ITEM = "#microsoft.graph.itemAttachment"
REFERENCE = "#microsoft.graph.referenceAttachment"
BASE_PROPERTIES = ("id", "lastModifiedDateTime", "name", "contentType", "size", "isInline")
FILE_PROPERTIES = ("contentId", "contentLocation", "contentBytes")


def _kind(body: dict[str, Any]) -> str:
    kind = str(body.get("@odata.type") or "")
    kind = kind if kind.startswith("#") else "#" + kind
    for known in (FILE, ITEM, REFERENCE):
        if kind.lower() == known.lower():
            return known
    raise bad_request(
        "The attachment's @odata.type must be one of #microsoft.graph.fileAttachment, "
        "#microsoft.graph.itemAttachment or #microsoft.graph.referenceAttachment.",
        code="ErrorInvalidRequest",
    )


def new_attachment(state: EmulatorState, body: Any, *, allow_reference: bool = False) -> dict[str, Any]:
    """The stored attachment for a POST body (validated as the pages above document)."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be an attachment object.")
    kind = _kind(body)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request("The attachment's 'name' is required.", code="ErrorRequiredPropertyMissing")
    stored: dict[str, Any] = {
        "@odata.type": kind,
        "id": ids.opaque_token(24),
        "lastModifiedDateTime": format_instant(state.clock.now()),
        "name": name,
        "contentType": body.get("contentType"),
        "isInline": bool(body.get("isInline", False)),
    }
    if kind == FILE:
        encoded = body.get("contentBytes")
        if not isinstance(encoded, str):
            raise bad_request("A fileAttachment needs 'contentBytes'.", code="ErrorRequiredPropertyMissing")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise bad_request("'contentBytes' is not valid base64.") from exc
        if len(raw) >= MAX_POST_BYTES:
            raise GraphError(
                413,
                "ErrorAttachmentSizeTooLarge",
                f"The attachment is {len(raw)} bytes; attachments of 3 MB or more are added with an "
                "upload session.",
            )
        stored |= {
            # The documented answer to a file sent without a contentType names one ("menu.txt": text/plain).
            "contentType": body.get("contentType")
            or mimetypes.guess_type(name)[0]
            or "application/octet-stream",
            "size": len(raw),
            "contentId": body.get("contentId"),
            "contentLocation": None,
            "contentBytes": base64.b64encode(raw).decode(),
        }
    elif kind == ITEM:
        item = body.get("item")
        if not isinstance(item, dict):
            raise bad_request("An itemAttachment needs an 'item'.", code="ErrorRequiredPropertyMissing")
        stored |= {"size": len(json.dumps(item)), "item": item}
    else:
        if not allow_reference:
            raise GraphError(
                405,
                "ErrorInvalidRequest",
                "A referenceAttachment cannot be added to an event through this API version.",
            )
        stored |= {"size": int(body.get("size") or 0)}
    return stored


def render_attachment(
    stored: dict[str, Any], select: str | None, *, expand_item: bool = False
) -> dict[str, Any]:
    """The attachment's JSON: its type's properties, or only those `$select` names."""
    names = list(BASE_PROPERTIES) + (list(FILE_PROPERTIES) if stored["@odata.type"] == FILE else [])
    if select:
        wanted = {s.strip().lower() for s in select.split(",") if s.strip()}
        names = [n for n in names if n.lower() in wanted or n == "id"]
    out: dict[str, Any] = {"@odata.type": stored["@odata.type"]}
    out |= {n: stored.get(n) for n in names}
    if expand_item and stored["@odata.type"] == ITEM:
        out["item"] = dict(stored["item"])
    return out


class AttachmentsApi:
    def __init__(self, svc: GraphService) -> None:
        self.svc = svc
        self.state = svc.state
        for prefix in ("/users/{user}/events/{event}", "/users/{user}/calendar/events/{event}"):
            svc.router.add("GET", prefix + "/attachments", self.list)
            svc.router.add("POST", prefix + "/attachments", self.add)
            svc.router.add("GET", prefix + "/attachments/{attachment}", self.get)

    def _record(self, user: str, event_id: str) -> EventRecord:
        mailbox = self.state.mailbox(user)
        record = self.state.events[mailbox.id].get(event_id)
        if record is None:
            parsed = ids.parse_occurrence_id(event_id)
            record = self.state.events[mailbox.id].get(parsed[0]) if parsed else None
        if record is None:
            raise not_found()
        return record

    def _context(self, record: EventRecord, event_id: str, tail: str) -> str:
        where = f"users('{record.mailbox_id}')/events('{event_id}')/attachments"
        return f"{self.svc.base_url}/$metadata#{where}{tail}"

    async def list(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        with self.state.lock:
            record = self._record(params["user"], params["event"])
            values = [render_attachment(a, req.param("$select")) for a in record.attachments]
        return GraphResponse(
            200, {"@odata.context": self._context(record, params["event"], ""), "value": values}
        )

    def _find(self, record: EventRecord, attachment_id: str) -> dict[str, Any]:
        for stored in record.attachments:
            if stored["id"] == attachment_id:
                return stored
        raise not_found()

    async def get(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        expand = (req.param("$expand") or "").lower()
        with self.state.lock:
            record = self._record(params["user"], params["event"])
            stored = self._find(record, params["attachment"])
            body = {
                "@odata.context": self._context(record, params["event"], "/$entity"),
                **render_attachment(stored, req.param("$select"), expand_item="item" in expand),
            }
        return GraphResponse(200, body)

    async def add(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        with self.state.lock:
            record = self._record(params["user"], params["event"])
            stored = attach(self.state, record, new_attachment(self.state, req.body))
        body = {
            "@odata.context": self._context(record, params["event"], "/$entity"),
            **render_attachment(stored, None),
        }
        return GraphResponse(201, body)


def attach(state: EmulatorState, record: EventRecord, stored: dict[str, Any]) -> dict[str, Any]:
    """Add `stored` to the event: a change of the item (changeKey, lastModifiedDateTime, `updated`)."""
    with state.lock:
        record.attachments.append(stored)
        state.touch(record)
        state.publish(record.mailbox_id, record.id, "updated", record.etag)
    return stored
