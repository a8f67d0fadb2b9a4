"""Shared constants and parsing helpers for the Graph emulator tests.

msgraph-sdk 1.65 ships no ChangeNotificationCollection (microsoftgraph/msgraph-sdk-python#1322), so the
webhook payload models below mirror Graph's `changeNotificationCollection` / `changeNotification` /
`resourceData` resource types as kiota Parsables, parsed by kiota's own JsonParseNodeFactory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from kiota_abstractions.serialization import Parsable, ParseNode, SerializationWriter
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory

ALICE = "cd209b0b-3f83-4c35-82d2-d88a61820480"
BOB = "5a7d1c0e-8f1b-4c8e-9d3f-2b6a4e9c7d10"
ROOM = "9e3b2a41-6c5d-4f7e-8a9b-0c1d2e3f4a5b"
MODERATED_ROOM = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"
ALICE_MAIL = "alice@contoso.com"
BOB_MAIL = "bob@contoso.com"
ROOM_MAIL = "room.harbour@contoso.com"
MODERATED_ROOM_MAIL = "room.board@contoso.com"
ENTITY_EXTRAS = frozenset({"@odata.etag", "@odata.context"})

T = TypeVar("T", bound=Parsable)


def parse(payload: Any, model: type[T]) -> T:
    """Parse JSON into a kiota model with kiota's JSON parse node (the SDK's own path)."""
    node = JsonParseNodeFactory().get_root_parse_node("application/json", json.dumps(payload).encode())
    parsed = node.get_object_value(model)
    assert parsed is not None
    return parsed


def leftovers(model: Any, allowed: frozenset[str] = ENTITY_EXTRAS) -> set[str]:
    """Keys the SDK model did not recognise (kiota puts them in additional_data)."""
    return set(getattr(model, "additional_data", None) or {}) - set(allowed)


@dataclass
class ResourceData(Parsable):
    odata_type: str | None = None
    odata_id: str | None = None
    odata_etag: str | None = None
    id: str | None = None
    additional_data: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def create_from_discriminator_value(parse_node: ParseNode) -> ResourceData:
        return ResourceData()

    def get_field_deserializers(self) -> dict[str, Callable[[ParseNode], None]]:
        return {
            "@odata.type": lambda n: setattr(self, "odata_type", n.get_str_value()),
            "@odata.id": lambda n: setattr(self, "odata_id", n.get_str_value()),
            "@odata.etag": lambda n: setattr(self, "odata_etag", n.get_str_value()),
            "id": lambda n: setattr(self, "id", n.get_str_value()),
        }

    def serialize(self, writer: SerializationWriter) -> None:
        raise AssertionError("parse-only model")


@dataclass
class ChangeNotification(Parsable):
    id: str | None = None
    subscription_id: str | None = None
    subscription_expiration_date_time: datetime | None = None
    client_state: str | None = None
    change_type: str | None = None
    resource: str | None = None
    tenant_id: str | None = None
    resource_data: ResourceData | None = None
    lifecycle_event: str | None = None
    encrypted_content: Any = None
    additional_data: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def create_from_discriminator_value(parse_node: ParseNode) -> ChangeNotification:
        return ChangeNotification()

    def get_field_deserializers(self) -> dict[str, Callable[[ParseNode], None]]:
        return {
            "id": lambda n: setattr(self, "id", n.get_str_value()),
            "subscriptionId": lambda n: setattr(self, "subscription_id", n.get_str_value()),
            "subscriptionExpirationDateTime": lambda n: setattr(
                self, "subscription_expiration_date_time", n.get_datetime_value()
            ),
            "clientState": lambda n: setattr(self, "client_state", n.get_str_value()),
            "changeType": lambda n: setattr(self, "change_type", n.get_str_value()),
            "resource": lambda n: setattr(self, "resource", n.get_str_value()),
            "tenantId": lambda n: setattr(self, "tenant_id", n.get_str_value()),
            "resourceData": lambda n: setattr(
                self,
                "resource_data",
                n.get_object_value(ResourceData),  # type: ignore[arg-type]
            ),
            "lifecycleEvent": lambda n: setattr(self, "lifecycle_event", n.get_str_value()),
            "encryptedContent": lambda n: setattr(self, "encrypted_content", n.get_str_value()),
        }

    def serialize(self, writer: SerializationWriter) -> None:
        raise AssertionError("parse-only model")


@dataclass
class ChangeNotificationCollection(Parsable):
    value: list[ChangeNotification] | None = None
    validation_tokens: list[str] | None = None
    additional_data: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def create_from_discriminator_value(parse_node: ParseNode) -> ChangeNotificationCollection:
        return ChangeNotificationCollection()

    def get_field_deserializers(self) -> dict[str, Callable[[ParseNode], None]]:
        return {
            "value": lambda n: setattr(
                self,
                "value",
                n.get_collection_of_object_values(ChangeNotification),  # type: ignore[arg-type]
            ),
            "validationTokens": lambda n: setattr(
                self, "validation_tokens", n.get_collection_of_primitive_values(str)
            ),
        }

    def serialize(self, writer: SerializationWriter) -> None:
        raise AssertionError("parse-only model")


@dataclass
class Sink:
    """A webhook endpoint in the test loop: answers the validation handshake (or not), records posts."""

    mode: str = "good"
    validations: list[dict[str, Any]] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        token = request.query.get("validationToken")
        if token is not None:
            self.validations.append(
                {
                    "token": token,
                    "content_type": request.headers.get("Content-Type"),
                    "query": dict(request.query),
                }
            )
            if self.mode == "wrong_body":
                return web.Response(text=token + "x", content_type="text/plain")
            if self.mode == "wrong_type":
                return web.Response(text=token, content_type="application/json")
            if self.mode == "error":
                return web.Response(status=500)
            return web.Response(text=token, content_type="text/plain")
        self.posts.append(await request.json())
        self.arrived.set()
        return web.Response(status=202)

    def notifications(self) -> list[dict[str, Any]]:
        return [item for post in self.posts for item in post["value"]]

    async def wait_for(self, count: int, within: float = 30.0) -> list[dict[str, Any]]:
        try:
            async with asyncio.timeout(within):
                while len(self.notifications()) < count:
                    self.arrived.clear()
                    await self.arrived.wait()
        except TimeoutError:
            raise AssertionError(
                f"waited {within} s for {count} notification(s); got {self.notifications()!r:.2000}"
            ) from None
        return self.notifications()
