"""The product as users run it: `meterworks serve` in a process of its own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from bench.load import process_tree

STARTUP_SECONDS = 60.0


def meterworks_command() -> str:
    """The `meterworks` script installed beside this interpreter."""
    beside = Path(sys.executable).parent / "meterworks"
    return str(beside) if beside.exists() else "meterworks"


def server_environment() -> dict[str, str]:
    env = dict(os.environ)
    # The billing scheduler would compete with the load for the same cores.
    env["METERWORKS_SCHEDULER_ENABLED"] = "false"
    return env


def create_key(db_url: str, org: str) -> str:
    """`meterworks keys create`: the token is the last line of its output."""
    done = subprocess.run(
        [meterworks_command(), "keys", "create", "--db", db_url, "--org", org, "--name", "bench"],
        capture_output=True,
        text=True,
        env=server_environment(),
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"meterworks keys create failed:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def status_kib(pid: int, field: str) -> int:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except FileNotFoundError:
        return 0  # gone since it was listed
    for line in lines:
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


class ServerProcess:
    """`meterworks serve --db URL --port P`, started and awaited on /healthz; stopped on exit."""

    def __init__(self, db_url: str, log_path: Path) -> None:
        self.db_url = db_url
        self.log_path = log_path
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def __enter__(self) -> ServerProcess:
        # Another process may take the probed port before the server binds it: try a few.
        for _ in range(5):
            self.port = _free_port()
            with self.log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    [meterworks_command(), "serve", "--db", self.db_url, "--port", str(self.port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=server_environment(),
                )
            if self._wait_healthy():
                return self
            self._stop()
        raise RuntimeError(f"meterworks serve did not become healthy; see {self.log_path}")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()

    def _wait_healthy(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        with httpx.Client(base_url=self.base_url, timeout=5) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    return False
                try:
                    if client.get("/healthz").status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        return False

    def peak_rss_kib(self) -> int:
        """The server's peak resident memory so far (VmHWM), in KiB, summed over its processes."""
        return sum(status_kib(pid, "VmHWM") for pid in process_tree(self.pid))

    def rss_kib(self) -> int:
        return sum(status_kib(pid, "VmRSS") for pid in process_tree(self.pid))

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
