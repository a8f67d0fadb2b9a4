"""host.json: TimeSpans and the queue extension's options."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("devstack.host")

MAX_REQUEST_BYTES = 104_857_600  # the real host's 100 MB request limit
LEASE_SECONDS = 600  # the host receives messages for 10 minutes and renews while the function runs
MIN_POLL_SECONDS = 0.1  # the queue listener's minimum polling interval
DEFAULT_DRAIN_SECONDS = 30.0


def parse_timespan(value: object) -> float:
    """Seconds in a host.json TimeSpan: "hh:mm:ss[.fff]", "d.hh:mm:ss", or a number of milliseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1000
    if not isinstance(value, str):
        raise ValueError(f"not a TimeSpan: {value!r}")
    match = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)", value.strip())
    if match is None:
        raise ValueError(f"not a TimeSpan (hh:mm:ss): {value!r}")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the defaults of the Storage Queues extension 5.x."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    # 1 minute in Azure; Core Tools runs in development mode, where the default is 2 seconds.
    max_polling_interval: float = 2.0
    base64: bool = True

    @classmethod
    def from_host_json(cls, host_json: Mapping[str, Any]) -> QueueOptions:
        queues: Mapping[str, Any] = host_json.get("extensions", {}).get("queues", {})
        batch_size = int(queues.get("batchSize", 16))
        if not 1 <= batch_size <= 32:
            raise ValueError(f"extensions.queues.batchSize must be 1-32, got {batch_size}")
        encoding = str(queues.get("messageEncoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise ValueError(f"extensions.queues.messageEncoding must be base64 or none, got {encoding!r}")
        polling = parse_timespan(queues.get("maxPollingInterval", "00:00:02"))
        return cls(
            batch_size=batch_size,
            new_batch_threshold=int(queues.get("newBatchThreshold", batch_size // 2)),
            max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
            visibility_timeout=parse_timespan(queues.get("visibilityTimeout", "00:00:00")),
            max_polling_interval=max(polling, MIN_POLL_SECONDS),
            base64=encoding == "base64",
        )

    def decode(self, text: str) -> bytes:
        """The function's view of a stored message; ValueError when base64 is expected but absent."""
        if not self.base64:
            return text.encode("utf-8")
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"message is not valid base64: {exc}") from None

    def encode(self, body: str | bytes) -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        if self.base64:
            return base64.b64encode(data).decode("ascii")
        return data.decode("utf-8")
