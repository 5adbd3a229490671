"""Shared fixtures: a real sessiond per test module, and helpers.

The server binary is ``$SESSIOND_BIN``, default ``<repo>/.build/debug/sessiond``. Tests that need
it are skipped (with the reason) when it does not exist; a binary that exists but does not start
is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Optional

import pytest

HERE = Path(__file__).resolve().parent
PKG_ROOT = HERE.parent
REPO = PKG_ROOT.parent.parent
sys.path.insert(0, str(PKG_ROOT))  # run the tests without installing the package
sys.path.insert(0, str(HERE))

START_TIMEOUT = 30.0


def sessiond_bin() -> Path:
    return Path(os.environ.get("SESSIOND_BIN") or REPO / ".build" / "debug" / "sessiond")


class SessiondProcess:
    """A sessiond child process listening on 127.0.0.1:<ephemeral> (and a Unix socket if asked)."""

    def __init__(self, unix: bool = False, extra_args: Optional[List[str]] = None) -> None:
        binary = sessiond_bin()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            pytest.skip(f"sessiond binary not found at {binary} (set SESSIOND_BIN or build it)")
        # Short path: Unix socket paths are limited to ~107 bytes.
        self.dir = tempfile.mkdtemp(prefix="sdpy-")
        self.db = os.path.join(self.dir, "db.sqlite")
        self.unix_path: Optional[str] = os.path.join(self.dir, "s.sock") if unix else None
        self.log_path = os.path.join(self.dir, "sessiond.log")
        cmd = [str(binary), "--listen", "127.0.0.1:0", "--db", self.db]
        if self.unix_path:
            cmd += ["--unix", self.unix_path]
        cmd += extra_args or []
        self.cmd = cmd
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, SWIFT_BACKTRACE="enable=no")
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, cwd=self.dir, env=env
        )
        self.tcp_addr: Optional[str] = None
        self.unix_addr: Optional[str] = None
        self.stdout_lines: List[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT) or self.tcp_addr is None or (unix and self.unix_addr is None):
            self.stop()
            pytest.fail(
                f"sessiond did not print its LISTENING lines within {START_TIMEOUT} s\n"
                f"command: {' '.join(cmd)}\nstdout: {self.stdout_lines!r}\nlog:\n{self.log()[-4000:]}"
            )

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:  # keep draining: stdout must never block the server
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stdout_lines.append(line)
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0] == "LISTENING":
                if parts[1] == "tcp":
                    self.tcp_addr = parts[2]
                elif parts[1] == "unix":
                    self.unix_addr = parts[2]
            if self.tcp_addr and (self.unix_path is None or self.unix_addr):
                self._ready.set()
        self._ready.set()

    @property
    def addr(self) -> str:
        assert self.tcp_addr is not None
        return self.tcp_addr

    @property
    def host_port(self):
        host, port = self.addr.rsplit(":", 1)
        return host, int(port)

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    """A fresh sessiond (no auth) for the test module, with a TCP and a Unix listener."""
    proc = SessiondProcess(unix=True)
    yield proc
    proc.cleanup()


@pytest.fixture
def client(server):
    from sessiond_client import Client

    with Client(server.addr, client_name="pytest", timeout=10) as c:
        yield c


_counter = [0]


@pytest.fixture
def key(request) -> str:
    """A session key unique to the test."""
    _counter[0] += 1
    return f"test:{request.node.name}:{os.getpid()}:{_counter[0]}:{time.monotonic_ns()}"
