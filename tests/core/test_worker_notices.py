"""M5 notices sent once, against Azurite and both emulators (no host): two handlings that race on the mapping
(ETag lost -> decide again), or a retry after the mail went out but before the save, send one mail, as the
Graph emulator's sendMail record shows; a send that fails is sent by the retry.

A CRM booking of the Harbour Room (Outlook-managed, auto-accept): the worker creates the organiser's event,
Exchange (the emulator) has the room accept, and the worker's second look decides M5: tell the creator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables.aio import TableClient

from devstack.crm_emulator import CrmEmulator
from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.graph.adapter import GraphAdapter
from sync_core.adapters.graph.base import build_client
from sync_core.adapters.storage.mappings import MappingStore
from sync_core.adapters.storage.notices import NoticeLedger, notice_keys
from sync_core.domain.actions import Mapping, NotifyOrganizer
from sync_core.domain.model import Appointment, Attendee, AttendeeType, Origin, Person, Status
from sync_core.errors import TransientError
from sync_core.ports.stores import DecisionRecord
from tests.core.conftest import ADELE, Crash, WorkerParts, crm_msg

HARBOUR = "harbour-room@contoso.example"
START = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(days=60)


class SaveHook(MappingStore):
    """A mapping store that runs `hook` once, at the first save after the M5 mail went out."""

    def __init__(self, table: TableClient, mailed: Callable[[], bool], hook: Callable[[], Awaitable[None]]):
        super().__init__(table)
        self.mailed, self.hook, self.fired = mailed, hook, False

    async def save(
        self, mapping: Mapping, *, previous: Mapping | None = None, decision: DecisionRecord | None = None
    ) -> Mapping:
        if not self.fired and self.mailed():
            self.fired = True
            await self.hook()
        return await super().save(mapping, previous=previous, decision=decision)


class SendFailsOnce(GraphAdapter):
    """Graph answers the first sendMail with a 503-like failure (nothing was sent)."""

    failed = False

    async def send_mail(self, mailbox: str, subject: str, text: str) -> None:
        if not self.failed:
            self.failed = True
            raise TransientError("sendMail: service unavailable", side="graph", mailbox=mailbox)
        await super().send_mail(mailbox, subject, text)


def _book(crm_emu: CrmEmulator, subject: str, hours: int) -> str:
    start = START + timedelta(hours=hours)
    record = crm_emu.user_create(
        Appointment(
            subject=subject,
            start=start,
            end=start + timedelta(hours=1),
            organizer=Person(email=ADELE, name="Adele Vance"),
            attendees=(Attendee(email=HARBOUR, type=AttendeeType.RESOURCE),),
            status=Status.CONFIRMED,
            origin=Origin.CRM,
        ),
        created_by=ADELE,
    )
    return str(record["id"])


def _mails(emu: GraphEmulator, subject: str) -> list[dict[str, Any]]:
    wanted = f"{subject}: room Harbour Room accepted"
    return [m for m in emu.sent_mail if m["from"] == ADELE and m["message"]["subject"] == wanted]


async def test_M5_two_handlings_racing_on_the_mapping_send_the_room_answer_once(
    parts: WorkerParts, graph_emu: GraphEmulator, crm_emu: CrmEmulator
) -> None:
    crm_id = _book(crm_emu, "Racing workshop", 0)
    rival_writes: list[str] = []
    rival_decided: list[str] = []

    async def rival() -> None:
        # Between our mail and our save, another handling (the organizer's notification, a duplicate
        # delivery) reads the same mapping, decides M5 too, and saves first: our save loses its ETag.
        outcome = await parts.worker().handle(crm_msg(crm_id, "updated"))
        rival_writes.extend(outcome.all_writes)
        rival_decided.extend(f"{a.kind}:{a.rule}" for a in outcome.decision.actions)

    racing = SaveHook(parts.tables["Map"], lambda: bool(_mails(graph_emu, "Racing workshop")), rival)
    outcome = await parts.worker(racing).handle(crm_msg(crm_id))

    assert racing.fired, "the second look never mailed: no race was run"
    assert "notify_organizer:M5" in rival_decided  # the rival decided M5 too, from the same mapping ...
    assert "notify_organizer:M5" not in rival_writes  # ... but found the notice claimed
    # Our save lost its ETag; deciding again read the rival's mapping, where the answer is known.
    assert outcome.then is not None
    assert not any(isinstance(a, NotifyOrganizer) for a in outcome.then.decision.actions)
    assert len(_mails(graph_emu, "Racing workshop")) == 1
    mapping = await MappingStore(parts.tables["Map"]).get(f"crm:{crm_id}")
    assert mapping is not None and mapping.snapshot is not None
    assert {a.email: a.response.value for a in mapping.snapshot.attendees}[HARBOUR] == "accepted"


async def test_M5_a_retry_after_the_mail_went_out_but_the_save_did_not_sends_no_second_mail(
    parts: WorkerParts, graph_emu: GraphEmulator, crm_emu: CrmEmulator
) -> None:
    crm_id = _book(crm_emu, "Crashing workshop", 2)

    async def crash() -> None:
        raise Crash("died after sendMail, before the mapping save")

    crashing = SaveHook(parts.tables["Map"], lambda: bool(_mails(graph_emu, "Crashing workshop")), crash)
    with pytest.raises(Crash):
        await parts.worker(crashing).handle(crm_msg(crm_id))
    assert len(_mails(graph_emu, "Crashing workshop")) == 1

    retry = await parts.worker().handle(crm_msg(crm_id))  # the queue's retry, a new process
    assert retry.decision.rule == "M5" and any(isinstance(a, NotifyOrganizer) for a in retry.decision.actions)
    assert "notify_organizer:M5" not in retry.all_writes
    assert len(_mails(graph_emu, "Crashing workshop")) == 1
    again = await parts.worker().handle(crm_msg(crm_id, "updated"))  # the outcome is now in the mapping
    assert not any(isinstance(a, NotifyOrganizer) for a in again.decision.actions)
    assert len(_mails(graph_emu, "Crashing workshop")) == 1


async def test_M5_a_send_that_failed_releases_its_claim_and_the_retry_sends_the_mail(
    parts: WorkerParts, graph_emu: GraphEmulator, crm_emu: CrmEmulator
) -> None:
    crm_id = _book(crm_emu, "Unlucky workshop", 4)
    failing = SendFailsOnce(
        build_client(parts.settings),
        extended_property_id=parts.policy.extended_property_id,
        tag_secrets=parts.settings.tag_secrets,
    )
    try:
        with pytest.raises(TransientError):
            await parts.worker(graph=failing).handle(crm_msg(crm_id))
    finally:
        await failing.aclose()
    assert failing.failed and _mails(graph_emu, "Unlucky workshop") == []
    retry = await parts.worker().handle(crm_msg(crm_id))
    assert "notify_organizer:M5" in retry.all_writes
    assert len(_mails(graph_emu, "Unlucky workshop")) == 1


async def test_M5_the_same_notice_is_claimed_once_in_its_window_and_again_after_it(
    parts: WorkerParts,
) -> None:
    ledger = NoticeLedger(parts.tables["Map"], window=timedelta(hours=1))
    notice = NotifyOrganizer(
        rule="M5",
        reason="room Harbour Room accepted (was not answered)",
        mailbox=ADELE,
        subject="S: room Harbour Room accepted",
        text="The room accepted.",
    )
    now = datetime.now(UTC)
    assert await ledger.claim("crm:x", notice, now)
    assert not await ledger.claim("crm:x", notice, now + timedelta(minutes=59))
    assert await ledger.claim("crm:y", notice, now)  # another meeting: its own notice
    other = notice.model_copy(update={"reason": "room Harbour Room accepted (was declined)"})
    assert await ledger.claim("crm:x", other, now)  # accepted again after a decline is news
    assert await ledger.claim("crm:x", notice, now + timedelta(hours=2))  # older than the window: news again
    assert not await ledger.claim("crm:x", notice, now + timedelta(hours=2, minutes=1))
    await ledger.release("crm:x", notice)
    assert await ledger.claim("crm:x", notice, now + timedelta(hours=2, minutes=2))
    pk, rk = notice_keys("crm:x", notice)
    assert pk == notice_keys("crm:x", other)[0] and rk != notice_keys("crm:x", other)[1]
