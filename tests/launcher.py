"""Run `payswitch serve` as a child process: for the crash tests and the benchmarks.

The child gets a session of its own, and every process it starts (Ray's GCS, raylet and the
shard workers included) stays in that session, so `kill_session` can kill -9 all of them at
once: the same as the machine losing power under the switch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

PORT_TRIES = 3


def free_port() -> int:
    """A port nobody listens on now (another process may take it before it is bound)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SwitchProcess:
    def __init__(self, data_dir: Path, port: int, shards: int, log_path: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = port
        self.shards = shards
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self.operator_key = ""
        self._http: httpx.Client | None = None

    @property
    def url(self) -> str:
        scheme = "https" if "PAYSWITCH_SERVER_TLS_CERT" in self.extra_env else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self, ready_timeout_s: float = 120) -> SwitchProcess:
        """Start and wait until ready. A port taken between its choice and the switch's bind
        (Ray's own processes take ports too) is chosen again, up to twice."""
        for attempt in range(PORT_TRIES):
            told_before = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                return self._start(ready_timeout_s)
            except RuntimeError:
                with self.log_path.open("rb") as told:
                    told.seek(told_before)
                    taken = b"address already in use" in told.read()
                if not taken or attempt == PORT_TRIES - 1:
                    raise
                self.kill_session()
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start(self, ready_timeout_s: float) -> SwitchProcess:
        inherited = os.environ.items()
        env = {k: v for k, v in inherited if not k.startswith(("RAY_ADDRESS", "PAYSWITCH_"))}
        env.update(self.extra_env)
        self._log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "switch.cli", "serve", "--data-dir", str(self.data_dir),
             "--port", str(self.port), "--shards", str(self.shards)],
            stdout=self._log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        self.wait_ready(ready_timeout_s)
        return self

    @property
    def headers(self) -> dict[str, str]:
        """The operator's key, as every request but /healthz and /readyz needs it."""
        return {"Authorization": f"Bearer {self.operator_key}"}

    def client(self, timeout_s: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout_s,
                            verify=False)  # a test's self-signed certificate

    @property
    def http(self) -> httpx.Client:
        """A client with the operator's key, for the switch as it runs now."""
        if self._http is None or self._http.headers.get("authorization") != \
                self.headers["Authorization"]:
            self._http = self.client()
        return self._http

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        key_file = self.data_dir / "operator.key"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"switch exited with {code}; see {self.log_path}")
            try:
                ready = httpx.get(self.url + "/readyz", timeout=2,
                                  verify=False).status_code == 200
                if ready:  # (a first start wrote the key file before it served)
                    self.operator_key = key_file.read_text().strip() \
                        if key_file.exists() else ""  # a copy made without its key file
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"switch not ready after {timeout_s} s; see {self.log_path}")

    def session_pids(self) -> list[int]:
        assert self.process is not None
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.getsid(int(entry)) == self.process.pid and not _is_zombie(entry):
                        pids.append(int(entry))
                except (ProcessLookupError, PermissionError, FileNotFoundError):
                    continue
        return pids

    def kill_session(self, timeout_s: float = 30) -> None:
        """kill -9 every process of the switch's session, and wait until all are gone."""
        deadline = time.monotonic() + timeout_s
        assert self.process is not None
        while pids := self.session_pids():
            self.process.poll()  # reap our own child as soon as it dies
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            assert time.monotonic() < deadline, f"processes survived kill -9: {pids}"
            time.sleep(0.05)
        self._reap()

    def stop(self, timeout_s: float = 60) -> int:
        """Ctrl-C, as an operator would; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=timeout_s)
        finally:
            self.kill_session()
        return code

    def _reap(self) -> None:
        if self.process is not None:
            self.process.wait(timeout=30)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _is_zombie(pid: str) -> bool:
    """A dead process not yet reaped still shows in /proc; it holds no locks or memory."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
