"""Infra defaults hardened (issue 15, item 9): HTTPS only, TLS 1.2 at least, no FTP(S), no basic-auth
publishing, no shared-key access to storage."""

from __future__ import annotations

from pathlib import Path

INFRA = Path(__file__).resolve().parents[2] / "infra"


def _text(name: str) -> str:
    return (INFRA / "modules" / name).read_text(encoding="utf-8")


def test_the_function_app_takes_https_only_with_tls_1_2_and_no_ftp() -> None:
    app = _text("functionapp.bicep")
    for line in (
        "httpsOnly: true",
        "minTlsVersion: '1.2'",
        "scmMinTlsVersion: '1.2'",
        "ftpsState: 'Disabled'",
    ):
        assert line in app, line


def test_basic_auth_publishing_is_off_for_ftp_and_scm() -> None:
    app = _text("functionapp.bicep")
    policies = app.split("basicPublishingCredentialsPolicies@")[1:]
    names = {p.split("name: '")[1].split("'")[0] for p in policies}
    assert names == {"ftp", "scm"} and all("allow: false" in p.split("}")[0] + p for p in policies)


def test_storage_refuses_shared_keys() -> None:
    assert "allowSharedKeyAccess: false" in _text("storage.bicep")
