"""E1: every rule of docs/sync-rules.md is traceable to a test whose name carries its ID."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "sync-rules.md"
# Rules whose catalogue entry says "*Tested elsewhere:*" instead of naming tests (none today).
ELSEWHERE: set[str] = set()


def _rule_ids() -> list[str]:
    return re.findall(r"^- \*\*([A-Z][0-9])\*\*", DOC.read_text(encoding="utf-8"), flags=re.M)


def _test_names() -> list[str]:
    names: list[str] = []
    for path in (ROOT / "tests").rglob("*.py"):
        names += re.findall(r"def (test_\w+)", path.read_text(encoding="utf-8"))
        names += re.findall(r"^(test_\w+)\s*=", path.read_text(encoding="utf-8"), flags=re.M)
    return names


def _has_test(rule: str, names: list[str]) -> bool:
    return any(re.search(rf"(?<![A-Za-z0-9]){rule}(?![0-9])", name) for name in names)


def test_E1_every_rule_in_the_catalogue_has_a_test_named_with_its_id() -> None:
    ids = _rule_ids()
    assert len(ids) >= 46 and len(ids) == len(set(ids)), ids
    names = _test_names()
    missing = [r for r in ids if r not in ELSEWHERE and not _has_test(r, names)]
    assert not missing, f"rules without a test carrying their ID: {missing}"


def test_E1_rules_tested_elsewhere_are_marked_so_in_the_catalogue() -> None:
    text = DOC.read_text(encoding="utf-8")
    for rule in ELSEWHERE:
        entry = text.split(f"- **{rule}**", 1)[1].split("\n- **", 1)[0]
        assert "*Tested elsewhere:*" in entry, rule
    for rule in set(_rule_ids()) - ELSEWHERE:
        entry = text.split(f"- **{rule}**", 1)[1].split("\n- **", 1)[0]
        assert "*Implemented:*" in entry and "*Tests:*" in entry, rule


def test_E1_the_catalogue_test_would_notice_a_rule_without_a_test() -> None:
    assert not _has_test("Z9", ["test_S1_x", "test_Z19_y"])
    assert _has_test("S1", ["test_R_S1_x"]) and not _has_test("S1", ["test_S10_x"])
