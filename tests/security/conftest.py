"""The security tests replay attacks against the local stack (tests/e2e/conftest.py's, one per module)."""

from __future__ import annotations

from tests.e2e.conftest import stack

__all__ = ["stack"]
