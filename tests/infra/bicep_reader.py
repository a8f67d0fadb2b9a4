"""Reading infra/ with tree-sitter-bicep: syntax errors, declarations and literal values of Bicep files.

The Bicep compiler cannot run here; tree-sitter gives a concrete syntax tree, enough to check syntax and to
read names, settings and role ids out of the templates instead of matching text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser, Tree

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
DEPLOY_DOC = REPO / "docs" / "deploy.md"

_PARSER = Parser(Language(tree_sitter_bicep.language()))

# tree-sitter-bicep 1.1.0 has no rule for the assignments of a .bicepparam file (`param name = value`; the
# grammar of those lives in a fork that is not on PyPI). A type is slipped in before parsing, which turns
# each assignment into a declaration with a default and keeps every value expression checked as Bicep.
_ASSIGNMENT = re.compile(r"^(\s*param\s+\w+)(\s*=)", re.MULTILINE)


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def bicepparam_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicepparam"))


def parse_source(text: str, *, params_file: bool = False) -> Tree:
    if params_file:
        text = _ASSIGNMENT.sub(r"\1 any\2", text)
    return _PARSER.parse(text.encode())


def syntax_errors(tree: Tree) -> list[str]:
    """Every ERROR or MISSING node, as 'line:column: text'."""
    found: list[str] = []

    def visit(node: Node) -> None:
        if node.type == "ERROR" or node.is_missing:
            line, column = node.start_point
            found.append(f"{line + 1}:{column + 1}: {node.text.decode(errors='replace')[:60]!r}")
        for child in node.children:
            visit(child)

    visit(tree.root_node)
    return found


def text(node: Node) -> str:
    return node.text.decode()


def string_value(node: Node) -> str:
    """The value of a string literal without interpolation."""
    assert node.type == "string", f"expected a string literal, found {node.type}: {text(node)}"
    parts: list[str] = []
    for child in node.named_children:
        if child.type == "interpolation":
            raise AssertionError(f"expected a literal string, found interpolation in {text(node)}")
        if child.type == "escape_sequence":
            parts.append({"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\t": "\t", "\\$": "$"}[text(child)])
        else:
            parts.append(text(child))
    return "".join(parts)


def literal(node: Node) -> Any:
    """A Python value for a literal Bicep expression (string, number, bool, null, array, object)."""
    kind = node.type
    if kind == "string":
        return string_value(node)
    if kind == "number":
        return int(text(node))
    if kind == "boolean":
        return text(node) == "true"
    if kind == "null":
        return None
    if kind == "array":
        return [literal(item) for item in node.named_children if item.type != "comment"]
    if kind == "object":
        return {key_of(prop): literal(prop.named_children[-1]) for prop in properties(node)}
    raise AssertionError(f"not a literal: {kind} {text(node)}")


def descendants(node: Node, kind: str) -> Iterator[Node]:
    """Every node of type `kind` below `node`, in document order."""
    for child in node.named_children:
        if child.type == kind:
            yield child
        yield from descendants(child, kind)


def properties(obj: Node) -> Iterator[Node]:
    return (child for child in obj.named_children if child.type == "object_property")


def key_of(prop: Node) -> str:
    key = prop.named_children[0]
    return string_value(key) if key.type == "string" else text(key)


@dataclass(frozen=True)
class Declaration:
    kind: str  # parameter_declaration, variable_declaration, resource_declaration, output_declaration, ...
    name: str
    decorators: tuple[str, ...]  # decorator calls as written, e.g. "secure()"
    node: Node

    @property
    def value(self) -> Node | None:
        """The expression after `=`, if any (a parameter's default, a variable's value)."""
        seen_equals = False
        for child in self.node.children:
            if seen_equals and child.is_named:
                return child
            seen_equals = seen_equals or child.type == "="
        return None

    @property
    def type_name(self) -> str | None:
        for child in self.node.named_children:
            if child.type == "type":
                return text(child)
        return None


@dataclass(frozen=True)
class BicepFile:
    path: Path
    tree: Tree

    @property
    def source(self) -> str:
        return self.path.read_text()

    def declarations(self) -> list[Declaration]:
        out: list[Declaration] = []
        pending: tuple[str, ...] = ()
        for child in self.tree.root_node.named_children:
            if child.type == "decorators":
                pending = tuple(
                    text(d.named_children[0]) for d in child.named_children if d.type == "decorator"
                )
                continue
            if child.type == "comment":
                continue
            ident = next((c for c in child.named_children if c.type == "identifier"), None)
            out.append(Declaration(child.type, text(ident) if ident else "", pending, child))
            pending = ()
        return out

    def params(self) -> dict[str, Declaration]:
        return {d.name: d for d in self.declarations() if d.kind == "parameter_declaration"}

    def var(self, name: str) -> Node:
        for d in self.declarations():
            if d.kind == "variable_declaration" and d.name == name and d.value is not None:
                return d.value
        raise AssertionError(f"{self.path.name} declares no variable {name}")

    def outputs(self) -> dict[str, Declaration]:
        return {d.name: d for d in self.declarations() if d.kind == "output_declaration"}

    def nodes(self, kind: str) -> Iterator[Node]:
        return descendants(self.tree.root_node, kind)


@cache
def load(path: Path) -> BicepFile:
    return BicepFile(path, parse_source(path.read_text(), params_file=path.suffix == ".bicepparam"))
