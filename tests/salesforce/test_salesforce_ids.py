"""The emulator's ids are Salesforce's 18-character case-safe ids, so ids differing only in case differ
case-insensitively too (our tables key rows on lower-cased ids)."""

from __future__ import annotations

from datetime import UTC, datetime

from devstack.salesforce_emulator.store import Store, case_safe


def test_the_case_safe_suffix_is_salesforces() -> None:
    # Salesforce Help, "What is a Salesforce ID?" / Knowledge 000385585: 15 -> 18 characters
    assert case_safe("001A0000006Vm9r") == "001A0000006Vm9rIAC"


def test_generated_ids_stay_distinct_when_lower_cased() -> None:
    store = Store(lambda: datetime(2030, 1, 1, tzinfo=UTC), "005000000000INTAAA")
    ids = [store.new_id("Event") for _ in range(5_000)]
    assert len({i.lower() for i in ids}) == len(ids) and all(len(i) == 18 for i in ids)
