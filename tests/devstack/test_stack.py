"""LocalStack: a start that fails part way stops what it had started and gives the environment back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devstack.stack import LocalStack
from sync_core.errors import ConfigurationError


def test_a_failed_start_leaves_no_emulator_running_and_the_environment_as_it_was(tmp_path: Path) -> None:
    before = dict(os.environ)
    stack = LocalStack(policy_file=tmp_path / "missing-policy.json")

    with pytest.raises(ConfigurationError):
        stack.start()

    assert stack.azurite is not None and not stack.azurite.running, "its own Azurite was stopped"
    assert stack.graph._thread is None and stack.host._thread is None
    assert dict(os.environ) == before
