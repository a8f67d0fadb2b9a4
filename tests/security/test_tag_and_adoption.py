"""Our tag and adoption, below the stack (issue 15, item 1; rules I3, I5): a tag is ours only when it
verifies for the mailbox it is read from, and a CRM record is adopted only when nothing else claims it and
it belongs to the mailbox's own sync user; otherwise the change is held for an operator, nothing written."""

from __future__ import annotations

from sync_core.domain import identity
from sync_core.engine.decide import decide
from sync_core.engine.inputs import Facts
from tests.engine.builders import KNOWN, NOW, POLICY, appt, gev, kinds, m365, rec

SECRET = "security-test-secret-0123456789abcdef"
OLD = "security-test-old-secret-0123456789abcd"


def test_a_tag_verifies_only_for_the_mailbox_and_the_key_it_was_signed_for() -> None:
    tag = identity.sign_tag("crm:42", "Linda@contoso.com", SECRET)
    assert identity.verify_tag(tag, "linda@contoso.com", [SECRET]) == "crm:42"
    assert identity.verify_tag(tag, "julie@contoso.com", [SECRET]) is None  # copied to another mailbox
    assert identity.verify_tag("crm:42", "linda@contoso.com", [SECRET]) is None  # the plain key: forged
    assert identity.verify_tag(tag.replace("crm:42", "crm:43"), "linda@contoso.com", [SECRET]) is None
    assert identity.verify_tag(tag, "linda@contoso.com", ["another-secret-0123456789abcdefgh"]) is None
    assert identity.verify_tag(None, "linda@contoso.com", [SECRET]) is None


def test_a_tag_signed_with_the_secret_being_retired_still_verifies_while_both_are_active() -> None:
    tag = identity.sign_tag("ical:UID-1", "linda@contoso.com", OLD)
    assert identity.verify_tag(tag, "linda@contoso.com", [SECRET, OLD]) == "ical:UID-1"
    assert identity.verify_tag(tag, "linda@contoso.com", [SECRET]) is None


def _adopting(record_organizer: str, **facts: object) -> list[str]:
    """An unmapped Outlook meeting of Linda's meets a CRM record whose external_ref names it (I5)."""
    record = rec(appt(organizer=record_organizer), external_ref="ical:UID-1")
    decision = decide(m365(), None, gev(), record, POLICY, NOW, KNOWN.model_copy(update=facts))
    held = [a for a in decision.actions if getattr(a, "needs_operator", False)]
    return [*kinds(decision), *(["held"] if held else [])]


def test_I5_a_record_of_the_same_sync_user_is_adopted() -> None:
    assert "held" not in _adopting("linda@contoso.com")


def test_I5_a_record_of_another_sync_user_is_held_for_an_operator_not_adopted() -> None:
    assert _adopting("julie@contoso.com") == ["skip", "held"]


def test_I5_a_record_already_mapped_under_another_meeting_is_held_not_adopted() -> None:
    assert _adopting("linda@contoso.com", crm_mapped_under="ical:SOMETHING-ELSE") == ["skip", "held"]


def test_I3_our_verified_tag_adopts_the_record_it_names_even_across_users() -> None:
    """A key from our own tag, verified for this mailbox, proves we wrote the event for that record."""
    record = rec(appt(organizer="julie@contoso.com"))
    ours = gev(written_by_us="crm:c1")
    decision = decide(m365(), None, ours, record, POLICY, NOW, Facts(known_contacts=KNOWN.known_contacts))
    assert not any(getattr(a, "needs_operator", False) for a in decision.actions), decision.explain()
