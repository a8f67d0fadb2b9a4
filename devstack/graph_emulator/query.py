"""OData query options and Prefer headers, parsed just far enough for calendar work."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from devstack.graph_emulator.errors import GraphError

_PREFER_ITEM = re.compile(r'\s*([A-Za-z.-]+)\s*=\s*("([^"]*)"|[^,;]*)')
_ID_EQ = re.compile(r"id\s+eq\s+'((?:[^']|'')*)'", re.IGNORECASE)
_ANY_EXT = re.compile(
    r"^singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id\s+eq\s+'((?:[^']|'')*)'"
    r"(?:\s+and\s+\1/value\s+eq\s+'((?:[^']|'')*)')?\s*\)$",
    re.IGNORECASE,
)
_SIMPLE_EQ = re.compile(
    r"^([A-Za-z]+(?:/[A-Za-z]+)?)\s+eq\s+('((?:[^']|'')*)'|true|false|null)$", re.IGNORECASE
)


def parse_prefer(values: Iterable[str]) -> dict[str, str]:
    """`Prefer` header values -> {lowercased name: value without quotes}."""
    found: dict[str, str] = {}
    for value in values:
        for part in value.split(","):
            match = _PREFER_ITEM.match(part)
            if match:
                found[match.group(1).lower()] = (
                    match.group(3) if match.group(3) is not None else match.group(2).strip()
                )
    return found


def split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth, current = 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


@dataclass
class Expansion:
    """What `$expand` and `$select` asked for beyond the default event shape."""

    single_ext: list[str] | None = None
    multi_ext: list[str] | None = None
    want_single_ext: bool = False
    want_multi_ext: bool = False
    occurrences_info: bool = False
    selected: set[str] = field(default_factory=set)


def parse_expansion(expand: str | None, select: str | None) -> Expansion:
    result = Expansion()
    for item in split_top_level(expand or ""):
        name, _, options = item.partition("(")
        lowered = name.strip().lower()
        ids = [m.group(1).replace("''", "'") for m in _ID_EQ.finditer(options)] or None
        if lowered == "singlevalueextendedproperties":
            result.want_single_ext, result.single_ext = True, ids
        elif lowered == "multivalueextendedproperties":
            result.want_multi_ext, result.multi_ext = True, ids
        elif lowered in ("exceptionoccurrences", "cancelledoccurrences", "instances"):
            result.occurrences_info = True
        else:
            raise GraphError(
                400,
                "BadRequest",
                "Parsing OData Select and Expand failed: Could not find a property named "
                f"'{name}' on type 'microsoft.graph.event'.",
            )
    for item in (select or "").split(","):
        name = item.strip()
        if name:
            result.selected.add(name.lower())
    if {"cancelledoccurrences", "exceptionoccurrences"} & result.selected:
        result.occurrences_info = True
    return result


def compile_filter(text: str | None) -> Callable[[dict[str, Any], dict[str, str]], bool]:
    """A predicate over (rendered event, {lowercased ext prop id: value}) for the `$filter`s we support.

    Supported: `prop eq 'v'` / `prop eq true|false|null` (prop may be `a/b`), the documented
    `singleValueExtendedProperties/Any(ep: ep/id eq '..' and ep/value eq '..')`, joined with `and`.
    Anything else is refused rather than silently ignored.
    """
    if not text or not text.strip():
        return lambda _event, _ext: True
    clauses = re.split(r"\s+and\s+(?![^()]*\))", text.strip(), flags=re.IGNORECASE)
    checks: list[Callable[[dict[str, Any], dict[str, str]], bool]] = []
    for clause in clauses:
        clause = clause.strip()
        if clause.startswith("(") and clause.endswith(")"):
            clause = clause[1:-1].strip()
        ext = _ANY_EXT.match(clause)
        if ext:
            prop_id = ext.group(2).replace("''", "'").lower()
            wanted = ext.group(3).replace("''", "'") if ext.group(3) is not None else None
            checks.append(
                lambda _e, props, p=prop_id, w=wanted: p in props and (w is None or props[p] == w)  # type: ignore[misc]
            )
            continue
        simple = _SIMPLE_EQ.match(clause)
        if simple:
            path = simple.group(1).split("/")
            literal = simple.group(2)
            expected: Any
            if literal.lower() in ("true", "false"):
                expected = literal.lower() == "true"
            elif literal.lower() == "null":
                expected = None
            else:
                expected = simple.group(3).replace("''", "'")

            def check(
                event: dict[str, Any],
                _props: dict[str, str],
                path: list[str] = path,
                expected: Any = expected,
            ) -> bool:
                value: Any = event
                for part in path:
                    value = value.get(part) if isinstance(value, dict) else None
                if isinstance(value, str) and isinstance(expected, str):
                    return value.lower() == expected.lower()
                return bool(value == expected)

            checks.append(check)
            continue
        raise GraphError(
            400, "ErrorInvalidUrlQueryFilter", f"The emulator does not support the filter clause '{clause}'."
        )
    return lambda event, props: all(check(event, props) for check in checks)
