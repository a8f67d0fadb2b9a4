"""The SOQL subset the Salesforce connector sends, parsed and run over the emulator's rows. Pure.

SELECT fields (relationship fields `Owner.Email`, and one child subquery `(SELECT ... FROM EventRelations)`)
FROM object [WHERE conditions] [ORDER BY field [ASC|DESC], ...] [LIMIT n]. Conditions: `field op literal`
(=, !=, <, <=, >, >=) and `field IN (literals)`, joined by AND/OR with parentheses. Literals: quoted strings
with the SOQL escape sequences, true/false/null, numbers and dateTimes. Strings compare without case, as SOQL
does for text fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))"
    r"|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><=|>=|!=|<>|=|<|>)|(?P<punct>[(),])|(?P<word>[A-Za-z_][\w.]*))"
)
_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


class SoqlError(Exception):
    """MALFORMED_QUERY, with the message."""


@dataclass
class Query:
    fields: list[str]
    obj: str
    where: Callable[[Callable[[str], Any]], bool] | None = None
    order: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    limit: int | None = None
    subquery: Query | None = None
    subquery_name: str = ""


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            raise SoqlError(f"unexpected token: '{text[pos : pos + 20].strip()}'")
        pos = m.end()
        kind = m.lastgroup or ""
        raw = m.group(kind)
        if kind == "str":
            out.append(("lit", re.sub(r"\\(.)", lambda e: _UNESCAPE.get(e.group(1), e.group(1)), raw[1:-1])))
        elif kind == "dt":
            text_dt = raw.replace("Z", "+00:00")
            if re.search(r"[+-]\d{4}$", text_dt):
                text_dt = text_dt[:-2] + ":" + text_dt[-2:]
            out.append(("lit", datetime.fromisoformat(text_dt).astimezone(UTC)))
        elif kind == "num":
            out.append(("lit", float(raw) if "." in raw else int(raw)))
        elif kind == "word" and raw.lower() in ("true", "false", "null"):
            out.append(("lit", {"true": True, "false": False, "null": None}[raw.lower()]))
        elif kind == "word":
            out.append(("word", raw))
        else:
            out.append((kind, raw))
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens, self.pos = tokens, 0

    def peek(self) -> tuple[str, Any]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", None)

    def take(self) -> tuple[str, Any]:
        token = self.peek()
        self.pos += 1
        return token

    def keyword(self, word: str) -> bool:
        kind, value = self.peek()
        if kind == "word" and str(value).upper() == word:
            self.pos += 1
            return True
        return False

    def expect(self, kind: str, value: str | None = None) -> Any:
        got_kind, got = self.take()
        if got_kind != kind or (value is not None and str(got).upper() != value):
            raise SoqlError(f"unexpected token: '{got}'")
        return got

    def query(self) -> Query:
        if not self.keyword("SELECT"):
            raise SoqlError("unexpected token: expected SELECT")
        fields: list[str] = []
        sub: Query | None = None
        while True:
            if self.peek() == ("punct", "("):
                self.take()
                sub = self.query()
                self.expect("punct", ")")
            else:
                fields.append(str(self.expect("word")))
            if self.peek() != ("punct", ","):
                break
            self.take()
        if not self.keyword("FROM"):
            raise SoqlError("unexpected token: expected FROM")
        q = Query(fields=fields, obj=str(self.expect("word")), subquery=sub)
        if sub is not None:
            q.subquery_name, sub.obj = sub.obj, sub.obj
        if self.keyword("WHERE"):
            q.where = self.disjunction()
        if self.keyword("ORDER"):
            self.expect("word", "BY")
            while True:
                name = str(self.expect("word"))
                desc = self.keyword("DESC")
                if not desc:
                    self.keyword("ASC")
                q.order.append((name, desc))
                if self.peek() != ("punct", ","):
                    break
                self.take()
        if self.keyword("LIMIT"):
            q.limit = int(self.expect("lit"))
        return q

    def disjunction(self) -> Callable[[Callable[[str], Any]], bool]:
        parts = [self.conjunction()]
        while self.keyword("OR"):
            parts.append(self.conjunction())
        return lambda get: any(p(get) for p in parts)

    def conjunction(self) -> Callable[[Callable[[str], Any]], bool]:
        parts = [self.atom()]
        while self.keyword("AND"):
            parts.append(self.atom())
        return lambda get: all(p(get) for p in parts)

    def atom(self) -> Callable[[Callable[[str], Any]], bool]:
        if self.peek() == ("punct", "("):
            self.take()
            inner = self.disjunction()
            self.expect("punct", ")")
            return inner
        name = str(self.expect("word"))
        if self.keyword("IN"):
            self.expect("punct", "(")
            values = [self.expect("lit")]
            while self.peek() == ("punct", ","):
                self.take()
                values.append(self.expect("lit"))
            self.expect("punct", ")")
            wanted = {_norm(v) for v in values}
            return lambda get: _norm(get(name)) in wanted
        op = str(self.expect("op"))
        value = self.expect("lit")
        return lambda get: _compare(get(name), op, value)


def _norm(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _compare(left: Any, op: str, right: Any) -> bool:
    if isinstance(right, datetime) and isinstance(left, str):
        left = parse_wire_time(left)
    left, right = _norm(left), _norm(right)
    if op == "=":
        return bool(left == right)
    if op in ("!=", "<>"):
        return bool(left != right)
    if left is None or right is None:
        return False
    return bool({"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op])


def parse_wire_time(value: str) -> datetime:
    text = value.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    return datetime.fromisoformat(text).astimezone(UTC)


def parse(text: str) -> Query:
    parser = _Parser(_tokens(text))
    query = parser.query()
    if parser.peek()[0] != "end":
        raise SoqlError(f"unexpected token: '{parser.peek()[1]}'")
    return query
