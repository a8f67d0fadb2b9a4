"""Schemathesis against the CRM emulator, driven by docs/crm-contract.openapi.yaml.

Every operation of the contract, with schema-valid and schema-violating requests (bounded: 60 examples
per operation): no 5xx, only documented statuses, responses matching their schemas, valid requests
accepted, invalid ones refused.

The schema is loaded at import (a local file) and the base URL given per call: schemathesis' lazy
`from_fixture` loader does not work with pytest 9 (it sets `Function._nodeid`, which pytest 9 removed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis

from devstack.crm_emulator import CrmEmulator

SPEC = Path(__file__).resolve().parents[2] / "docs" / "crm-contract.openapi.yaml"
MAX_EXAMPLES = 60
# What counts as accepting a schema-valid request. Cursors are opaque: a schema-valid string the CRM never
# issued is rightly refused (400 on the directory pages, 410 on the change feed, as the contract says).
# Writes: a schema-valid body can still be unprocessable (the contract's documented 422), e.g. an end before
# its start, or a date-time in year 1 with a positive offset, which has no UTC equivalent; JSON Schema's
# `date-time` cannot exclude either. One list for every operation: schemathesis applied the first
# per-operation entry (the GETs') to POST /appointments as well, so a run that happened to generate such a
# body failed (seen under faketime, where Hypothesis drew other examples).
ACCEPTING_STATUSES = ["2xx", "3xx", "400", "401", "403", "404", "409", "410", "412", "422", "429", "5xx"]

CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            "mode": "all",  # schema-valid and schema-violating requests
            "max-examples": MAX_EXAMPLES,
            "database": "none",
            # The contract says unknown query parameters and headers are ignored, so adding some is no
            # "schema-violating request" the CRM must refuse.
            "allow-extra-parameters": False,
        },
        "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTING_STATUSES}},
    }
)
schema = schemathesis.openapi.from_path(SPEC, config=CONFIG)


@pytest.fixture(scope="module")
def running_crm() -> Iterator[CrmEmulator]:
    with CrmEmulator() as crm:
        crm.seed(
            users=[{"email": "alice@contoso.example", "mailbox": "alice@contoso.example"}],
            contacts=[{"email": "bob@fabrikam.example", "name": "Bob"}],
            spaces=[{"name": "Hall A", "room_mailbox": "hall-a@contoso.example"}],
        )
        yield crm


@schema.parametrize()
def test_the_emulator_honours_the_contract(case: schemathesis.Case, running_crm: CrmEmulator) -> None:
    case.call_and_validate(
        base_url=running_crm.base_url, headers={"Authorization": f"Bearer {running_crm.token}"}
    )
