"""Optional: run_claude with the real Claude Code CLI against Tests/E2E/fake_anthropic.py.

Runs only with SESSIOND_E2E=1 (the CLI comes from Tests/E2E/fetch_claude.py, cached after the
first download).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO

from sessiond_client import run_claude

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.environ.get("SESSIOND_E2E") != "1", reason="set SESSIOND_E2E=1 to run"),
]

E2E = REPO / "Tests" / "E2E"


@pytest.fixture(scope="module")
def claude_bin():
    out = subprocess.run([sys.executable, str(E2E / "fetch_claude.py")], capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        pytest.fail(f"fetch_claude.py failed: {out.stderr[-2000:]}")
    return out.stdout.strip()


@pytest.fixture(scope="module")
def anthropic():
    sys.path.insert(0, str(E2E))
    sys.dont_write_bytecode = True  # leave no __pycache__ outside clients/python
    try:
        import fake_anthropic
    finally:
        sys.dont_write_bytecode = False

    srv, port = fake_anthropic.start_server(port=0)
    yield port
    srv.stop()


def cli_env(home, port):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE"))}
    env.update(
        HOME=str(home),
        ANTHROPIC_BASE_URL=f"http://127.0.0.1:{port}",
        ANTHROPIC_API_KEY="sk-fake",
        DISABLE_TELEMETRY="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
    )
    return env


def test_real_cli_resume_restore_and_recap(client, claude_bin, anthropic, tmp_path, key):
    work = tmp_path / "work"
    work.mkdir()
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    home_a.mkdir()
    home_b.mkdir()

    def turn(prompt, home, *extra):
        res = run_claude([claude_bin, "-p", prompt, *extra], key, client=client, cwd=str(work),
                         env=cli_env(home, anthropic), warn=lambda m: None)
        assert res.exit_code == 0, (res.stdout[-2000:], res.stderr[-2000:])
        return res

    first = turn("remember pineapple", home_a)
    assert first.ok and "pineapple" in first.result
    second = turn("what should you remember?", home_b)  # another machine: transcript restored
    assert second.ok and second.resume_id == first.session_id
    assert "pineapple" in second.result, second.result

    # A turn the CLI does not persist cannot be resumed: the next turn falls back to a recap.
    key2 = key + ":recap"
    r1 = run_claude([claude_bin, "-p", "remember mango", "--no-session-persistence"], key2, client=client,
                    cwd=str(work), env=cli_env(home_a, anthropic), warn=lambda m: None)
    assert r1.ok
    r2 = run_claude([claude_bin, "-p", "what should you remember?"], key2, client=client, cwd=str(work),
                    env=cli_env(home_a, anthropic), warn=lambda m: None)
    assert r2.resume_failed and r2.ok, (r2.result, r2.stderr[-1000:])
    assert "--resume" not in r2.args and "user: remember mango\n" in r2.recap
    assert r2.args[r2.args.index("-p") + 1] == r2.recap + "what should you remember?"
    # fake_anthropic only counts "remember <word>" in earlier messages and ambient context, not in
    # the last user message, where the recap is; so the answer itself is not checked here.
