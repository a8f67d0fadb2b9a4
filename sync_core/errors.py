"""The one error tree of the sync. Adapters translate SDK exceptions into it once, at their edge.

    SyncError
    ├── TransientError            retry: throttling, 5xx, timeouts, ETag races
    │   ├── ThrottledError        carries retry_after seconds (Graph 429/503 Retry-After)
    │   └── ConcurrencyError      a conditional write lost a race (412 / ResourceModified)
    ├── PermanentError            record and dead-letter at once: retrying cannot help
    │   ├── NotFoundError         the item is gone (404 / 410)
    │   ├── ConflictError         the target refuses this state (409)
    │   ├── PermissionError_      401 / 403 from a side
    │   ├── PolicyError           the policy forbids it, or needs an operator (X1)
    │   └── UnprocessableError    the input cannot be understood (bad message, bad payload)
    └── ConfigurationError        settings or policy invalid; lists every problem at once

Triggers hold the only map from these to HTTP statuses or queue retries.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base of every error the sync raises on purpose."""

    def __init__(
        self, message: str, *, side: str | None = None, mailbox: str | None = None, item_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.side = side
        self.mailbox = mailbox
        self.item_id = item_id

    @property
    def error_class(self) -> str:
        return type(self).__name__

    def context(self) -> dict[str, str]:
        out = {"error_class": self.error_class, "message": self.message}
        for key in ("side", "mailbox", "item_id"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out

    def __str__(self) -> str:
        where = ", ".join(
            f"{k}={v}" for k, v in self.context().items() if k not in ("error_class", "message")
        )
        return f"{self.message} ({where})" if where else self.message


class TransientError(SyncError):
    """Worth retrying later."""


class ThrottledError(TransientError):
    """The side asked us to slow down; `retry_after` is how long, in seconds."""

    def __init__(self, message: str, *, retry_after: float, **kw: str | None) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ConcurrencyError(TransientError):
    """A conditional write found the item changed since it was read."""


class PermanentError(SyncError):
    """Retrying cannot help: record the reason and move on (poison with reason)."""


class NotFoundError(PermanentError):
    """The item does not exist (any more)."""


class ConflictError(PermanentError):
    """The side refused the write because of its own state."""


class PermissionError_(PermanentError):
    """The side refused our credentials or permissions."""


class PolicyError(PermanentError):
    """The policy forbids the action or asks for an operator."""


class UnprocessableError(PermanentError):
    """The input cannot be understood."""


class ConfigurationError(SyncError):
    """Settings or policy are invalid. `problems` lists every problem found, not just the first."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(problems))
        self.problems = problems
