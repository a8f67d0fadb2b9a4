"""Fault injection: throttling, outages, latency, and misbehaving notification delivery."""

from __future__ import annotations

import dataclasses
import random
import threading
from dataclasses import dataclass
from typing import Any

GLOBAL = "*"
DUPLICATE_TRANSACTION_STATUSES = (0, 400, 409)


@dataclass
class FaultSpec:
    """One scope's faults. Rates are probabilities per request; counts are the next N requests.

    throttle_*: answer 429 TooManyRequests with `Retry-After: retry_after` (seconds).
    unavailable_*: answer 503 ServiceNotAvailable (also with Retry-After).
    latency_ms: hold each request this long before answering (in-flight, so it counts for concurrency).
    notify_drop_rate / notify_duplicate_rate: per change notification.
    notify_delay_ms: wait before each notification POST.
    notify_reorder_window_ms: buffer notifications this long and deliver each buffer newest-first.
    lose_response_*: run a write (POST/PATCH/DELETE) to the end, then answer 500 instead of its result, as
    when a gateway loses the answer after the mailbox committed (a retried create must not duplicate).
    duplicate_transaction_status: how a POST answers when its transactionId was already used in the mailbox.
    0 (default): 201 with the existing event. 400 or 409: that status with `ErrorDuplicateTransactionId`,
    as Graph has been seen to answer; the event is not created again either way.
    """

    throttle_rate: float = 0.0
    throttle_count: int = 0
    retry_after: float = 1.0
    unavailable_rate: float = 0.0
    unavailable_count: int = 0
    latency_ms: float = 0.0
    notify_drop_rate: float = 0.0
    notify_duplicate_rate: float = 0.0
    notify_delay_ms: float = 0.0
    notify_reorder_window_ms: float = 0.0
    lose_response_rate: float = 0.0
    lose_response_count: int = 0
    duplicate_transaction_status: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}; known: {sorted(names)}")
        spec = cls(**data)
        for f in dataclasses.fields(cls):
            value = getattr(spec, f.name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{f.name} must be a non-negative number")
            if f.name.endswith("_rate") and value > 1:
                raise ValueError(f"{f.name} must be between 0 and 1")
        if spec.duplicate_transaction_status not in DUPLICATE_TRANSACTION_STATUSES:
            raise ValueError(f"duplicate_transaction_status must be one of {DUPLICATE_TRANSACTION_STATUSES}")
        return spec

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Verdict:
    """What to do with one request: answer with an injected status, and/or wait first."""

    status: int | None = None
    retry_after: float = 0.0
    latency_s: float = 0.0


class Faults:
    """Fault settings per mailbox id (or GLOBAL), with a seeded random source; thread-safe."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._specs: dict[str, FaultSpec] = {}
        self._random = random.Random(seed)

    def set(self, scope: str, spec: FaultSpec) -> None:
        with self._lock:
            self._specs[scope] = spec

    def clear(self, scope: str | None = None) -> None:
        with self._lock:
            if scope is None:
                self._specs.clear()
            else:
                self._specs.pop(scope, None)

    def seed(self, seed: int) -> None:
        with self._lock:
            self._random.seed(seed)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {scope: spec.to_json() for scope, spec in self._specs.items()}

    def _scopes(self, mailbox_id: str | None) -> list[FaultSpec]:
        scopes = [self._specs[mailbox_id]] if mailbox_id in self._specs else []
        if GLOBAL in self._specs:
            scopes.append(self._specs[GLOBAL])
        return scopes

    def for_request(self, mailbox_id: str | None) -> Verdict:
        """Decide (and consume counts) for one Graph request touching `mailbox_id`."""
        with self._lock:
            latency = 0.0
            for spec in self._scopes(mailbox_id):
                latency = max(latency, spec.latency_ms / 1000)
                if spec.throttle_count > 0:
                    spec.throttle_count -= 1
                    return Verdict(429, spec.retry_after, latency)
                if spec.throttle_rate and self._random.random() < spec.throttle_rate:
                    return Verdict(429, spec.retry_after, latency)
                if spec.unavailable_count > 0:
                    spec.unavailable_count -= 1
                    return Verdict(503, spec.retry_after, latency)
                if spec.unavailable_rate and self._random.random() < spec.unavailable_rate:
                    return Verdict(503, spec.retry_after, latency)
            return Verdict(None, 0.0, latency)

    def lose_response(self, mailbox_id: str | None) -> bool:
        """Whether to drop the answer of a write that has been committed (consumes counts)."""
        with self._lock:
            for spec in self._scopes(mailbox_id):
                if spec.lose_response_count > 0:
                    spec.lose_response_count -= 1
                    return True
                if spec.lose_response_rate and self._random.random() < spec.lose_response_rate:
                    return True
            return False

    def duplicate_transaction_status(self, mailbox_id: str | None) -> int:
        """0 to answer a duplicate-transactionId create with the existing event, else the error status."""
        with self._lock:
            for spec in self._scopes(mailbox_id):
                if spec.duplicate_transaction_status:
                    return spec.duplicate_transaction_status
            return 0

    def for_notification(self, mailbox_id: str | None) -> tuple[int, float, float]:
        """(copies to send: 0 = drop, 1, or 2; delay seconds; reorder window seconds)."""
        with self._lock:
            copies, delay, window = 1, 0.0, 0.0
            for spec in self._scopes(mailbox_id):
                delay = max(delay, spec.notify_delay_ms / 1000)
                window = max(window, spec.notify_reorder_window_ms / 1000)
                if spec.notify_drop_rate and self._random.random() < spec.notify_drop_rate:
                    copies = 0
                elif (
                    copies
                    and spec.notify_duplicate_rate
                    and self._random.random() < spec.notify_duplicate_rate
                ):
                    copies = 2
            return copies, delay, window
