"""The one error tree of the sync, and the HTTP status map every adapter translates with, once, at its edge.
Pure: no I/O.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping


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


# -- HTTP answers -----------------------------------------------------------------------------------------
# One map for Graph, the CRM and Storage: each adapter adds what its service says beyond the status (Graph
# error codes, Storage's exception types) and its own wording.

STATUS_CLASSES: dict[int, type[SyncError]] = {
    400: UnprocessableError,
    401: PermissionError_,
    403: PermissionError_,
    404: NotFoundError,
    408: TransientError,  # the server timed out waiting for us: as retryable as a client-side timeout
    409: ConflictError,
    410: NotFoundError,  # gone for good (a CRM change-feed cursor that expired: start a full sweep)
    412: ConcurrencyError,
    413: UnprocessableError,
    415: UnprocessableError,
    422: UnprocessableError,
    423: TransientError,  # locked (Exchange ErrorItemLocked, a mailbox move): comes back
    424: TransientError,  # a failed dependency: retried with it
    429: ThrottledError,
    451: PermissionError_,
    501: PermanentError,
    503: ThrottledError,  # with Retry-After; without it TransientError (our own backoff)
    505: PermanentError,
    507: PermanentError,  # over quota: an operator must act
    509: ThrottledError,  # bandwidth limit exceeded
}
STATUS_FAMILY: dict[int, type[SyncError]] = {
    0: TransientError,  # no status: the response never arrived
    1: TransientError,  # an informational status as the final answer is a protocol hiccup
    2: TransientError,  # a success reported as a failure (empty body where one was promised)
    3: PermanentError,  # a redirect not followed: the APIs we call do not redirect
    4: PermanentError,
    5: TransientError,
}


def status_class(status: int, *, has_retry_after: bool = False) -> type[SyncError]:
    """The error class of an HTTP status. 429 is always throttling; 503 and 509 only with Retry-After."""
    target = STATUS_CLASSES.get(status) or STATUS_FAMILY.get(status // 100, PermanentError)
    if target is ThrottledError and not has_retry_after and status != 429:
        return TransientError
    return target


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After value (delta-seconds, possibly fractional, or an HTTP-date, RFC 9110
    10.2.3), `now` being the caller's Unix time; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - now, 0.0)


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header's value, its name matched without case."""
    return next((str(v) for k, v in (headers or {}).items() if k.lower() == name.lower()), None)
