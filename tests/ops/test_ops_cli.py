"""`python -m sync_core`: policy check, --help everywhere, exit codes, and the commands against Azurite."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sync_core.adapters.storage.core import CHANGES_QUEUE, POISON_QUEUE, Storage
from sync_core.bootstrap import configuration
from sync_core.domain.messages import GraphChange, encode
from sync_core.ops import cli
from sync_core.settings import Settings
from tests.ops.conftest import MAILBOX_A

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = [
    [],
    ["replay"],
    ["failures"],
    ["subscriptions"],
    ["backfill"],
    ["explain"],
    ["status"],
    ["policy"],
    ["policy", "check"],
]


def test_policy_check_prints_the_effective_policy_of_a_good_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["policy", "check", str(ROOT / "devstack" / "demo-policy.json")]) == 0
    effective = json.loads(capsys.readouterr().out)
    assert effective["past_days"] == 30, "defaults are filled in"
    assert effective["sync_users"][0]["email"] == "adele@contoso.example"


def test_policy_check_lists_every_problem_of_a_bad_file_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "policy.json"
    bad.write_text(
        json.dumps(
            {
                "past_days": -1,
                "sync_users": [{"email": "not-an-address"}],
                "rooms": [
                    {"mailbox": "a@x.example", "crm_space_id": "s1", "display_name": "Hall"},
                    {"mailbox": "b@x.example", "crm_space_id": "s2", "display_name": "hall"},
                ],
            }
        )
    )

    assert cli.main(["policy", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    for problem in ("past_days", "sync_users.0.email", "sync_users.0.crm_user_id", "ambiguous"):
        assert problem in err


def test_policy_check_runs_as_a_module(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text("{not json")
    done = subprocess.run(
        [sys.executable, "-m", "sync_core", "policy", "check", str(tmp_path / "p.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "not valid JSON" in done.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_works_for_every_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, "--help"])
    assert exited.value.code == 0 and "usage: python -m sync_core" in capsys.readouterr().out


def test_a_bad_option_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["replay", "--older-than", "soon"])
    assert exited.value.code == 2


def test_a_configuration_error_lists_every_problem_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for spec in Settings.model_fields.values():
        for name in getattr(spec.validation_alias, "choices", ()):
            monkeypatch.delenv(str(name), raising=False)
    monkeypatch.setenv("GRAPH_AUTH_MODE", "client_secret")
    configuration.cache_clear()

    assert cli.main(["status"]) == 2
    err = capsys.readouterr().err
    assert "AzureWebJobsStorage" in err and "GRAPH_CLIENT_SECRET" in err and "CRM_BASE_URL" in err
    configuration.cache_clear()


async def test_the_commands_run_against_storage_with_settings_from_a_local_settings_file(
    storage: Storage,
    app_settings: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in app_settings:  # restored after the test, whatever --settings puts there
        monkeypatch.setenv(name, "overwritten by --settings")
    local = tmp_path / "local.settings.json"
    local.write_text(json.dumps({"IsEncrypted": False, "Values": app_settings}))
    body = encode(
        GraphChange(
            correlation_id="c",
            received_at=datetime.now(UTC),
            mailbox=MAILBOX_A,
            event_id="AAMk-1",
            change_type="updated",
        )
    )
    await storage.enqueue(body, queue=POISON_QUEUE)

    async def run(*argv: str) -> tuple[int, str]:
        code = await asyncio.to_thread(cli.main, ["--settings", str(local), *argv])
        return code, capsys.readouterr().out

    code, out = await run("failures", "--json")
    assert code == 0 and json.loads(out)[0]["item_id"] == "AAMk-1"
    code, out = await run("replay", "--dry-run", "--mailbox", MAILBOX_A, "--json")
    assert code == 0 and json.loads(out)["moved"] == []
    code, out = await run("replay", "--error-class", "Unrecorded")
    assert code == 0 and "moved 1 to sync-changes" in out
    assert [m.content for m in await storage.queue(CHANGES_QUEUE).peek_messages()] == [body]
    code, out = await run("status", "--json")
    assert code == 1 and f"{MAILBOX_A}: never confirmed in sync" in json.loads(out)["reasons"]
    code, _ = await run("explain", "no-such-id")
    assert code == 1
    code, out = await run("backfill", "--mailbox", MAILBOX_A, "--no-wait")
    assert code == 0 and "enqueued a full resync" in out
    assert await storage.queue_depth(CHANGES_QUEUE) == 2
    code, _ = await run("backfill", "--mailbox", "stranger@elsewhere.example", "--no-wait")
    assert code == 2
    configuration.cache_clear()
