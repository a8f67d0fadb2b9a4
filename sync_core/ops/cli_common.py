"""What the CLI's commands share: the consoles, formatting, settings files, and running on a container.

I/O side. Output goes to stdout (tables, JSON), progress and errors to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from sync_core.bootstrap import Container, configuration, opened
from sync_core.errors import ConfigurationError, UnprocessableError
from sync_core.ops import operations as ops

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
Command = Callable[[argparse.Namespace], int]


def duration(text: str) -> timedelta:
    try:
        return ops.parse_duration(text)
    except UnprocessableError as exc:
        raise argparse.ArgumentTypeError(exc.message) from exc


def ago(delta: timedelta | None) -> str:
    if delta is None:
        return "never"
    seconds = int(delta.total_seconds())
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    text = f"{days}d {hours}h" if days else f"{hours}h {minutes}m" if hours else f"{minutes}m {seconds % 60}s"
    return sign + text


def when(value: datetime | str | None) -> str:
    if not value:
        return "-"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def load_settings_file(path: Path) -> None:
    """Put a local.settings.json's Values into the environment (they win over what is already set)."""
    try:
        values = json.loads(path.read_text(encoding="utf-8")).get("Values")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigurationError([f"--settings {path}: cannot read a local.settings.json ({exc})"]) from exc
    if not isinstance(values, dict):
        raise ConfigurationError([f'--settings {path}: no "Values" object'])
    os.environ.update({str(k): str(v) for k, v in values.items() if v is not None})
    configuration.cache_clear()  # the environment just changed under the cached settings


def run_with(work: Callable[[Container], Awaitable[int]]) -> int:
    """Build the app's container from validated settings, run `work` on it, close it."""
    configuration()  # a configuration error is reported before any event loop starts

    async def main() -> int:
        async with opened() as c:
            return await work(c)

    return asyncio.run(main())


def filters(args: argparse.Namespace) -> dict[str, Any]:
    """The poison filter and limit the command line chose, as keyword arguments of list_poison and replay."""
    return {
        "flt": ops.PoisonFilter(args.mailbox, args.error_class, args.older_than, args.message_id),
        "limit": args.limit,
    }
