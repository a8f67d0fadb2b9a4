"""The Python versions the template lets an admin deploy (issue 17, item 3).

Flex Consumption runs Python 3.10 to 3.14 (`az functionapp list-flexconsumption-runtimes --runtime python`;
learn.microsoft.com/azure/azure-functions/supported-languages?pivots=programming-language-python). The
template allows the ones this app installs and is tested on: not 3.10 (below requires-python, and its
Functions support ended in October 2026), not 3.14 (no run of the suite on it yet). Each allowed version must
install: exactly one azure-functions pin of requirements.txt applies to it (1.x below 3.13, 2.x from 3.13).
"""

from __future__ import annotations

import tomllib

import pytest
from bicep_reader import INFRA, REPO, BicepFile, literal, load, string_value
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from tree_sitter import Node

ALLOWED = ["3.11", "3.12", "3.13"]
DEFAULT = "3.11"


def _allowed(bicep: BicepFile, param: str) -> list[str]:
    """The values of the parameter's @allowed([...]) decorator, read from the syntax tree."""
    decorators = bicep.params()[param].node.prev_named_sibling
    assert decorators is not None and decorators.type == "decorators", f"{param} has no decorators"
    for decorator in decorators.named_children:
        call: Node = decorator.named_children[0]
        function = call.child_by_field_name("function")
        arguments = call.child_by_field_name("arguments")
        if function is not None and arguments is not None and function.text == b"allowed":
            return [string_value(item) for item in arguments.named_children[0].named_children]
    raise AssertionError(f"{bicep.path.name}: {param} has no @allowed")


@pytest.mark.parametrize("path", ["main.bicep", "modules/functionapp.bicep"])
def test_the_template_allows_exactly_the_tested_versions_flex_runs(path: str) -> None:
    assert _allowed(load(INFRA / path), "pythonVersion") == ALLOWED


def test_the_default_is_an_allowed_version_and_the_one_the_deploy_doc_names(
    main_bicep: BicepFile, deploy_doc: str
) -> None:
    default = main_bicep.params()["pythonVersion"].value
    assert default is not None, "main.bicep gives pythonVersion no default"
    assert literal(default) == DEFAULT
    assert f"Python {DEFAULT}" in deploy_doc


def _pins(name: str) -> list[Requirement]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    requirements = [Requirement(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [r for r in requirements if r.name == name]


@pytest.mark.parametrize("version", ALLOWED)
def test_each_allowed_version_installs(version: str) -> None:
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Version(version) in SpecifierSet(requires), f"{version} is outside requires-python {requires}"
    environment = {"python_version": version, "python_full_version": f"{version}.0"}
    applying = [r for r in _pins("azure-functions") if r.marker is None or r.marker.evaluate(environment)]
    assert len(applying) == 1, f"Python {version}: azure-functions pins that apply: {applying}"
    (pin,) = applying
    major = 2 if Version(version) >= Version("3.13") else 1
    assert str(pin.specifier).startswith(f"=={major}."), f"Python {version} needs azure-functions {major}.x"
