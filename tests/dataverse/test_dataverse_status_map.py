"""Issue 18: an appointment's statecode/statuscode mapped to our statuses per tenant (DATAVERSE_STATUS_MAP).
The default is the former fixed table; a tenant's map, with its own statuscode values, is written and read
through DataverseConnector against the Dataverse emulator (whose org is given the tenant's values); the
setting is validated at start against the appointment entity reference's statecode/statuscode table, every
problem listed with the others.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devstack.dataverse_emulator import DataverseEmulator, store
from sync_core.adapters.crm.dataverse import DataverseConnector
from sync_core.adapters.crm.dataverse_status import StatusMap, state_of, status_of
from sync_core.bootstrap import crm_connector
from sync_core.domain.model import ShowAs, Status
from sync_core.errors import ConfigurationError
from sync_core.settings import load_settings
from tests.crm.test_crm_contract import make_appointment

ROOT = Path(__file__).resolve().parents[2]
HOLD_CODE, CALLED_OFF = 100_000_001, 100_000_002  # a tenant's own status reasons
TENANT = {"hold": [0, HOLD_CODE], "cancelled": [2, CALLED_OFF]}


# -- the default is the former table --------------------------------------------------------------------

P, T, H, C, X = Status.PROSPECT, Status.TENTATIVE, Status.HOLD, Status.CONFIRMED, Status.CANCELLED


@pytest.mark.parametrize(
    ("status", "show_as", "pair"),
    [
        (P, ShowAs.BUSY, (0, 1)),
        (H, ShowAs.BUSY, (0, 1)),
        (T, ShowAs.BUSY, (0, 2)),
        (C, ShowAs.BUSY, (3, 5)),
        (C, ShowAs.OOF, (3, 6)),
        (P, ShowAs.OOF, (0, 1)),
        (X, ShowAs.BUSY, (2, 4)),
    ],
)
def test_the_default_map_writes_the_former_pairs(
    status: Status, show_as: ShowAs, pair: tuple[int, int]
) -> None:
    assert state_of(status, show_as) == pair


@pytest.mark.parametrize(
    ("pair", "kept", "status"),
    [
        ((0, 1), None, T),  # a CRM user's Open/Free appointment
        ((0, 1), P, P),  # prospect and hold share Open/Free: what we kept tells them apart
        ((0, 1), H, H),
        ((0, 1), C, T),
        ((0, 2), P, T),
        ((0, 100_000_000), H, H),  # a statuscode no status lists: its state, or the kept one of that state
        ((0, 100_000_000), C, T),
        ((3, 5), None, C),
        ((3, 6), T, C),
        ((3, 100_000_000), None, C),
        ((1, 3), None, C),
        ((2, 4), C, X),
        ((2, 100_000_000), None, X),
    ],
)
def test_the_default_map_reads_the_former_statuses(
    pair: tuple[int, int], kept: Status | None, status: Status
) -> None:
    assert status_of(*pair, kept) is status


def test_a_tenants_map_replaces_only_the_statuses_it_names() -> None:
    statuses = StatusMap.of({"hold": ((0, HOLD_CODE),)})
    assert statuses.state_of(H, ShowAs.BUSY) == (0, HOLD_CODE)
    assert statuses.status_of(0, HOLD_CODE, None) is H  # listed once: no kept status needed
    assert statuses.status_of(0, 1, H) is P  # Open/Free is prospect's alone now: a user took it off hold
    assert statuses.status_of(0, 1, None) is P
    assert statuses.state_of(C, ShowAs.OOF) == (3, 6)


# -- through the connector, against the emulator ---------------------------------------------------------


@pytest.fixture
def backend(dataverse_emulator: DataverseEmulator, monkeypatch: pytest.MonkeyPatch) -> DataverseEmulator:
    """The emulated org has the tenant's status reasons: Open's Held, Canceled's Called off."""
    monkeypatch.setitem(store.STATES, 0, (1, 2, HOLD_CODE))
    monkeypatch.setitem(store.STATES, 2, (4, CALLED_OFF))
    dataverse_emulator.reset()
    return dataverse_emulator


def _settings(**changes: str) -> dict[str, str]:
    values: dict[str, str] = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    return (
        values
        | {
            "CRM_CONNECTOR": "dataverse",
            "DATAVERSE_URL": "http://127.0.0.1:7082",
            "DATAVERSE_AUTH_MODE": "emulator",
        }
        | changes
    )


@pytest.fixture
async def tenant(backend: DataverseEmulator) -> AsyncIterator[DataverseConnector]:
    statuses = StatusMap.of(
        load_settings(_settings(DATAVERSE_STATUS_MAP=json.dumps(TENANT))).dataverse_statuses
    )
    async with DataverseConnector(
        backend.base_url, token=backend.token, timeout=5.0, statuses=statuses
    ) as conn:
        yield conn


def _pair(backend: DataverseEmulator, crm_id: str) -> tuple[int, int]:
    (row,) = [r for r in backend.appointments() if r["activityid"] == crm_id]
    return int(row["statecode"]), int(row["statuscode"])


async def test_the_tenants_statuscodes_are_written_and_read_as_our_statuses(
    tenant: DataverseConnector, backend: DataverseEmulator
) -> None:
    held = await tenant.create_appointment(make_appointment(status=H), idempotency_key="k", external_ref="m")
    assert _pair(backend, held.crm_id) == (0, HOLD_CODE) and held.appointment.status is H
    confirmed = await tenant.update_appointment(
        held.crm_id, make_appointment(status=C), fields=["status"], expected_version=None
    )
    assert _pair(backend, held.crm_id) == (3, 5) and confirmed.appointment.status is C
    backend.user_update(held.crm_id, statecode=0, statuscode=HOLD_CODE)  # a Dataverse user puts it on hold
    read = await tenant.get_appointment(held.crm_id)
    assert read is not None and read.appointment.status is H
    cancelled = await tenant.cancel_appointment(held.crm_id)
    assert _pair(backend, held.crm_id) == (2, CALLED_OFF) and cancelled.appointment.status is X
    again = await tenant.cancel_appointment(held.crm_id)
    assert again.version == cancelled.version  # cancelling again changes nothing (L4)


async def test_a_dataverse_users_cancel_with_the_tenants_reason_reads_as_cancelled(
    tenant: DataverseConnector, backend: DataverseEmulator
) -> None:
    made = await tenant.create_appointment(make_appointment(), idempotency_key="k", external_ref="m")
    backend.user_update(made.crm_id, statecode=2, statuscode=CALLED_OFF)
    read = await tenant.get_appointment(made.crm_id)
    assert read is not None and read.appointment.status is X


# -- settings ------------------------------------------------------------------------------------------------


def _problems(**changes: str) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(_settings(**changes))
    return caught.value.problems


def test_every_status_map_problem_is_listed_at_start_with_the_others() -> None:
    problems = _problems(
        DATAVERSE_URL="",
        DATAVERSE_STATUS_MAP=json.dumps(
            {
                "booked": [3, 5],
                "confirmed": [0, 5],
                "tentative": [7, 1],
                "hold": [[0, 1], [2, 4]],
                "prospect": [True, 1],
                "cancelled": [0, 100000002],
            }
        ),
    )
    for start in (
        "DATAVERSE_URL: required",
        "DATAVERSE_STATUS_MAP: 'booked' is not one of our statuses",
        "DATAVERSE_STATUS_MAP: confirmed: statuscode 5 does not belong to statecode 0, whose statuscodes are "
        "1, 2 and the tenant's own (it is statecode 3's)",
        "DATAVERSE_STATUS_MAP: tentative: statecode 7 is not one of the appointment's",
        "DATAVERSE_STATUS_MAP: hold: never statecode 2 (Canceled), got [2, 4]",
        "DATAVERSE_STATUS_MAP: prospect: [statecode, statuscode]",
        "DATAVERSE_STATUS_MAP: cancelled: only statecode 2 (Canceled), got [0, 100000002]",
    ):
        assert any(p.startswith(start) for p in problems), (start, problems)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("{hold: 1}", "DATAVERSE_STATUS_MAP: not JSON"),
        ("[[0, 1]]", "DATAVERSE_STATUS_MAP: a JSON object"),
        ('{"confirmed": [1, 3]}', "DATAVERSE_STATUS_MAP: confirmed: the first pair is what is written"),
        ('{"confirmed": []}', "DATAVERSE_STATUS_MAP: confirmed: [statecode, statuscode]"),
        ('{"tentative": [0, 0]}', "DATAVERSE_STATUS_MAP: tentative: statuscode 0 does not belong"),
        ('{"cancelled": [2, 3]}', "DATAVERSE_STATUS_MAP: cancelled: statuscode 3 does not belong"),
    ],
)
def test_a_wrong_status_map_is_named(raw: str, problem: str) -> None:
    problems = _problems(DATAVERSE_STATUS_MAP=raw)
    assert any(p.startswith(problem) for p in problems), problems


def test_completed_may_be_read_as_a_status_but_not_written() -> None:
    settings = load_settings(
        _settings(DATAVERSE_STATUS_MAP='{"confirmed": [[3, 5], [1, 3], [3, 100000003]]}')
    )
    assert settings.dataverse_statuses["confirmed"] == ((3, 5), (1, 3), (3, 100000003))
    assert settings.dataverse_statuses["hold"] == ((0, 1),)  # the default, for what the map leaves out


async def test_the_composition_root_builds_the_connector_with_the_tenants_map() -> None:
    connector, _ = crm_connector(load_settings(_settings(DATAVERSE_STATUS_MAP=json.dumps(TENANT))))
    assert isinstance(connector, DataverseConnector)
    assert connector.statuses.state_of(H, ShowAs.BUSY) == (0, HOLD_CODE)
    assert connector.statuses.cancelled == (2, CALLED_OFF)
    await connector.aclose()
    default, _ = crm_connector(load_settings(_settings()))
    assert isinstance(default, DataverseConnector) and default.statuses.cancelled == (2, 4)
    await default.aclose()
