"""Fixtures for the end-to-end suite: the real Claude Code CLI, the fake Messages API, and a real
sessiond on loopback. Everything runs offline; only 127.0.0.1 is ever a target."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import fake_anthropic  # noqa: E402

SESSIOND = os.environ.get("SESSIOND_BIN", str(ROOT / ".build/debug/sessiond"))
SESSIONCTL = os.environ.get("SESSIONCTL_BIN", str(ROOT / ".build/debug/sessionctl"))


@pytest.fixture(scope="session")
def claude_bin():
    path = os.environ.get("SESSIOND_CLAUDE_BIN")
    if not path:
        path = subprocess.run([sys.executable, str(HERE / "fetch_claude.py")], check=True, capture_output=True,
                              text=True, timeout=900).stdout.strip()
    assert os.access(path, os.X_OK), path
    return path


@pytest.fixture(scope="session")
def fake_api():
    log = Path(tempfile.mkdtemp(prefix="fake-api-")) / "requests.jsonl"
    server, port = fake_anthropic.start_server(port=0, log_path=str(log))
    yield {"port": port, "log": log}
    server.stop()


class Registry:
    """A sessiond process on an ephemeral port, on a database that outlives restarts."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.db = directory / "registry.sqlite"
        self.process = None
        self.addr = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(
            [SESSIOND, "--listen", "127.0.0.1:0", "--db", str(self.db), "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=open(self.directory / "sessiond.log", "ab"), text=True)
        line = self.process.stdout.readline()
        assert line.startswith("LISTENING tcp "), f"sessiond did not start: {line!r}"
        self.addr = line.split()[2]

    def kill(self):
        """SIGKILL: no shutdown, no checkpoint."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def registry(tmp_path):
    reg = Registry(tmp_path)
    yield reg
    reg.stop()


class Machine:
    """One machine's view: its own HOME (so its own ~/.claude), a working directory, and the env that
    points the real CLI at the fake API and sessionctl at the registry."""

    def __init__(self, root: Path, registry: Registry, fake_api, claude: str, name: str = "m1",
                 workdir: Path = None):
        self.home = root / f"home-{name}"
        self.home.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir or (root / "work")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.registry = registry
        self.claude = claude
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{fake_api['port']}",
            "ANTHROPIC_API_KEY": "test-key",
            "DISABLE_TELEMETRY": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
        }

    def environment(self):
        return dict(self.env, SESSIOND_ADDR=self.registry.addr)

    def run_args(self, key, prompt, *options):
        return [SESSIONCTL, "run", "--key", key, *options, "--", self.claude, "-p", prompt]

    def turn(self, key, prompt, *options, expect_exit=0, timeout=180):
        """One `sessionctl run` turn; returns (stdout, stderr)."""
        done = subprocess.run(self.run_args(key, prompt, *options), cwd=self.workdir, env=self.environment(),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        if expect_exit is not None:
            assert done.returncode == expect_exit, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
        return done.stdout, done.stderr

    def spawn(self, key, prompt, *options):
        return subprocess.Popen(self.run_args(key, prompt, *options), cwd=self.workdir, env=self.environment(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ctl(self, *args):
        """A `sessionctl ... --json` command's document."""
        done = subprocess.run([SESSIONCTL, *args, "--json"], env=self.environment(), capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def transcripts(self):
        return list((self.home / ".claude" / "projects").glob("*/*.jsonl"))

    def wipe_transcripts(self):
        shutil.rmtree(self.home / ".claude" / "projects", ignore_errors=True)


@pytest.fixture
def machine(tmp_path, registry, fake_api, claude_bin):
    return Machine(tmp_path, registry, fake_api, claude_bin)


@pytest.fixture
def new_machine(tmp_path, registry, fake_api, claude_bin):
    """Another machine (its own HOME) sharing the registry and the working directory path."""
    counter = iter(range(2, 100))
    return lambda: Machine(tmp_path, registry, fake_api, claude_bin, name=f"m{next(counter)}")


def wait_until(predicate, timeout=30.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
