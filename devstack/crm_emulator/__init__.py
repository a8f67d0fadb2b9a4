"""An in-memory CRM implementing docs/crm-contract.openapi.yaml, for the local stack and the tests."""

from devstack.crm_emulator.api import Faults, RecordedRequest
from devstack.crm_emulator.emulator import DEFAULT_TOKEN, DEFAULT_WEBHOOK_SECRET, CrmEmulator
from devstack.crm_emulator.errors import ApiError
from devstack.crm_emulator.store import ChangeEvent
from devstack.crm_emulator.webhooks import Delivery

__all__ = [
    "DEFAULT_TOKEN",
    "DEFAULT_WEBHOOK_SECRET",
    "ApiError",
    "ChangeEvent",
    "CrmEmulator",
    "Delivery",
    "Faults",
    "RecordedRequest",
]
