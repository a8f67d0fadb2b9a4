"""Golden transcripts: a documented request and its response, in one text file under tests/fixtures/ with
its source on a `# source:` line, the two parts split by `### response` (HTTP start line, headers, a blank
line, the body)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Message:
    start: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


@dataclass
class Transcript:
    source: str
    request: Message
    response: Message


def _message(text: str) -> Message:
    head, _, body = text.strip("\n").partition("\n\n")
    lines = head.splitlines()
    headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    return Message(lines[0], {k.strip(): v.strip() for k, v in headers.items()}, body.strip())


def load_transcript(path: Path) -> Transcript:
    text = path.read_text()
    source = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("# source:"))
    body = "\n".join(line for line in text.splitlines() if not line.startswith("# "))
    request, _, response = body.partition("### response")
    return Transcript(source, _message(request), _message(response))
