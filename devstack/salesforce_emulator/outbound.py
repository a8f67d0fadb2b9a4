"""The Salesforce emulator's outbound message: a SOAP notification per Event create or edit, with the data as
it is when sent, posted to the registered endpoint and retried with backoff until acknowledged; none for a
deletion ("Understanding Notifications", SOAP API Developer Guide).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import string
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from devstack.webhook_sender import RetryingSender

log = logging.getLogger("devstack.salesforce_emulator.outbound")

NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS_OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
NS_SOBJECT = "urn:sobject.enterprise.soap.sforce.com"
ACTION_ID = "04k000000000MSYAAA"  # the outbound message (the workflow action) that sends Events
DEFAULT_FIELDS = ("Id", "LastModifiedById", "SystemModstamp", "msync_Status__c")
_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def soap_message(
    org_id: str,
    notifications: Iterable[tuple[str, str, Mapping[str, Any] | None]],
    *,
    action_id: str = ACTION_ID,
    base_url: str = "https://emulator.my.salesforce.com",
    api_version: str = "62.0",
) -> bytes:
    """An outbound message as the WSDL defines it: `(notification id, object, fields or None)` each; None (a
    record deleted before sending) is an sObject with no data, a None field is xsi:nil."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soapenv:Envelope xmlns:soapenv="{NS_SOAP}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n <soapenv:Body>\n'
        f'  <notifications xmlns="{NS_OUTBOUND}">\n'
        f"   <OrganizationId>{escape(org_id)}</OrganizationId>\n"
        f"   <ActionId>{escape(action_id)}</ActionId>\n"
        '   <SessionId xsi:nil="true"/>\n'
        f"   <EnterpriseUrl>{base_url}/services/Soap/c/{api_version}/{org_id[:15]}</EnterpriseUrl>\n"
        f"   <PartnerUrl>{base_url}/services/Soap/u/{api_version}/{org_id[:15]}</PartnerUrl>\n"
    ]
    for notification_id, obj, fields in notifications:
        parts.append(f"   <Notification>\n    <Id>{escape(notification_id)}</Id>\n")
        parts.append(f'    <sObject xsi:type={quoteattr("sf:" + obj)} xmlns:sf="{NS_SOBJECT}">\n')
        for name, value in (fields or {}).items():
            if value is None:
                parts.append(f'     <sf:{name} xsi:nil="true"/>\n')
            else:
                parts.append(f"     <sf:{name}>{escape(_text(value))}</sf:{name}>\n")
        parts.append("    </sObject>\n   </Notification>\n")
    parts.append("  </notifications>\n </soapenv:Body>\n</soapenv:Envelope>\n")
    return "".join(parts).encode("utf-8")


def acknowledged(body: bytes) -> bool:
    """True when the answer is `notificationsResponse` with `Ack` true (anything else is retried)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return False
    ack = root.find(f"{{{NS_SOAP}}}Body/{{{NS_OUTBOUND}}}notificationsResponse/{{{NS_OUTBOUND}}}Ack")
    return ack is not None and (ack.text or "").strip() == "true"


@dataclass(frozen=True)
class Delivery:
    """One POST of one notification: `status` None when the request itself failed (`error`)."""

    notification_id: str
    record_id: str
    attempt: int
    status: int | None
    acked: bool
    error: str | None = None


class OutboundSender(RetryingSender[Delivery]):
    """Queues a notification per Event change (`submit`, on the emulator's loop) and delivers each to
    `endpoint` until acknowledged or `give_up_s` has passed; `wait_idle` from any thread."""

    def __init__(
        self,
        org_id: str,
        read: Callable[[str], Mapping[str, Any] | None],
        *,
        base_url: Callable[[], str],
        fields: tuple[str, ...] = DEFAULT_FIELDS,
        first_retry_s: float = 0.05,
        max_retry_s: float = 2.0,
        give_up_s: float = 60.0,
    ) -> None:
        super().__init__(timeout_s=60.0)  # Salesforce's 60 s
        self.org_id, self.fields = org_id, fields
        self.endpoint: str | None = None
        self.duplicate = False  # every message twice: a delivery whose acknowledgement was lost, sent again
        self.first_retry_s, self.max_retry_s, self.give_up_s = first_retry_s, max_retry_s, give_up_s
        self._read, self._base_url = read, base_url
        self._ids = itertools.count(1)

    def notification_id(self) -> str:
        n, digits = next(self._ids), ""
        for _ in range(12):
            n, r = divmod(n, 62)
            digits = _ALPHABET[r] + digits
        return f"04l{digits}AAA"

    def submit(self, obj: str, row: Mapping[str, Any]) -> None:
        """The store's hook, on the loop: a created or edited Event queues one notification."""
        if obj != "Event" or self.endpoint is None or self._session is None:
            return
        notification_id, record_id = self.notification_id(), str(row["Id"])
        copies = 2 if self.duplicate else 1
        generation = self._reserve(copies)
        for _ in range(copies):
            self._spawn(self._deliver(self.endpoint, notification_id, record_id, generation))

    def _body(self, notification_id: str, record_id: str) -> bytes:
        """The record as it is now (the latest data, not the data at the change), or no data if deleted."""
        row = self._read(record_id)
        fields = None if row is None else {f: row.get(f) for f in self.fields}
        return soap_message(self.org_id, [(notification_id, "Event", fields)], base_url=self._base_url())

    def _deliver(
        self, url: str, notification_id: str, record_id: str, generation: int
    ) -> Coroutine[Any, Any, None]:
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def attempt(number: int) -> Delivery:
            status, answer, error = await self._post(url, self._body(notification_id, record_id), headers)
            status = None if error else status  # a failed request has no status, even if its headers came
            acked = status == 200 and acknowledged(answer)
            return Delivery(notification_id, record_id, number, status, acked, error)

        def next_delay(number: int, delivery: Delivery) -> float | None:
            if delivery.acked:
                return None
            delay = min(self.first_retry_s * 2.0 ** (number - 1), self.max_retry_s)  # doubled, up to the most
            if loop.time() - started + delay > self.give_up_s:
                log.warning("outbound message %s dropped unacknowledged", notification_id)
                return None
            return delay

        return self._retry(generation, attempt, next_delay)
