"""The status page (GET /api/ops/status, admin key) rendered by headless Chromium through the real stack.

Chromium is Debian's `chromium` package, installed by the test setup: `make test` runs `make chromium`,
which installs it with apt-get when it is missing (as root) or writes why it could not to
.artifacts/chromium-missing.txt; the test then skips with that reason. The screenshot is kept under
.artifacts/ (git-ignored) for a human to look at.
"""

from __future__ import annotations

import asyncio
import struct
import subprocess
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from devstack.stack import MASTER_KEY
from sync_core.adapters.storage.core import POISON_QUEUE
from sync_core.bootstrap import opened
from sync_core.domain.messages import CrmChange, encode
from sync_core.errors import UnprocessableError
from tests.clock import days_ahead, graph_time
from tests.e2e.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_NOTE = ARTIFACTS / "chromium-missing.txt"  # written by `make chromium` when it cannot install it
REASON = "CRM rejected the appointment (422): room Atlantis is not bookable"


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, as `make chromium` installed it; skip, saying why, when it is not there."""
    if CHROMIUM.exists():
        return CHROMIUM
    why = CHROMIUM_NOTE.read_text().strip() if CHROMIUM_NOTE.exists() else "`make chromium` was not run"
    pytest.skip(f"Debian's chromium is not at {CHROMIUM} ({why}); `make chromium` installs it as root")


def headless(chromium: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            str(chromium),
            "--headless",
            "--no-sandbox",  # root in a container
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        timeout=180,
    )


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, pixels) of an 8-bit RGB or RGBA PNG: the chunks, inflate, and the five row filters."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), f"unexpected PNG format: depth {depth}, colour type {colour}"
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    previous, pixels = bytearray(stride), []
    for y in range(height):
        kind, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = row[x - bpp] if x >= bpp else 0
            b, c = previous[x], previous[x - bpp] if x >= bpp else 0
            if kind == 1:
                row[x] = (row[x] + a) & 0xFF
            elif kind == 2:
                row[x] = (row[x] + b) & 0xFF
            elif kind == 3:
                row[x] = (row[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[x] = (row[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        pixels += [bytes(row[i : i + 3]) for i in range(0, stride, bpp)]
        previous = row
    return width, height, pixels


async def poison_with_reason(crm_id: str) -> str:
    """A message the worker would send to poison for a permanent error, with its ledger row."""
    async with opened() as c:
        body = encode(
            CrmChange(
                correlation_id="status-page",
                received_at=datetime.now(UTC),
                crm_id=crm_id,
                change_type="updated",
            )
        )
        await c.failures.record(
            body=body,
            message_id="status-page-1",
            dequeue_count=1,
            error=UnprocessableError(REASON, side="crm", item_id=crm_id),
            step="crm_change",
            permanent=True,
            at=datetime.now(UTC),
        )
        await c.storage.enqueue(body, queue=POISON_QUEUE)
        return body


@pytest.fixture
def artifacts() -> Iterator[Path]:
    ARTIFACTS.mkdir(exist_ok=True)
    yield ARTIFACTS


def test_the_status_page_renders_in_chromium_with_mailboxes_poison_reasons_and_decisions(
    stack: Stack, chromium: Path, artifacts: Path, tmp_path: Path
) -> None:
    asyncio.run(poison_with_reason("crm-status-page"))
    with stack.graph_http() as g:
        g.post(
            "/users/adele@contoso.example/events",
            json={
                "subject": "Status page decision",
                "start": graph_time(days_ahead(2, 10)),
                "end": graph_time(days_ahead(2, 11)),
                "attendees": [{"emailAddress": {"address": "megan@fabrikam.example"}, "type": "required"}],
            },
        ).raise_for_status()
    wait_for(lambda: [a for a in stack.crm_appointments() if a.get("subject") == "Status page decision"])
    url = f"{stack.host.base_url}/api/ops/status?code={MASTER_KEY}"
    assert httpx.get(f"{stack.host.base_url}/api/ops/status", timeout=10).status_code == 401, "admin key only"

    shot = artifacts / "status-page.png"
    shot.unlink(missing_ok=True)
    taken = headless(chromium, tmp_path / "p1", f"--screenshot={shot}", "--window-size=1280,1500", url)
    dom = headless(chromium, tmp_path / "p2", "--dump-dom", url)

    assert taken.returncode == 0 and shot.is_file(), taken.stderr.decode(errors="replace")[-2000:]
    width, height, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (1280, 1500)
    colours = set(pixels)
    assert len(colours) >= 8, f"a blank screenshot ({len(colours)} colours)"
    background = max(colours, key=pixels.count)
    assert sum(p != background for p in pixels) > width * 20, "text and tables drawn, not a blank page"

    page = dom.stdout.decode()
    assert dom.returncode == 0 and "<h1>Calendar sync status</h1>" in page, dom.stderr.decode()[-2000:]
    for mailbox in ("adele@contoso.example", "bruno@contoso.example", "chen@contoso.example"):
        assert mailbox in page
    assert REASON in page and "crm-status-page" in page
    assert 'data-id="' in page and ">replay</button>" in page
    decisions = page[page.index("Recent decisions") :]
    assert "<td>m365</td>" in decisions, "the decision about the new Outlook event is listed"
