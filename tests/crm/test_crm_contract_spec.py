"""docs/crm-contract.openapi.yaml stays in step with the code that speaks it (model, connector, webhook)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sync_core.domain.model import Appointment
from sync_core.ports.crm import Contact, CrmUser, Space
from sync_core.ports.crm_webhook import CrmWebhookEvent

SPEC = (Path(__file__).resolve().parents[2] / "docs" / "crm-contract.openapi.yaml").read_text()


def schema_properties(name: str) -> set[str]:
    """Property names of `components.schemas.<name>` (its own `properties:` block, 8 spaces deep)."""
    block = re.search(rf"^    {name}:\n((?:      .*\n|\n)+)", SPEC, re.MULTILINE)
    assert block, f"schema {name} not in the spec"
    props = re.search(r"^      properties:\n((?:        .*\n)+)", block.group(1), re.MULTILINE)
    assert props, f"schema {name} has no properties"
    return set(re.findall(r"^        ([a-z_]+):", props.group(1), re.MULTILINE))


def test_the_appointment_schema_lists_exactly_the_model_fields() -> None:
    assert schema_properties("AppointmentFields") == set(Appointment.model_fields)


@pytest.mark.parametrize(
    ("schema", "fields"),
    [
        ("Contact", set(Contact.model_fields) - {"crm_id"} | {"id"}),
        ("User", set(CrmUser.model_fields) - {"crm_id"} | {"id"}),
        ("Space", set(Space.model_fields) - {"crm_id"} | {"id"}),
        ("WebhookEvent", set(CrmWebhookEvent.model_fields)),
        ("ChangedPage", {"records", "deleted_ids", "cursor", "more"}),
        ("AppointmentsByExternalRef", {"records"}),
    ],
)
def test_directory_page_and_webhook_schemas_match_the_code(schema: str, fields: set[str]) -> None:
    assert schema_properties(schema) == fields


def test_every_path_the_connector_calls_is_in_the_spec() -> None:
    for path in (
        "/appointments",
        "/appointments/{id}",
        "/appointments/{id}/cancel",
        "/contacts",
        "/users",
        "/spaces",
    ):
        assert re.search(rf"^  {re.escape(path)}:$", SPEC, re.MULTILINE), path
    for text in (
        "Idempotency-Key",
        "If-Match",
        "X-Crm-Signature",
        "X-Crm-Timestamp",
        "300 seconds",
        "Rotation",
        "external_ref=<meeting key>",
        "ical:<iCalUId>",
    ):
        assert text in SPEC
