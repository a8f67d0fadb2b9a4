"""docs/benchmarks.md: the generated part (machine, command, tables) between two markers.

Everything outside the markers is hand-written (targets missed and why) and is kept as it is. Each size
keeps its own generated section, so a quick run never overwrites the large one's numbers.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT, fmt

DOC = ROOT / "docs" / "benchmarks.md"


@dataclass
class Section:
    name: str
    title: str
    target: str
    command: str
    rows: list[dict[str, Any]]
    seconds: float


def machine() -> dict[str, str]:
    mem = "?"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    load = "/".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {mem} RAM, {platform.system()}",
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": load,
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c)).replace("|", "/") for c in columns) + " |")
    return "\n".join(lines)


def render(info: dict[str, str], size: str, command: str, note: str, sections: list[Section]) -> str:
    out = [
        f"### `{command}` ({size})",
        "",
        f"- Machine: {info['machine']}; Python {info['python']}",
        f"- Date: {info['date']}; load average (1/5/15 min) before {info['load']}, after "
        f"{info.get('load after', '?')}",
    ]
    if note:
        out.append(f"- Note: {note}")
    for s in sections:
        out += [
            "",
            f"#### {s.title}",
            "",
            f"`{s.command}` ({s.seconds:.0f} s). {s.target[:1].upper() + s.target[1:]}.",
            "",
        ]
        out.append(markdown_table(s.rows))
    return "\n".join(out) + "\n"


def write(info: dict[str, str], size: str, command: str, note: str, sections: list[Section]) -> Path:
    begin, end = f"<!-- bench:{size}:begin -->", f"<!-- bench:{size}:end -->"
    block = f"{begin}\n{render(info, size, command, note, sections)}{end}"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)
    return DOC
