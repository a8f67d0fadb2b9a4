"""A Dataverse Web API emulator (the subset DataverseConnector speaks), for the tests and the dev stack."""

from devstack.dataverse_emulator.api import Faults, Recorded
from devstack.dataverse_emulator.emulator import APP_USER_ID, DEFAULT_TOKEN, DataverseEmulator
from devstack.dataverse_emulator.store import ApiError

__all__ = ["APP_USER_ID", "DEFAULT_TOKEN", "ApiError", "DataverseEmulator", "Faults", "Recorded"]
