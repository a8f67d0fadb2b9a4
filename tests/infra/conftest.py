"""Fixtures for the infra/ tests; reading Bicep with tree-sitter lives in bicep_reader.py beside this file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bicep_reader import DEPLOY_DOC, INFRA, BicepFile, load


@pytest.fixture(scope="session")
def main_bicep() -> BicepFile:
    return load(INFRA / "main.bicep")


@pytest.fixture(scope="session")
def main_params() -> BicepFile:
    return load(INFRA / "main.bicepparam")


@pytest.fixture(scope="session")
def function_app_bicep() -> BicepFile:
    return load(INFRA / "modules" / "functionapp.bicep")


@pytest.fixture(scope="session")
def deploy_doc() -> str:
    return DEPLOY_DOC.read_text()
