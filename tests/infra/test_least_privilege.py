"""Role assignments use only documented, narrow built-in roles, and are named with guid()."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bicep_reader import INFRA, BicepFile, bicep_files, key_of, literal, load, properties, string_value, text
from tree_sitter import Node

# Built-in role definition ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles; the
# storage ones also in the reference notes, facts.md section 13). These are the only roles infra/ may grant.
BUILT_IN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "8a0f0c08-91a1-4084-bc3d-661d67233fed": "Storage Queue Data Message Processor",
    "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a": "Storage Queue Data Message Sender",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}

# What the app's identity needs, and nothing more (infra/modules/roles.bicep, docs/deploy.md).
APP_ROLES = {
    "Storage Blob Data Owner",
    "Storage Queue Data Contributor",
    "Storage Table Data Contributor",
    "Key Vault Secrets User",
    "Monitoring Metrics Publisher",
}

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

ROLES_BICEP = INFRA / "modules" / "roles.bicep"


def _camel(role_name: str) -> str:
    words = role_name.split()
    return words[0].lower() + "".join(w[:1].upper() + w[1:] for w in words[1:])


def role_assignments(bicep: BicepFile) -> list[Node]:
    return [
        node
        for node in bicep.nodes("resource_declaration")
        if string_value(node.named_children[1]).startswith("Microsoft.Authorization/roleAssignments@")
    ]


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_guid_in_a_template_is_a_documented_built_in_role(path: Path) -> None:
    unknown = {g.lower() for g in _GUID.findall(path.read_text())} - set(BUILT_IN_ROLES)
    assert not unknown, f"{path.name}: ids that are not documented built-in roles: {unknown}"


def test_role_table_names_each_id_by_its_role() -> None:
    table = literal(load(ROLES_BICEP).var("roles"))
    for key, guid in table.items():
        assert guid in BUILT_IN_ROLES, f"{key}: {guid} is not a documented built-in role"
        assert key == _camel(BUILT_IN_ROLES[guid]), f"{key} holds the id of {BUILT_IN_ROLES[guid]}"


def test_the_app_identity_gets_exactly_the_roles_it_needs() -> None:
    bicep = load(ROLES_BICEP)
    table = literal(bicep.var("roles"))
    granted: set[str] = set()
    for node in role_assignments(bicep):
        body = text(node)
        if "principalId: appPrincipalId" not in body:
            continue
        for key in table:
            if f"roles.{key}" in body:
                granted.add(BUILT_IN_ROLES[table[key]])
        if "for roleId in storageRolesForApp" in body:
            for ref in text(bicep.var("storageRolesForApp")).split():
                if ref.startswith("roles."):
                    granted.add(BUILT_IN_ROLES[table[ref.removeprefix("roles.")]])
    assert granted == APP_ROLES


def test_every_role_assignment_is_named_with_guid_and_uses_a_built_in_definition() -> None:
    found = 0
    for path in bicep_files():
        for node in role_assignments(load(path)):
            found += 1
            body = node.named_children[-1]
            if body.type in ("for_statement", "if_statement"):
                body = body.named_children[-1]
            props = {key_of(p): p.named_children[-1] for p in properties(body)}
            assert text(props["name"]).startswith("guid("), f"{path.name}: {text(props['name'])}"
            role_props = {key_of(p): text(p.named_children[-1]) for p in properties(props["properties"])}
            assert (
                role_props["roleDefinitionId"]
                .replace("\n", "")
                .replace(" ", "")
                .startswith("subscriptionResourceId('Microsoft.Authorization/roleDefinitions',")
            )
    assert found >= 5
