"""Helpers for the reliability harnesses: start/stop/kill a real sessiond, sample its RSS, talk raw
frames to it, and measure a well-behaved client's latency from a separate process.

(They live here rather than in conftest.py so that `from reliability import …` cannot pick up another
directory's conftest module when several suites are collected in one pytest run.)

Mode: ``SESSIOND_RELIABILITY=full`` runs the full (long) mode; anything else runs the short mode,
which is what every CI run executes. Only loopback is ever a target, and every load is bounded in
count and in time.
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "clients" / "python"))
sys.path.insert(0, str(HERE))

MODE = "full" if os.environ.get("SESSIOND_RELIABILITY", "").strip().lower() == "full" else "short"
FULL = MODE == "full"


def sessiond_bin() -> str:
    """$SESSIOND_BIN; else the debug build, except that full mode prefers a release build that is at
    least as new (its latency figures at thousands of connections measure sessiond, not the debug
    build's ~10x cost per event)."""
    explicit = os.environ.get("SESSIOND_BIN")
    if explicit:
        return explicit
    debug = ROOT / ".build/debug/sessiond"
    release = ROOT / ".build/release/sessiond"
    if FULL and release.exists() and (not debug.exists() or release.stat().st_mtime >= debug.stat().st_mtime):
        return str(release)
    return str(debug)


def pick(short, full):
    """The short-mode value, or the full-mode one."""
    return full if FULL else short


def report(line: str) -> None:
    """Prints a figure line so that it shows with `pytest -s` and in the captured output, and appends
    it to $SESSIOND_RELIABILITY_REPORT when set."""
    print(line, flush=True)
    path = os.environ.get("SESSIOND_RELIABILITY_REPORT")
    if path:
        with open(path, "a") as handle:
            handle.write(line + "\n")


def raise_nofile(wanted: int) -> int:
    """Raises the soft RLIMIT_NOFILE of this process towards ``wanted`` (up to the hard limit);
    returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _raise_child_nofile() -> None:  # pragma: no cover - runs in the child
    # Die with the test process, so that no sessiond outlives an interrupted run.
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# -- sessiond processes ---------------------------------------------------------------------------


class StartupFailed(Exception):
    def __init__(self, returncode: Optional[int], stderr: str, elapsed: float):
        super().__init__(f"sessiond did not start (exit {returncode}) after {elapsed:.1f}s: {stderr[-2000:]}")
        self.returncode = returncode
        self.stderr = stderr
        self.elapsed = elapsed


class Sessiond:
    """One sessiond process on an ephemeral loopback port, on a database that outlives restarts.

    ``args`` are extra flags (e.g. ``["--synchronous", "full"]``). ``preexec`` runs in the child
    before exec (e.g. to drop privileges). ``env`` adds variables to the inherited environment."""

    def __init__(self, directory: Path, db: Optional[Path] = None, args: Sequence[str] = (),
                 log_level: str = "warning", preexec=None, name: str = "sessiond",
                 env: Optional[Dict[str, str]] = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.db = Path(db) if db else self.directory / "registry.sqlite"
        self.args = list(args)
        self.log_level = log_level
        self.preexec = preexec
        self.env = {**os.environ, **env} if env else None
        self.log_path = self.directory / f"{name}.log"
        self.process: Optional[subprocess.Popen] = None
        self.addr: Optional[str] = None
        self.host: Optional[str] = None
        self.port: Optional[int] = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> List[str]:
        return [sessiond_bin(), "--listen", "127.0.0.1:0", "--db", str(self.db), "--log-level", self.log_level,
                *self.args]

    def start(self, timeout: float = 30.0) -> "Sessiond":
        """Starts sessiond and waits for its LISTENING line; raises StartupFailed when it exits first."""
        started = time.monotonic()
        log = open(self.log_path, "ab")
        log.write(f"\n=== start #{self.starts + 1} at {time.time():.3f}: {' '.join(self.command())}\n".encode())
        log.flush()
        offset = log.tell()

        def preexec():
            _raise_child_nofile()
            if self.preexec:
                self.preexec()

        self.process = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                        preexec_fn=preexec, close_fds=True, env=self.env)
        log.close()
        self.starts += 1
        line = _readline_with_timeout(self.process, timeout)
        if not line.startswith("LISTENING tcp "):
            try:
                self.process.wait(timeout=max(1.0, timeout - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            stderr = self.log_path.read_bytes()[offset:].decode("utf-8", "replace")
            raise StartupFailed(self.process.returncode, stderr, time.monotonic() - started)
        self.addr = line.split()[2]
        host, port = self.addr.rsplit(":", 1)
        self.host, self.port = host, int(port)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no checkpoint."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 20.0) -> Optional[int]:
        """SIGTERM, then SIGKILL if it does not exit in ``timeout``; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return None
        return self.process.returncode

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def client(self, **kwargs):
        from sessiond_client import Client
        return Client(self.addr, token=kwargs.pop("token", ""), **kwargs)


def _readline_with_timeout(process: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    fd = process.stdout.fileno()
    buf = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            if b"\n" in buf:
                return buf.split(b"\n", 1)[0].decode(errors="replace")
        elif process.poll() is not None:
            break
    return buf.decode(errors="replace")


# -- RSS ------------------------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    """VmRSS of a process in KiB, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Samples a process's VmRSS every ``interval`` seconds in a thread; ``peak_kb`` is the highest."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid = pid
        self.interval = interval
        self.samples: List[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(rss_kb(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def peak_kb(self) -> int:
        return max(self.samples) if self.samples else 0


# -- raw frames -----------------------------------------------------------------------------------


def frame(payload) -> bytes:
    """A frame: 4-byte big-endian length, then the payload (a dict/list is JSON-encoded, str is UTF-8)."""
    if isinstance(payload, (dict, list)):
        payload = json.dumps(payload, separators=(",", ":"))
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return struct.pack(">I", len(payload)) + payload


def request(id, method, params=None) -> Dict[str, Any]:
    message: Dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return message


class RawConn:
    """A blocking TCP connection that speaks raw frames, for inputs no client library would send."""

    def __init__(self, addr: str, timeout: float = 10.0, source: Optional[str] = None):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, payload) -> None:
        self.sock.sendall(frame(payload))

    def _fill(self, want: int, deadline: float) -> bool:
        while len(self.buf) < want:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.eof = True
                return False
            self.buf += chunk
        return True

    def recv_frame(self, timeout: float = 10.0) -> Optional[Dict[str, Any]]:
        """The next frame decoded as JSON, or None on timeout or end of stream."""
        deadline = time.monotonic() + timeout
        if not self._fill(4, deadline):
            return None
        (length,) = struct.unpack(">I", self.buf[:4])
        if not self._fill(4 + length, deadline):
            return None
        payload, self.buf = self.buf[4:4 + length], self.buf[4 + length:]
        return json.loads(payload.decode("utf-8"))

    def call(self, id, method, params=None, timeout: float = 10.0) -> Optional[Dict[str, Any]]:
        self.send_frame(request(id, method, params))
        return self.recv_frame(timeout)

    def frames_until_close(self, timeout: float = 10.0) -> List[Dict[str, Any]]:
        frames = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if got is None:
                break
            frames.append(got)
        return frames

    def wait_close(self, timeout: float = 10.0) -> bool:
        """True when the server closes the connection within ``timeout`` (frames meanwhile are dropped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.eof:
                return True
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                self.eof = True
                return True
            self.buf += chunk
        return self.eof

    def half_close(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def reason(response: Optional[Dict[str, Any]]) -> Optional[str]:
    if not response or "error" not in response:
        return None
    return ((response["error"] or {}).get("data") or {}).get("reason")


def assert_serving(server: Sessiond, token: str = "") -> None:
    """A fresh well-behaved client can connect and get a health and a session.get answer."""
    from sessiond_client import NotFound
    with server.client(token=token, timeout=15) as client:
        assert client.health()["status"] == "ok"
        try:
            client.get(key="reliability:serving-check")
        except NotFound:
            pass


# -- latency probe --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100.0 * (len(ordered) - 1)))))
    return ordered[index]


class Probe:
    """A well-behaved client in its own process (so that the attacker's Python threads cannot skew
    it through the GIL): one connection, a `session.get` of a tiny key every ``interval`` seconds,
    each latency recorded with its CLOCK_MONOTONIC start time. Windows are cut afterwards."""

    def __init__(self, addr: str, directory: Path, token: str = "", interval: float = 0.005, name: str = "probe"):
        self.out = Path(directory) / f"{name}.txt"
        self.err = Path(directory) / f"{name}.err"
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "probe.py"), addr, str(self.out), str(interval), token],
            stdout=subprocess.PIPE, stderr=open(self.err, "wb"), stdin=subprocess.DEVNULL)
        line = _readline_with_timeout(self.process, 20)
        assert line.startswith("READY"), f"probe did not start: {line!r} {self.err.read_text(errors='replace')}"

    def samples(self):
        rows = []
        try:
            text = self.out.read_text()
        except FileNotFoundError:
            return rows
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3:
                rows.append((float(parts[0]), float(parts[1]), parts[2]))
        return rows

    def window(self, start: float, end: float):
        """(latencies in ms, errors) of the calls started in [start, end)."""
        lat, errors = [], 0
        for t, ms, status in self.samples():
            if start <= t < end:
                if status == "ok":
                    lat.append(ms)
                else:
                    errors += 1
        return lat, errors

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class LatencyError(AssertionError):
    """The well-behaved client's p99 during an attack exceeded 2x its idle baseline (+ slack)."""


def latency_retry(test):
    """Runs a measured test once more (on a fresh sessiond) when only its latency check failed: the
    2-core CI machines are shared, and a burst of unrelated load during one attack window is not a
    server regression. A real regression fails both runs; both runs' figures are printed."""
    import functools

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        try:
            return test(*args, **kwargs)
        except LatencyError as first:
            report(f"adversarial: latency check failed once ({first}); measuring again")
            return test(*args, **kwargs)

    return wrapper


P99_FACTOR = 2.0
P99_SLACK_MS = float(os.environ.get("SESSIOND_RELIABILITY_P99_SLACK_MS", "5"))


class Measured:
    """Runs a probe and an RSS sampler around an attack, and checks the figures afterwards."""

    def __init__(self, name: str, server: Sessiond, directory: Path, token: str = "",
                 baseline_seconds: Optional[float] = None, after_baseline: bool = True):
        self.name = name
        self.after_baseline = after_baseline
        self.server = server
        self.directory = Path(directory)
        self.token = token
        self.baseline_seconds = baseline_seconds if baseline_seconds is not None else pick(1.5, 3.0)

    def __enter__(self) -> "Measured":
        self.probe = Probe(self.server.addr, self.directory, token=self.token, name=f"probe-{self.name}")
        time.sleep(0.3)  # warm-up, not counted
        self.rss_before_kb = self.server.rss_kb()
        self.baseline_start = time.monotonic()
        time.sleep(self.baseline_seconds)
        self.baseline_end = time.monotonic()
        self.sampler = RssSampler(self.server.pid).__enter__()
        self.attack_start = time.monotonic()
        self.phases = [("attack", self.attack_start)]
        return self

    def phase(self, name: str) -> None:
        """Starts a named phase of the attack (reported separately; the check covers all of them)."""
        self.phases.append((name, time.monotonic()))

    def attack_done(self) -> None:
        self.attack_end = time.monotonic()

    def __exit__(self, exc_type, exc, tb) -> None:
        if not hasattr(self, "attack_end"):
            self.attack_end = time.monotonic()
        self.sampler.__exit__(None, None, None)
        # A second idle baseline after the attack (the machine's background load may have changed):
        # the attack is compared with the higher of the two.
        self.after_start = time.monotonic() + 0.3
        if exc_type is None and self.after_baseline and self.server.alive():
            time.sleep(0.3 + self.baseline_seconds)
        self.after_end = time.monotonic()
        self.probe.stop()
        self.base, base_errors = self.probe.window(self.baseline_start, self.baseline_end)
        self.after, _ = self.probe.window(self.after_start, self.after_end)
        self.during, self.during_errors = self.probe.window(self.attack_start, self.attack_end)
        self.base_errors = base_errors
        self.peak_kb = max(self.sampler.peak_kb, self.rss_before_kb)
        try:
            self.rss_after_kb = self.server.rss_kb()
        except FileNotFoundError:
            self.rss_after_kb = -1
        self.p99_before = percentile(self.base, 99)
        self.p99_after = percentile(self.after, 99) if len(self.after) >= 50 else float("nan")
        self.p99_base = max(self.p99_before, self.p99_after) if self.p99_after == self.p99_after else self.p99_before
        self.p99_during = percentile(self.during, 99)
        self.ratio = self.p99_during / self.p99_base if self.base and self.p99_base > 0 else float("nan")
        phase_text = ""
        if len(self.phases) > 1:
            bounds = self.phases[1:] + [("end", self.attack_end)]
            parts = []
            for (name, start), (_, end) in zip(bounds, bounds[1:]):
                lat, _ = self.probe.window(start, end)
                parts.append(f"{name}:{percentile(lat, 99):.2f}ms/{len(lat)}")
            phase_text = " p99_by_phase=" + ",".join(parts)
        report(f"adversarial: case={self.name} rss_before={self.rss_before_kb // 1024}MB "
               f"rss_peak={self.peak_kb // 1024}MB rss_after={self.rss_after_kb // 1024}MB "
               f"p99_idle_before={self.p99_before:.2f}ms p99_idle_after={self.p99_after:.2f}ms "
               f"p99_attack={self.p99_during:.2f}ms ratio={self.ratio:.2f} "
               f"probe_calls={len(self.base)}/{len(self.during)}/{len(self.after)} probe_errors={self.during_errors} "
               f"attack_seconds={self.attack_end - self.attack_start:.1f}{phase_text}")

    def check(self, max_growth_mb: float = 200.0) -> None:
        """RSS growth bounded, probe never failed, p99 within 2x (+ slack) of the idle baseline."""
        assert self.server.alive(), "sessiond died during the attack:\n" + self.server.log_text()[-3000:]
        growth_mb = (self.peak_kb - self.rss_before_kb) / 1024
        assert growth_mb < max_growth_mb, f"{self.name}: RSS grew by {growth_mb:.0f} MB (limit {max_growth_mb})"
        assert self.during_errors == 0 and self.base_errors == 0, f"{self.name}: the well-behaved client saw errors"
        assert len(self.during) >= 20, f"{self.name}: the well-behaved client made only {len(self.during)} calls"
        limit = P99_FACTOR * self.p99_base + P99_SLACK_MS
        if not self.p99_during <= limit:
            raise LatencyError(
                f"{self.name}: well-behaved p99 {self.p99_during:.2f} ms > 2 x idle {self.p99_base:.2f} ms + "
                f"{P99_SLACK_MS} ms (idle before {self.p99_before:.2f}, after {self.p99_after:.2f})")


def file_fingerprint(path: Path):
    """(size, mtime_ns, sha256) of a file, to prove it was not replaced or rewritten."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()
