"""The messages on the `sync-changes` queue: what changed where, never the change itself.

Pure data. Each message is a hint; the worker reads current state before deciding.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from sync_core.domain.actions import ChangeType
from sync_core.errors import UnprocessableError

MAX_MESSAGE_BYTES = 48 * 1024  # 64 KiB queue limit, less base64 overhead


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    v: Literal[1] = 1
    correlation_id: str = Field(min_length=1, max_length=64)
    received_at: datetime


class GraphChange(_Message):
    """A Graph change notification for one event in one mailbox."""

    type: Literal["graph_change"] = "graph_change"
    mailbox: str = Field(min_length=1, max_length=320)
    event_id: str = Field(min_length=1, max_length=1024)
    change_type: Literal["created", "updated", "deleted"]
    subscription_id: str | None = None


class CrmChange(_Message):
    """A CRM webhook event for one appointment."""

    type: Literal["crm_change"] = "crm_change"
    crm_id: str = Field(min_length=1, max_length=1024)
    change_type: Literal["created", "updated", "cancelled", "deleted"]
    version: str | None = None


# What a CRM change means to the engine. A cancellation is a change of status: the worker reads the record
# and sees it cancelled (L3).
CRM_CHANGE_TYPES: dict[str, ChangeType] = {
    "created": ChangeType.CREATED,
    "updated": ChangeType.UPDATED,
    "cancelled": ChangeType.UPDATED,
    "deleted": ChangeType.DELETED,
}


class MailboxResync(_Message):
    """Reconcile one mailbox through delta (lifecycle events, sweeps, silence, onboarding)."""

    type: Literal["mailbox_resync"] = "mailbox_resync"
    mailbox: str = Field(min_length=1, max_length=320)
    reason: str = Field(max_length=200)
    full: bool = False


class SubscriptionLifecycle(_Message):
    """Work on one Graph subscription: a lifecycle event (facts §5), or notifications silent while delta
    shows changes (X2, `silent`). `missed` needs no subscription work and travels as a MailboxResync."""

    type: Literal["subscription_lifecycle"] = "subscription_lifecycle"
    mailbox: str = Field(min_length=1, max_length=320)
    subscription_id: str | None = Field(None, max_length=255)  # None: the mailbox's, whichever it is
    event: Literal["reauthorizationRequired", "subscriptionRemoved", "silent"]


AnyMessage = GraphChange | CrmChange | MailboxResync | SubscriptionLifecycle
SyncMessage = Annotated[AnyMessage, Field(discriminator="type")]
_adapter: TypeAdapter[AnyMessage] = TypeAdapter(SyncMessage)


def encode(message: AnyMessage) -> str:
    text = message.model_dump_json()
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        raise UnprocessableError(f"queue message too large ({len(text)} bytes)")
    return text


def decode(body: bytes | str) -> AnyMessage:
    """Parse a queue message; UnprocessableError (a permanent failure) with the reason if it is not ours."""
    try:
        raw = json.loads(body)
        return _adapter.validate_python(raw)
    except (ValueError, ValidationError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, ValidationError):
            reason = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise UnprocessableError(f"not a sync message: {reason}") from exc
