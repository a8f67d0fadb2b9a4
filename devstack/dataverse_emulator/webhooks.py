"""The Dataverse emulator's webhook: a service endpoint (contract 8) with steps on appointment Create, Update
and Delete, asynchronous, PostOperation, posting the RemoteExecutionContext JSON as Dataverse does.

The shape follows MicrosoftDocs/powerapps-docs developer/data-platform/use-webhooks.md ("Data passed to the
service", the serialized RemoteExecutionContext of an asynchronous PostOperation Update step): the same keys
at every level, WCF dates (`/Date(ms)/`), the Target as an Entity (`Attributes` as key/value pairs) or, for
Delete, an EntityReference, the ParentContext of the synchronous MainOperation (stage 30), and the headers of
its "Header Data" table. Authentication is the HttpHeader option (register-web-hook.md): the registered
key/value pairs are sent as headers. A failed delivery is tried once more, only after 502, 503 or 504
("Troubleshoot WebHook registrations"); anything else fails the System Job.

I/O side: aiohttp client tasks on the emulator's loop, never awaited by an API handler.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from devstack.webhook_sender import RetryingSender

log = logging.getLogger("devstack.dataverse_emulator")

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
RETRIED_STATUSES = (502, 503, 504)
POST_OPERATION, MAIN_OPERATION = 40, 30
ASYNCHRONOUS = 1
MESSAGES = ("Create", "Update", "Delete")
_TIMES = ("scheduledstart", "scheduledend", "createdon", "modifiedon", "actualstart", "actualend")
_OPTION_SETS = ("statecode", "statuscode", "prioritycode")
_LOOKUPS = {"_modifiedby_value": "modifiedby", "_createdby_value": "createdby"}
_SKIPPED = ("@odata.etag", "versionnumber", "appointment_activity_parties")


def wcf_date(moment: datetime) -> str:
    """`/Date(<ms since the epoch>)/`, as the RemoteExecutionContext serializes a DateTime."""
    return f"/Date({int(moment.astimezone(UTC).timestamp() * 1000)})/"


def entity_reference(logical_name: str, entity_id: str) -> dict[str, Any]:
    return {
        "__type": f"EntityReference:{CONTRACTS}",
        "Id": entity_id,
        "KeyAttributes": [],
        "LogicalName": logical_name,
        "Name": None,
        "RowVersion": None,
    }


def _value(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _TIMES and isinstance(value, str):
        return wcf_date(datetime.fromisoformat(value.replace("Z", "+00:00")))
    if column in _OPTION_SETS:
        return {"__type": f"OptionSetValue:{CONTRACTS}", "Value": int(value)}
    return value


def _entity(
    logical_name: str, entity_id: str, attributes: Mapping[str, Any], *, typed: bool = True
) -> dict[str, Any]:
    pairs: list[dict[str, Any]] = []
    for column, value in attributes.items():
        if column in _SKIPPED or "@" in column:
            continue
        if column in _LOOKUPS:
            ref = entity_reference("systemuser", str(value)) if value else None
            pairs.append({"key": _LOOKUPS[column], "value": ref})
        else:
            pairs.append({"key": column, "value": _value(column, value)})
    out: dict[str, Any] = {"__type": f"Entity:{CONTRACTS}"} if typed else {}
    return out | {
        "Attributes": pairs,
        "EntityState": None,
        "FormattedValues": [],
        "Id": entity_id,
        "KeyAttributes": [],
        "LogicalName": logical_name,
        "RelatedEntities": [],
        "RowVersion": None,
    }


@dataclass(frozen=True)
class Organization:
    organization_id: str
    business_unit_id: str
    name: str
    domain: str


@dataclass(frozen=True)
class Change:
    """One appointment operation the steps are registered for: what the webhook reports."""

    message: str  # Create, Update or Delete
    entity_id: str
    attributes: dict[str, Any]  # the columns written (Create/Update), with the key and modifiedon/by
    primary_name: str | None  # subject after the operation (the asynchronous step's post image)
    caller: str  # systemuserid of the calling user
    at: datetime


def remote_execution_context(
    change: Change,
    org: Organization,
    *,
    operation_id: str,
    correlation_id: str,
    step_id: str,
) -> dict[str, Any]:
    """The RemoteExecutionContext of the asynchronous PostOperation step for `change`."""
    logical = "appointment"
    if change.message == "Delete":
        target: dict[str, Any] = entity_reference(logical, change.entity_id)
        parent_target = target
    else:
        target = _entity(logical, change.entity_id, change.attributes)
        parent_target = _entity(
            logical,
            change.entity_id,
            {k: v for k, v in change.attributes.items() if k not in ("modifiedon", "_modifiedby_value")},
        )
    outputs = [{"key": "id", "value": change.entity_id}] if change.message == "Create" else []
    post_images = []
    if change.message != "Delete":
        image = {"subject": change.primary_name, "activityid": change.entity_id}
        post_images.append(
            {
                "key": "AsynchronousStepPrimaryName",
                "value": _entity(logical, change.entity_id, image, typed=False),
            }
        )

    # The MainOperation's shared variables name the tables the operation changed (as in the page's example).
    changed_types = [
        {
            "key": "ChangedEntityTypes",
            "value": [
                {
                    "__type": "KeyValuePairOfstringstring:#System.Collections.Generic",
                    "key": logical,
                    "value": change.message,
                }
            ],
        }
    ]

    def context(stage: int, parent: dict[str, Any] | None, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "BusinessUnitId": org.business_unit_id,
            "CorrelationId": correlation_id,
            "Depth": 1,
            "InitiatingUserId": change.caller,
            "InputParameters": inputs,
            "IsExecutingOffline": False,
            "IsInTransaction": False,
            "IsOfflinePlayback": False,
            "IsolationMode": 1,
            "MessageName": change.message,
            "Mode": ASYNCHRONOUS,
            "OperationCreatedOn": wcf_date(change.at),
            "OperationId": operation_id,
            "OrganizationId": org.organization_id,
            "OrganizationName": org.name,
            "OutputParameters": outputs if stage == POST_OPERATION else [],
            "OwningExtension": {
                "Id": step_id,
                "KeyAttributes": [],
                "LogicalName": "sdkmessageprocessingstep",
                "Name": None,
                "RowVersion": None,
            },
            "ParentContext": parent,
            "PostEntityImages": post_images if stage == POST_OPERATION else [],
            "PreEntityImages": [],
            "PrimaryEntityId": change.entity_id,
            "PrimaryEntityName": logical,
            "RequestId": None,
            "SecondaryEntityName": "none",
            "SharedVariables": changed_types if stage == MAIN_OPERATION else [],
            "Stage": stage,
            "UserId": change.caller,
        }

    parent = context(
        MAIN_OPERATION,
        None,
        [{"key": "Target", "value": parent_target}, {"key": "SuppressDuplicateDetection", "value": False}],
    )
    return context(POST_OPERATION, parent, [{"key": "Target", "value": target}])


@dataclass(frozen=True)
class Delivery:
    """One POST: `status` None when the request itself failed (`error`)."""

    message: str
    entity_id: str
    operation_id: str
    attempt: int
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Endpoint:
    """A registered webhook: its URL and the HttpHeader authentication's key/value pairs."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)


class WebhookSender(RetryingSender[Delivery]):
    """Posts one RemoteExecutionContext per change to the registered endpoint, if any. `submit` is called on
    the emulator's loop (from the store); `wait_idle` from any thread."""

    def __init__(self, org: Organization, *, timeout_s: float = 60.0) -> None:
        super().__init__(timeout_s=timeout_s)
        self.org = org
        self.endpoint: Endpoint | None = None
        self.duplicate = False  # deliver every context twice (a delivery whose answer was lost, retried)
        self.step_ids = {m: str(uuid.uuid5(uuid.NAMESPACE_URL, f"msync-step-{m}")) for m in MESSAGES}
        self.sent: list[dict[str, Any]] = []  # every context posted (first attempts), oldest first

    def clear(self) -> None:
        with self._cond:
            super().clear()
            self.sent.clear()

    def submit(self, change: Change) -> None:
        """On the emulator's loop: schedule the delivery of `change` (twice with `duplicate`)."""
        endpoint = self.endpoint
        if endpoint is None or self._session is None or change.message not in MESSAGES:
            return
        context = remote_execution_context(
            change,
            self.org,
            operation_id=str(uuid.uuid4()),
            correlation_id=str(uuid.uuid4()),
            step_id=self.step_ids[change.message],
        )
        body = json.dumps(context, separators=(",", ":")).encode()
        copies = 2 if self.duplicate else 1
        with self._cond:
            generation = self._reserve(copies)
            self.sent.append(context)
        for _ in range(copies):
            self._spawn(self._deliver(endpoint, change, context, body, generation))

    def _deliver(
        self, endpoint: Endpoint, change: Change, context: dict[str, Any], body: bytes, generation: int
    ) -> Coroutine[Any, Any, None]:
        headers = {
            "Content-Type": "application/json",
            **endpoint.headers,
            "x-ms-dynamics-organization": self.org.domain,
            "x-ms-dynamics-entity-name": "appointment",
            "x-ms-dynamics-request-name": change.message,
            "x-ms-correlation-request-id": str(uuid.uuid4()),
        }

        async def attempt(number: int) -> Delivery:
            status, _, error = await self._post(endpoint.url, body, headers)
            status = None if error else status  # a failed request has no status, even if its headers came
            return Delivery(change.message, change.entity_id, context["OperationId"], number, status, error)

        def next_delay(number: int, delivery: Delivery) -> float | None:
            if delivery.status in RETRIED_STATUSES:
                return 0.0 if number < 2 else None  # tried once more, at once
            if not delivery.ok:
                failure = delivery.status or delivery.error
                log.warning("webhook %s %s failed: %s", change.message, change.entity_id, failure)
            return None

        return self._retry(generation, attempt, next_delay)
