"""The cancel race on Dataverse, made deterministic at the connector: a CRM user cancels an appointment, and a
write the engine decided on the cancelled row (an attendee's answer, L6) comes after. Dataverse keeps a
cancelled row read-only; reopening, writing and cancelling again would end at a version the receipt calls
ours, and the user's cancel, not yet synced, would then be read back as our echo (D4), leaving the Outlook
meeting in place. The connector leaves a cancelled row unwritten unless the write un-cancels it. Also the
other race of a two-request write: a confirmed create cut short between its requests.
"""

from __future__ import annotations

from datetime import UTC, datetime

from devstack.dataverse_emulator import DataverseEmulator
from sync_core.adapters.crm.dataverse import DataverseConnector
from sync_core.domain.actions import Mapping
from sync_core.domain.model import Response, Status
from sync_core.engine.content_sync import is_echo
from sync_core.engine.mapping_update import after_crm_write
from tests.crm.test_crm_contract import make_appointment

NOW = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


async def test_L3_D4_a_users_cancel_is_not_taken_for_our_echo_after_we_write_to_the_cancelled_row(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    made = make_appointment()
    created = await connector.create_appointment(made, idempotency_key="race", external_ref="race")
    mapping = after_crm_write(Mapping(meeting_key="race", snapshot=made), created, NOW, made)

    backend.user_cancel(created.crm_id)  # the CRM user's cancel: its webhook is on its way
    cancelled = await connector.get_appointment(created.crm_id)
    assert cancelled is not None and cancelled.appointment.status is Status.CANCELLED
    # Meanwhile an attendee's answer arrives from Outlook and the engine writes it to the record as read
    # (L6: the record's content, with the answer), on the cancelled row's version.
    answered = cancelled.appointment.model_copy(
        update={
            "attendees": tuple(
                a.model_copy(update={"response": Response.ACCEPTED}) for a in cancelled.appointment.attendees
            )
        }
    )
    before = len(backend.requests)
    record = await connector.update_appointment(
        created.crm_id, answered, fields=["attendees"], expected_version=cancelled.version
    )
    mapping = after_crm_write(mapping, record, NOW, answered)

    read = await connector.get_appointment(created.crm_id)  # what the cancel's webhook makes the worker read
    assert read is not None and read.appointment.status is Status.CANCELLED
    assert not is_echo(mapping.crm_receipt, read.crm_id, read.version, read.appointment, mapping.snapshot)
    assert [r.method for r in backend.requests[before:] if r.method != "GET"] == []  # no reopen-write-cancel


async def test_a_write_that_uncancels_a_row_reopens_it_and_a_completed_row_is_written(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    created = await connector.create_appointment(make_appointment(), idempotency_key="u", external_ref="u")
    backend.user_cancel(created.crm_id)
    back = await connector.update_appointment(
        created.crm_id,
        make_appointment(status=Status.CONFIRMED, subject="back on"),
        fields=["status", "subject"],
        expected_version=None,
    )
    assert back.appointment.status is Status.CONFIRMED and back.appointment.subject == "back on"
    backend.user_update(created.crm_id, statecode=1, statuscode=3)  # Completed
    done = await connector.update_appointment(
        created.crm_id, make_appointment(subject="minutes added"), fields=["subject"], expected_version=None
    )
    assert done.appointment.subject == "minutes added"
    row = next(r for r in backend.appointments() if r["activityid"] == created.crm_id)
    assert row["statecode"] == 1  # completed again after the write


async def test_I3_a_create_cut_short_between_its_two_requests_is_finished_by_its_retry(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    """A confirmed create is two requests (statecode is not valid on create); a crash between them leaves
    our row Open. The retry, answered 412 by the same activityid, finishes our own create."""
    first = await connector.create_appointment(
        make_appointment(status=Status.TENTATIVE), idempotency_key="cut", external_ref="cut"
    )  # what the first attempt left: the row, still Open
    again = await connector.create_appointment(
        make_appointment(status=Status.CONFIRMED), idempotency_key="cut", external_ref="cut"
    )
    assert again.crm_id == first.crm_id and again.appointment.status is Status.CONFIRMED


async def test_I3_a_retried_create_leaves_a_row_a_crm_user_changed_as_it_is(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    first = await connector.create_appointment(
        make_appointment(status=Status.TENTATIVE), idempotency_key="cut", external_ref="cut"
    )
    backend.user_update(first.crm_id, subject="Moved by a CRM user", updated_by="ana@contoso.example")
    again = await connector.create_appointment(
        make_appointment(status=Status.CONFIRMED), idempotency_key="cut", external_ref="cut"
    )
    assert again.appointment.status is Status.TENTATIVE  # theirs to decide, read as their change (D4)
    assert again.appointment.subject == "Moved by a CRM user"
