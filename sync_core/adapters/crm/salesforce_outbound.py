"""Salesforce outbound messages (SOAP 1.1 `notifications` of the outbound messaging WSDL): decoded with no
document type, the organization checked, the acknowledgement and the fault written. Pure: no I/O.
The message, its answers and the setup: docs/connectors/salesforce.md, "Push (outbound messages)".
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.parsers import expat
from xml.sax.saxutils import escape

from sync_core.ports.crm_webhook import WebhookRejected

NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS_OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
NS_SOBJECT = "urn:sobject.enterprise.soap.sforce.com"
NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
OBJECT = "Event"
MAX_NOTIFICATIONS = 100  # the WSDL's maxOccurs
# 100 notifications of a few fields each stay far below this; a message carrying Description (32,000
# characters) for each is refused: docs/connectors/salesforce.md says which fields to send.
MAX_BODY_BYTES = 1024 * 1024
_MAX_DEPTH = 16
_SEP = "|"
_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_ORG_ID = re.compile(r"00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?")


@dataclass(frozen=True)
class OutboundNotification:
    """One `Notification`: its id, the sObject's type and record Id (None when the record was deleted before
    the message was sent: Salesforce then sends no data), and the fields as text (None for xsi:nil)."""

    notification_id: str
    object_type: str
    record_id: str | None
    fields: Mapping[str, str | None]


@dataclass(frozen=True)
class OutboundMessage:
    organization_id: str
    action_id: str
    notifications: tuple[OutboundNotification, ...]


@dataclass
class _Node:
    name: str  # "namespace|local"
    attrs: dict[str, str]
    children: list[_Node] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts).strip()

    def all(self, ns: str, local: str) -> list[_Node]:
        return [c for c in self.children if c.name == f"{ns}{_SEP}{local}"]

    def one(self, ns: str, local: str, what: str) -> _Node:
        found = self.all(ns, local)
        if len(found) != 1:
            raise WebhookRejected(400, f"not an outbound message: expected one {what}, found {len(found)}")
        return found[0]


def _refuse_dtd(*_: Any) -> None:
    raise WebhookRejected(400, "a document type or entity declaration is not accepted")


def _tree(body: bytes) -> _Node:
    parser = expat.ParserCreate(namespace_separator=_SEP)
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.UnparsedEntityDeclHandler = _refuse_dtd  # external entities need a DOCTYPE: refused above
    parser.buffer_text = True
    root = _Node("", {})
    stack = [root]

    def start(name: str, attrs: dict[str, str]) -> None:
        if len(stack) > _MAX_DEPTH:
            raise WebhookRejected(400, "not an outbound message: nested too deeply")
        node = _Node(name, attrs)
        stack[-1].children.append(node)
        stack.append(node)

    def end(_: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        stack[-1].parts.append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        raise WebhookRejected(400, f"malformed XML: {exc}") from exc
    return root


def _nil(node: _Node) -> bool:
    return node.attrs.get(f"{NS_XSI}{_SEP}nil", "").strip() in ("true", "1")


def _notification(node: _Node) -> OutboundNotification:
    notification_id = node.one(NS_OUTBOUND, "Id", "Notification Id").text
    if not _ID.fullmatch(notification_id):
        raise WebhookRejected(400, "not an outbound message: a Notification Id is not a Salesforce id")
    sobject = node.one(NS_OUTBOUND, "sObject", "sObject in a Notification")
    declared = sobject.attrs.get(f"{NS_XSI}{_SEP}type", "")
    object_type = declared.rpartition(":")[2].strip()
    if not object_type:
        raise WebhookRejected(400, "not an outbound message: an sObject has no xsi:type")
    fields: dict[str, str | None] = {}
    for child in sobject.children:
        ns, _, local = child.name.rpartition(_SEP)
        if ns == NS_SOBJECT:
            fields[local] = None if _nil(child) else child.text
    record_id = fields.get("Id") or None
    if record_id is not None and not _ID.fullmatch(record_id):
        raise WebhookRejected(400, "not an outbound message: an sObject Id is not a Salesforce id")
    return OutboundNotification(notification_id, object_type, record_id, fields)


def parse_message(body: bytes) -> OutboundMessage:
    """Decode an outbound message; WebhookRejected 413 above MAX_BODY_BYTES, 400 when it is not one (a
    DOCTYPE, malformed XML, a missing element, more than 100 notifications).

    The WSDL's shape ("Understanding the Outbound Messaging WSDL"): Envelope > Body > `notifications` with
    `OrganizationId`, `ActionId`, `SessionId`, `EnterpriseUrl`, `PartnerUrl` and 1 to 100 `Notification`,
    each an `Id` (the same in every retry) and an `sObject` of `xsi:type` `sf:<object>` with its fields."""
    if len(body) > MAX_BODY_BYTES:
        raise WebhookRejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    if not body.strip():
        raise WebhookRejected(400, "not an outbound message: empty body")
    root = _tree(body)
    envelope = root.one(NS_SOAP, "Envelope", "SOAP 1.1 Envelope")
    notifications = envelope.one(NS_SOAP, "Body", "SOAP Body").one(
        NS_OUTBOUND, "notifications", "notifications"
    )
    organization = notifications.one(NS_OUTBOUND, "OrganizationId", "OrganizationId").text
    action = notifications.one(NS_OUTBOUND, "ActionId", "ActionId").text
    if not organization or not action:
        raise WebhookRejected(400, "not an outbound message: OrganizationId and ActionId must not be empty")
    items = notifications.all(NS_OUTBOUND, "Notification")
    if not items:
        raise WebhookRejected(400, "not an outbound message: no Notification")
    if len(items) > MAX_NOTIFICATIONS:
        raise WebhookRejected(
            400, f"{len(items)} notifications: an outbound message carries at most {MAX_NOTIFICATIONS}"
        )
    return OutboundMessage(organization, action, tuple(_notification(n) for n in items))


def short_id(record_id: str) -> str:
    """The 15-character, case-sensitive form of a Salesforce id (18 characters add a case-safe suffix)."""
    return record_id[:15]


def authorize(message: OutboundMessage, org_id: str | None) -> None:
    """WebhookRejected(403) unless the message names our organization (SALESFORCE_ORG_ID, in its 15- or
    18-character form; compared in constant time). Without SALESFORCE_ORG_ID every message is refused."""
    expected = (org_id or "").strip()
    if not expected:
        raise WebhookRejected(403, "SALESFORCE_ORG_ID is not set: outbound messages are not accepted")
    given = message.organization_id
    ok = bool(_ORG_ID.fullmatch(given)) and hmac.compare_digest(
        short_id(given).encode(), short_id(expected).encode()
    )
    if not ok:
        raise WebhookRejected(403, "OrganizationId is not this app's Salesforce organization")


def events_only(message: OutboundMessage) -> None:
    """WebhookRejected(422) when a notification is about another object: the outbound message is defined on
    the wrong object, which Salesforce shows in its outbound message queue."""
    for n in message.notifications:
        if n.object_type != OBJECT:
            raise WebhookRejected(
                422, f"sObject {n.object_type[:100]!r} is not synced: define the outbound message on {OBJECT}"
            )


def ack() -> str:
    """The acknowledgement: `notificationsResponse` with `Ack` true, for every notification of the message."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{NS_SOAP}"><soapenv:Body>'
        f'<notificationsResponse xmlns="{NS_OUTBOUND}"><Ack>true</Ack></notificationsResponse>'
        "</soapenv:Body></soapenv:Envelope>"
    )


def fault(reason: str, *, server: bool = False) -> str:
    """A SOAP 1.1 fault (soapenv:Client, or soapenv:Server when trying again can help): Salesforce shows
    the faultstring as the delivery failure reason in its outbound message queue."""
    code = "soapenv:Server" if server else "soapenv:Client"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{NS_SOAP}"><soapenv:Body><soapenv:Fault>'
        f"<faultcode>{code}</faultcode><faultstring>{escape(reason)}</faultstring>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
