"""A loopback Microsoft Graph v1.0 emulator for calendar sync tests and the local stack."""

from devstack.graph_emulator.emulator import GraphEmulator

__all__ = ["GraphEmulator"]
