"""The queue the CRM front doors' tests hand a door (tests/crm/test_crm_ingress.py, the Salesforce outbound
message and Dataverse webhook tests): it records what the door enqueues. Their replay table on Azurite is
the `seen` fixture of tests/conftest.py."""

from __future__ import annotations

from sync_core.errors import TransientError


class Queue:
    """Records what the front door enqueues; `fail` makes the next sends raise like a storage outage."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.fail = False

    async def enqueue(self, text: str) -> None:
        if self.fail:
            raise TransientError("queue unavailable", side="storage")
        self.sent.append(text)
