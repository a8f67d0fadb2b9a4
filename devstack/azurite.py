"""Start and stop the pinned Azurite (Azure Storage emulator) on loopback for the local stack and tests.

I/O side: spawns `node_modules/.bin/azurite` in its own process group and waits for its three ports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite"

ACCOUNT_NAME = "devstoreaccount1"
# The public, documented Azurite account key (not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEFAULT_BLOB_PORT = 10000
DEFAULT_QUEUE_PORT = 10001
DEFAULT_TABLE_PORT = 10002

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# Free ports are picked by binding port 0 and releasing it, so another process can grab one before
# Azurite does; when that happens Azurite exits at once and we retry with fresh ports.
_START_ATTEMPTS = 3


class AzuriteError(RuntimeError):
    """Azurite could not be found, started or reached."""


def connection_string(host: str, blob_port: int, queue_port: int, table_port: int) -> str:
    """The explicit Azurite connection string for the given loopback ports."""
    base = f"http://{host}"
    return (
        "DefaultEndpointsProtocol=http;"
        f"AccountName={ACCOUNT_NAME};"
        f"AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={base}:{blob_port}/{ACCOUNT_NAME};"
        f"QueueEndpoint={base}:{queue_port}/{ACCOUNT_NAME};"
        f"TableEndpoint={base}:{table_port}/{ACCOUNT_NAME};"
    )


def development_storage_connection_string() -> str:
    """What `UseDevelopmentStorage=true` means: Azurite on its default loopback ports."""
    return connection_string("127.0.0.1", DEFAULT_BLOB_PORT, DEFAULT_QUEUE_PORT, DEFAULT_TABLE_PORT)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Azurite:
    """One Azurite process serving blob, queue and table on loopback.

    Port 0 means "pick a free loopback port". With `data_dir=None` the data lives in memory only.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        host: str = "127.0.0.1",
        blob_port: int = 0,
        queue_port: int = 0,
        table_port: int = 0,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self._requested = (blob_port, queue_port, table_port)
        self.blob_port = blob_port
        self.queue_port = queue_port
        self.table_port = table_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def connection_string(self) -> str:
        """Full explicit connection string; valid once `start()` has returned."""
        if self._proc is None:
            raise AzuriteError("Azurite is not started")
        return connection_string(self.host, self.blob_port, self.queue_port, self.table_port)

    @property
    def queue_endpoint(self) -> str:
        return f"http://{self.host}:{self.queue_port}/{ACCOUNT_NAME}"

    @property
    def table_endpoint(self) -> str:
        return f"http://{self.host}:{self.table_port}/{ACCOUNT_NAME}"

    @property
    def blob_endpoint(self) -> str:
        return f"http://{self.host}:{self.blob_port}/{ACCOUNT_NAME}"

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Launch Azurite and return once blob, queue and table ports accept connections."""
        if self._proc is not None:
            raise AzuriteError("Azurite is already started")
        if not AZURITE_BIN.exists():
            raise AzuriteError(
                f"Azurite not found at {AZURITE_BIN}. Run `npm ci` in {REPO_ROOT} (or `make test`, "
                "which bootstraps it)."
            )
        if shutil.which("node") is None:
            raise AzuriteError("`node` is not on PATH; Azurite needs Node.js 20 (see .ci/run).")
        auto_ports = 0 in self._requested
        attempts = _START_ATTEMPTS if auto_ports else 1
        for attempt in range(1, attempts + 1):
            self._launch()
            try:
                self._wait_ready(timeout)
                return
            except AzuriteError:
                exited_early = self._proc is not None and self._proc.poll() is not None
                self.stop()
                if attempt == attempts or not exited_early:
                    raise

    def _launch(self) -> None:
        blob, queue, table = self._requested
        self.blob_port = blob or _free_port(self.host)
        self.queue_port = queue or _free_port(self.host)
        self.table_port = table or _free_port(self.host)
        args = [
            str(AZURITE_BIN),
            "--blobHost",
            self.host,
            "--queueHost",
            self.host,
            "--tableHost",
            self.host,
            "--blobPort",
            str(self.blob_port),
            "--queuePort",
            str(self.queue_port),
            "--tablePort",
            str(self.table_port),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ]
        if self.data_dir is None:
            args.append("--inMemoryPersistence")
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            args += ["--location", str(self.data_dir)]
        # A file rather than a pipe: nobody drains a pipe while Azurite runs, and a full pipe would block it.
        self._stderr = tempfile.TemporaryFile(prefix="azurite-stderr-")  # noqa: SIM115 (lives as long as Azurite)
        self._proc = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            start_new_session=True,  # own process group: stop() ends node and anything it spawned
        )

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        pending = {self.blob_port, self.queue_port, self.table_port}
        while pending:
            code = self._proc.poll()
            if code is not None:
                raise AzuriteError(f"Azurite exited with code {code} during start.{self._stderr_tail()}")
            pending = {port for port in pending if not _accepts(self.host, port)}
            if not pending:
                return
            if time.monotonic() > deadline:
                raise AzuriteError(
                    f"Azurite did not open ports {sorted(pending)} on {self.host} within {timeout:.0f} s."
                    f"{self._stderr_tail()}"
                )
            time.sleep(0.1)

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read()[-4000:].decode("utf-8", "replace").strip()
        return f"\nAzurite stderr:\n{text}" if text else "\nAzurite wrote nothing to stderr."

    def stop(self) -> None:
        """Terminate Azurite's process group (SIGTERM, then SIGKILL after a grace period)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            else:
                # Azurite itself is gone; its group may still hold children.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
