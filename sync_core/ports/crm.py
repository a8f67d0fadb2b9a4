"""The port to the customer's CRM: what the sync needs from any CRM, as a Protocol.

`adapters.crm.rest.RestCrmConnector` implements it over the HTTP contract in docs/crm-contract.openapi.yaml,
`adapters.crm.dataverse.DataverseConnector` over the Dataverse Web API; each declares its `CrmCapabilities`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from sync_core.domain.model import Appointment, CrmRecord


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Contact(_Frozen):
    crm_id: str
    email: str
    name: str = ""


class CrmUser(_Frozen):
    crm_id: str
    email: str
    name: str = ""
    mailbox: str | None = None  # primary mailbox used for events created from the CRM (S1)


class Space(_Frozen):
    crm_id: str
    name: str
    room_mailbox: str | None = None
    management_mode: Literal["outlook_auto_accept", "outlook_moderated", "crm_managed"] = (
        "outlook_auto_accept"
    )


class ChangedPage(_Frozen):
    records: tuple[CrmRecord, ...]
    deleted_ids: tuple[str, ...] = ()
    # changed, but the connector could not read them: the sweep hands them to the worker, whose own read
    # fails with the reason (a poison message an operator sees) instead of the page stalling the sweep
    unreadable_ids: tuple[str, ...] = ()
    cursor: str
    more: bool = False


class CrmCapabilities(_Frozen):
    """What a connector's CRM can hold, as data the composition root logs and exposes. A connector refuses
    (UnprocessableError with the reason) what it cannot hold; it never flattens it silently."""

    connector: str
    recurrence: Literal["native", "none"]  # none: a series is refused, never flattened
    exceptions: Literal["native", "none"]  # occurrences changed or cancelled inside a series
    attendee_responses: Literal["native", "kept", "none"]  # kept: stored for us, invisible to CRM users
    rooms: Literal["spaces", "text"]  # spaces: room mailboxes held natively; text: a location string
    change_feed: Literal["cursor", "delta_link"]
    deletes_in_feed: bool = True
    cursor_ttl_days: int | None = None  # None: the cursor does not expire
    create_once: Literal["idempotency_key", "client_id"] = "idempotency_key"
    field_limits: tuple[tuple[str, int], ...] = ()  # (our field, the CRM's maximum length)

    def describe(self) -> dict[str, object]:
        """A flat, JSON-able description for logs and status output."""
        return self.model_dump(mode="json")


class CrmConnector(Protocol):
    """Everything the sync asks of a CRM. Errors are sync_core.errors, never transport exceptions."""

    async def get_appointment(self, crm_id: str) -> CrmRecord | None:
        """The current record, or None when it does not exist."""
        ...

    async def find_by_external_ref(self, external_ref: str) -> CrmRecord | None:
        """I5: the record whose `external_ref` is this meeting key (linked before onboarding, by a CRM user
        or an import that wrote `ical:<iCalUId>`), or None. Where the CRM holds several, the one to link."""
        ...

    async def create_appointment(
        self, appointment: Appointment, *, idempotency_key: str, external_ref: str
    ) -> CrmRecord:
        """Create once: the same idempotency key returns the record the first call created (I3)."""
        ...

    async def update_appointment(
        self, crm_id: str, appointment: Appointment, *, fields: Iterable[str], expected_version: str | None
    ) -> CrmRecord:
        """Change only `fields`; with `expected_version`, refuse (ConcurrencyError) if the record moved on."""
        ...

    async def cancel_appointment(self, crm_id: str) -> CrmRecord:
        """Set the record's status to cancelled (L4)."""
        ...

    async def delete_appointment(self, crm_id: str) -> None:
        """Remove the record."""
        ...

    async def list_changed(self, cursor: str | None, *, limit: int = 100) -> ChangedPage:
        """Records changed since `cursor` (None: from the beginning), for the CRM-side sweep."""
        ...

    async def find_contacts(self, emails: Iterable[str]) -> dict[str, Contact]:
        """Contacts by lower-case email, for the ones that exist."""
        ...

    async def list_users(self) -> list[CrmUser]:
        """CRM users with their mailbox."""
        ...

    async def list_spaces(self) -> list[Space]:
        """Bookable spaces with their room mailbox and management mode."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
