"""Request bodies checked against docs/crm-contract.openapi.yaml itself, so the emulator refuses exactly
what the contract refuses (the sync's own model is looser in places, e.g. recurrence types are free text).

Reads the spec once; jsonschema-rs (draft 2020-12, the dialect of OpenAPI 3.1) does the checking.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml

from devstack.crm_emulator.errors import ApiError

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "crm-contract.openapi.yaml"


@cache
def _validator(schema_name: str) -> jsonschema_rs.Validator:
    components = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))["components"]
    if schema_name not in components["schemas"]:
        raise KeyError(f"no schema {schema_name} in {SPEC_PATH.name}")
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": components}
    return jsonschema_rs.Draft202012Validator(root)


def check_body(schema_name: str, body: Any) -> None:
    """ApiError 422 when `body` breaks `components.schemas.<schema_name>`: `unknown_field` when the
    only problem is fields the schema does not have, `invalid_appointment` otherwise."""
    errors = list(_validator(schema_name).iter_errors(body))
    if not errors:
        return
    extra_fields = jsonschema_rs.ValidationErrorKind.UnevaluatedProperties
    unknown = [e for e in errors if isinstance(e.kind, extra_fields)]
    if len(unknown) == len(errors):
        raise ApiError(422, "unknown_field", unknown[0].message)
    first = next(e for e in errors if e not in unknown)
    where = "/".join(str(p) for p in first.instance_path) or "(body)"
    raise ApiError(422, "invalid_appointment", f"{where}: {first.message}")
