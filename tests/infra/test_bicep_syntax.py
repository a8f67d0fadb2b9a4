"""Every Bicep and Bicep-parameters file under infra/ parses; the parameters file fits main.bicep."""

from __future__ import annotations

from pathlib import Path

import pytest
from bicep_reader import (
    INFRA,
    BicepFile,
    bicep_files,
    bicepparam_files,
    literal,
    load,
    parse_source,
    string_value,
    syntax_errors,
)

from sync_core.domain.policy import load_policy


def _id(path: Path) -> str:
    return str(path.relative_to(INFRA))


def test_infra_holds_the_main_template_its_modules_and_parameters() -> None:
    names = {_id(p) for p in bicep_files() + bicepparam_files()}
    assert {"main.bicep", "main.bicepparam", "modules/functionapp.bicep", "modules/storage.bicep"} <= names


@pytest.mark.parametrize("path", bicep_files() + bicepparam_files(), ids=_id)
def test_file_parses_without_error_nodes(path: Path) -> None:
    assert syntax_errors(load(path).tree) == []


def test_the_parser_reports_a_broken_template() -> None:
    """Guards the test above against a parser that accepts anything."""
    broken = "resource s 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: \n  kind: 'StorageV2'\n"
    assert syntax_errors(parse_source(broken)) != []
    assert syntax_errors(parse_source("param x = {\n", params_file=True)) != []


def test_every_module_main_uses_exists(main_bicep: BicepFile) -> None:
    for decl in main_bicep.declarations():
        if decl.kind == "module_declaration":
            target = string_value(decl.node.named_children[1])
            assert (INFRA / target).is_file(), f"module {decl.name} points at missing {target}"


def test_parameters_file_uses_main_and_assigns_only_its_parameters(
    main_bicep: BicepFile, main_params: BicepFile
) -> None:
    using = next(main_params.nodes("using_statement"))
    assert string_value(using.named_children[0]) == "main.bicep"
    declared = main_bicep.params()
    assigned = main_params.params()
    assert set(assigned) <= set(declared), f"not parameters of main.bicep: {set(assigned) - set(declared)}"
    required = {name for name, decl in declared.items() if decl.value is None}
    assert required <= set(assigned), (
        f"required parameters missing from main.bicepparam: {required - set(assigned)}"
    )


def test_module_calls_pass_only_parameters_the_module_declares(main_bicep: BicepFile) -> None:
    for decl in main_bicep.declarations():
        if decl.kind != "module_declaration":
            continue
        module = load(INFRA / string_value(decl.node.named_children[1]))
        body = decl.node.named_children[-1]
        params_obj = next(
            p.named_children[-1] for p in body.named_children if p.named_children[0].text == b"params"
        )
        passed = {
            p.named_children[0].text.decode()
            for p in params_obj.named_children
            if p.type == "object_property"
        }
        declared = module.params()
        assert passed <= set(declared), f"{decl.name}: unknown parameters {passed - set(declared)}"
        required = {name for name, d in declared.items() if d.value is None}
        assert required <= passed, f"{decl.name}: missing parameters {required - passed}"


def test_example_policy_in_the_parameters_file_is_a_valid_sync_policy(main_params: BicepFile) -> None:
    policy_node = main_params.params()["syncPolicy"].value
    assert policy_node is not None
    policy = load_policy(literal(policy_node))
    assert policy.sync_users, "the example policy should show at least one sync user"
