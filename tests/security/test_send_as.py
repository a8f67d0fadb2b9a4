"""Attack: a CRM user sends as another user (issue 15, item 2; rules W1, W2).

Reproduced before the defence: CRM user Bruno created an appointment with organizer Adele and an external
attendee; the app created it in Adele's mailbox as organizer, so Exchange sent the invitation from Adele.
The organizer field of a CRM record means "send as"; now it is honoured only when the record's creator is
that user or one of the delegates the policy lists for them, else the record follows W2 (the default
calendar, a mapped room, or nowhere), and Adele's mailbox is untouched.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from sync_core.domain.actions import Skip, UpdateCrmAppointment, UpdateGraphEvent
from sync_core.domain.model import Appointment, Attendee, Person, Status
from sync_core.domain.policy import Policy, SyncUser
from sync_core.engine.scope import write_target
from tests.clock import days_ahead
from tests.e2e.conftest import Stack, wait_for
from tests.engine.builders import POLICY, appt, crm_change, crm_edited, gev, judge, rec, synced

pytestmark = pytest.mark.e2e

ADELE = "adele@contoso.example"
BRUNO = "bruno@contoso.example"


def test_W1_W2_a_record_bruno_created_in_adeles_name_is_not_written_to_adeles_mailbox(stack: Stack) -> None:
    start = days_ahead(5, 15)
    subject = "Sent as Adele by Bruno"
    record = stack.crm.user_create(
        Appointment(
            subject=subject,
            start=start,
            end=start + timedelta(hours=1),
            organizer=Person(email=ADELE),
            attendees=(Attendee(email="megan@fabrikam.example"),),
            status=Status.CONFIRMED,
        ),
        created_by=BRUNO,
    )
    decided = wait_for(lambda: _decisions(stack, record["id"]))
    assert decided[0]["rule"] == "W2" and "may not send as" in decided[0]["reason"], decided
    assert not [e for evs in stack.graph.dump_events(ADELE).values() for e in evs if e["subject"] == subject]
    assert not [r for r in stack.graph.requests if r["method"] == "POST" and ADELE in r["path"].lower()]


def _decisions(stack: Stack, crm_id: str) -> list[dict[str, object]]:
    from tests.e2e.conftest import on_container

    return list(on_container(lambda c: c.decisions.for_item("crm", crm_id)))


def test_W1_the_organizer_themself_or_a_listed_delegate_books_in_the_organizers_mailbox() -> None:
    linda = SyncUser(email="linda@contoso.com", crm_user_id="u-linda", delegates=("assistant@contoso.com",))
    policy = Policy.default().model_copy(update={"sync_users": (linda,)})
    for creator, rule in (
        ("linda@contoso.com", "W1"),
        ("assistant@contoso.com", "W1"),
        (None, "W1"),  # the CRM did not say who created it: its organizer field stands
        ("mallory@contoso.com", "W2"),
    ):
        mailbox, got, why = write_target(policy, rec(appt(), created_by=creator))
        assert got == rule, (creator, why)
        assert (mailbox == "linda@contoso.com") == (rule == "W1")


@pytest.mark.parametrize(
    ("editor", "written"),
    [
        ("bruno@contoso.example", False),  # another CRM user: not written to Outlook
        ("linda@contoso.com", True),  # the organizer themself
        ("assistant@contoso.com", True),  # a delegate the policy lists for them
        (None, True),  # the CRM does not say who: the record's creator (here none) stands
    ],
)
def test_W1_an_attendee_or_body_change_goes_out_as_the_organizer_only_from_who_may_send_as_them(
    editor: str | None, written: bool
) -> None:
    linda = SyncUser(email="linda@contoso.com", crm_user_id="u-linda", delegates=("assistant@contoso.com",))
    policy = POLICY.model_copy(update={"sync_users": (linda,)})
    g = gev()  # Linda's meeting, synced to the CRM
    mapping, record = synced(g, policy=policy)
    outsider = Attendee(email="megan@fabrikam.example")
    changed = crm_edited(
        record,
        attendees=(*record.appointment.attendees, outsider),
        body="Bring the signed contract",
        subject="Contract signing",
    ).model_copy(update={"updated_by": editor})

    d = judge(crm_change(), mapping, g, changed, policy=policy)

    update = next(a for a in d.actions if isinstance(a, UpdateGraphEvent))
    assert "subject" in update.changed_fields  # a change anyone may make still reaches Outlook
    sent_as_linda = {"attendees", "body"} & set(update.changed_fields)
    assert sent_as_linda == ({"attendees", "body"} if written else set()), d.explain()
    assert not [a for a in d.actions if isinstance(a, UpdateCrmAppointment)], d.explain()  # no revert
    held = [a for a in d.actions if isinstance(a, Skip) and a.rule == "W1"]
    assert bool(held) is not written, d.explain()
    if not written:
        assert "may not send as" in held[0].reason
        assert d.mapping is not None and d.mapping.snapshot is not None
        assert outsider not in d.mapping.snapshot.attendees  # Outlook's content, as Outlook has it
