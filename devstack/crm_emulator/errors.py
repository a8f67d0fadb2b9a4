"""The CRM emulator's error answer, raised by the store and the contract checks, answered by the API."""

from __future__ import annotations


class ApiError(Exception):
    """An error the API answers as `{"error": {"code", "message"}}` with `status`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
