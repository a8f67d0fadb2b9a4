"""The chaos run's CRM side: the REST contract's emulator or Dataverse's, behind one shape (what a CRM user
does, the faults, the request log, the records)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from devstack.run import dataverse_id
from sync_core.domain.model import Appointment, Attendee, Person

if TYPE_CHECKING:
    from tests.chaos.world import ChaosStack, Item

EXTERNAL = "megan@fabrikam.example"


def utc(value: str) -> datetime:
    return datetime.fromisoformat(value.rstrip("Z")[:26]).replace(tzinfo=UTC)


class CrmSide:
    """The chaos run's CRM: what a CRM user does, its faults, its log, and its records in one shape
    (`subject`, `cancelled`, `start`, `end` as UTC datetimes)."""

    def __init__(self, stack: ChaosStack) -> None:
        self.stack = stack

    @property
    def emulator(self) -> Any:
        raise NotImplementedError

    def seed_users(self, mailboxes: list[str]) -> None:
        raise NotImplementedError

    def create(self, item: Item) -> str:
        raise NotImplementedError

    def rename(self, crm_id: str, subject: str, by: str) -> None:
        raise NotImplementedError

    def cancel(self, crm_id: str) -> None:
        raise NotImplementedError

    def records(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def faults_on(self, seed: int) -> None:
        raise NotImplementedError

    def faults_off(self) -> None:
        self.emulator.set_faults()

    def wait_for_webhooks(self, timeout: float) -> bool:
        return bool(self.emulator.wait_for_webhooks(timeout))

    def errors_answered(self) -> int:
        return sum(1 for r in self.emulator.requests if r.status >= 500 or r.status in (412, 429))

    @property
    def webhook_deliveries(self) -> int:
        return len(self.emulator.webhook_deliveries)


# The REST contract's emulator: 5xx, version conflicts, errors after the write, duplicated webhooks.
CRM_FAULTS: dict[str, Any] = {
    "error_rate": 0.05,
    "status": 503,
    "latency_ms": 10,
    "duplicate_webhooks": 0.2,
    "version_conflict_rate": 0.05,
    "error_after_write_rate": 0.03,
}
# Dataverse's emulator: runs of 429 with Retry-After (service protection), every webhook delivered twice.
DATAVERSE_THROTTLED = 3  # requests refused each second


class RestSide(CrmSide):
    @property
    def emulator(self) -> Any:
        return self.stack.crm

    def seed_users(self, mailboxes: list[str]) -> None:
        self.stack.crm.seed(
            users=[{"id": f"u-{m.split('@')[0]}", "email": m, "name": m, "mailbox": m} for m in mailboxes]
        )

    def create(self, item: Item) -> str:
        record = self.stack.crm.user_create(
            {
                "subject": item.subject,
                "start": item.start.isoformat(),
                "end": (item.start + timedelta(hours=1)).isoformat(),
                "organizer": {"email": item.mailbox},
                "attendees": [{"email": EXTERNAL}],
            },
            created_by=item.mailbox,
        )
        return str(record["id"])

    def rename(self, crm_id: str, subject: str, by: str) -> None:
        self.stack.crm.user_update(crm_id, subject=subject)

    def cancel(self, crm_id: str) -> None:
        self.stack.crm.user_cancel(crm_id)

    def records(self) -> list[dict[str, Any]]:
        return [
            {
                "subject": r.get("subject"),
                "cancelled": r.get("status") == "cancelled",
                "start": utc(r["start"]),
                "end": utc(r["end"]),
            }
            for r in self.stack.crm.appointments()
        ]

    def faults_on(self, seed: int) -> None:
        self.stack.crm.set_faults(seed=seed, **CRM_FAULTS)


class DataverseSide(CrmSide):
    @property
    def emulator(self) -> Any:
        return self.stack.dataverse

    def seed_users(self, mailboxes: list[str]) -> None:
        self.stack.dataverse.seed(
            users=[{"id": dataverse_id(m), "email": m, "name": m, "mailbox": m} for m in mailboxes]
        )

    def create(self, item: Item) -> str:
        appointment = Appointment(
            subject=item.subject,
            start=item.start,
            end=item.start + timedelta(hours=1),
            organizer=Person(email=item.mailbox),
            attendees=(Attendee(email=EXTERNAL),),
        )
        made = self.stack.dataverse.user_create(appointment, created_by=item.mailbox)
        # A new row is Open; saving it in the app books it: Scheduled, Busy (appointment.md StateCode 3).
        self.stack.dataverse.user_update(made["id"], statecode=3, statuscode=5, updated_by=item.mailbox)
        return str(made["id"])

    def rename(self, crm_id: str, subject: str, by: str) -> None:
        self.stack.dataverse.user_update(crm_id, subject=subject, updated_by=by)

    def cancel(self, crm_id: str) -> None:
        self.stack.dataverse.user_cancel(crm_id)

    def records(self) -> list[dict[str, Any]]:
        return [
            {
                "subject": r.get("subject"),
                "cancelled": r.get("statecode") == 2,
                "start": utc(r["scheduledstart"]),
                "end": utc(r["scheduledend"]),
            }
            for r in self.stack.dataverse.appointments()
        ]

    def faults_on(self, seed: int) -> None:
        """Every webhook delivered twice, and a run of throttled requests every second (Dataverse's service
        protection answers a burst, not a rate: the emulator throttles the next N requests)."""
        self.stack.dataverse.duplicate_webhooks(True)
        self.stack.throttling.clear()
        threading.Thread(target=self._throttle, name="chaos-throttle", daemon=True).start()

    def _throttle(self) -> None:
        stop = self.stack.throttling
        while not stop.is_set():
            self.stack.dataverse.set_faults(throttle=DATAVERSE_THROTTLED, retry_after_s=1)
            stop.wait(1.0)

    def faults_off(self) -> None:
        self.stack.throttling.set()
        self.stack.dataverse.set_faults()
        self.stack.dataverse.duplicate_webhooks(False)
