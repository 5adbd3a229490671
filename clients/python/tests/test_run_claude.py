"""run_claude() with a fake `claude` CLI (tests/fake_claude.py) against a real sessiond."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import HERE, SessiondProcess

from sessiond_client import ClaudeResumeFailed, Client, run_claude, transcript_path
from sessiond_client.claude import RECAP_HEAD


@pytest.fixture(scope="module")
def fake_cli(tmp_path_factory) -> str:
    """fake_claude.py as an executable whose shebang is this interpreter."""
    folder = tmp_path_factory.mktemp("fakecli")
    exe = folder / "claude"
    source = (HERE / "fake_claude.py").read_text(encoding="utf-8").split("\n", 1)[1]
    exe.write_text(f"#!{sys.executable}\n{source}", encoding="utf-8")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(exe)


class Env:
    """A working directory, HOME and invocation log for the fake CLI."""

    def __init__(self, root: Path, fake_cli: str) -> None:
        self.root = root
        self.cwd = root / "project dir"  # a space: sanitised to '-'
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.home = root / "home-a"
        self.home.mkdir(exist_ok=True)
        self.log = root / "calls.jsonl"
        self.cli = fake_cli

    def env(self, home=None, **extra):
        env = dict(os.environ)
        env.pop("CLAUDE_CONFIG_DIR", None)
        env.update(HOME=str(home or self.home), FAKE_CLAUDE_LOG=str(self.log))
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def calls(self):
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def transcript(self, cli_id, home=None):
        return Path(transcript_path(os.path.realpath(self.cwd), cli_id, {"HOME": str(home or self.home)}))


@pytest.fixture
def env(tmp_path, fake_cli):
    return Env(tmp_path, fake_cli)


def rc(env, client, key, prompt="hello", home=None, extra_env=None, **kw):
    return run_claude([env.cli, "-p", prompt], key, client=client, cwd=str(env.cwd),
                      env=env.env(home, **(extra_env or {})), warn=lambda m: None, **kw)


def lease_free(client, key):
    got = client.acquire(key, wait_ms=0)
    client.release(got["session"]["id"], got["lease"])
    return True


def test_two_turns_resume(client, env, key):
    first = rc(env, client, key, "remember pineapple")
    assert first.ok and first.exit_code == 0 and first.recorded
    assert first.result == "echo: remember pineapple (turn 1)"
    assert first.decision["action"] == "fresh" and first.resume_id is None
    assert first.cost_usd == pytest.approx(0.0125) and first.input_tokens == 11 and first.output_tokens == 7
    call = env.calls()[-1]
    assert "--resume" not in call["argv"] and call["format"] == "json" and call["prompt"] == "remember pineapple"
    assert call["cwd"] == os.path.realpath(env.cwd)
    sid1 = first.session_id

    second = rc(env, client, key, "what did I say?")
    assert second.ok and second.session_id == sid1 and second.resume_id == sid1
    assert second.result == "echo: what did I say? (turn 2)"  # context kept
    call = env.calls()[-1]
    assert call["resume"] == sid1 and not call["fork"]

    session = client.get(key=key)["session"]
    assert session["cliSessionId"] == sid1 and session["turnCount"] == 2 and session["messageCount"] == 4
    assert session["costUsd"] == pytest.approx(0.025) and session["tool"] == "claude"
    assert session["cwd"] == os.path.realpath(env.cwd)
    msgs = client.messages_list(session["id"])["messages"]
    assert [(m["role"], m["content"]) for m in msgs] == [
        ("user", "remember pineapple"), ("assistant", "echo: remember pineapple (turn 1)"),
        ("user", "what did I say?"), ("assistant", "echo: what did I say? (turn 2)")]
    local = env.transcript(sid1).read_bytes()
    assert client.transcript_read_all(session["id"], cli_session_id=sid1) == local
    assert session["transcriptBytes"] == len(local)
    assert lease_free(client, key)


def test_transcript_restored_on_new_home(client, env, key):
    first = rc(env, client, key, "remember kiwi")
    sid = first.session_id
    home_b = env.root / "home-b"
    home_b.mkdir()
    assert not env.transcript(sid, home_b).exists()
    second = rc(env, client, key, "recall", home=home_b)
    assert second.ok and second.session_id == sid
    assert second.result == "echo: recall (turn 2)"  # the restored transcript carried turn 1
    restored = env.transcript(sid, home_b).read_bytes()
    assert restored.startswith(env.transcript(sid).read_bytes())
    session = client.get(key=key)["session"]
    assert client.transcript_read_all(session["id"], cli_session_id=sid) == restored

    # A shorter local copy is replaced by the registry's longer one.
    home_c = env.root / "home-c"
    stale = env.transcript(sid, home_c)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(restored[:10])
    third = rc(env, client, key, "again", home=home_c)
    assert third.result == "echo: again (turn 3)"


def test_claude_config_dir_is_used(client, env, key):
    config = env.root / "cfg"
    first = rc(env, client, key, "one", extra_env={"CLAUDE_CONFIG_DIR": str(config)})
    path = Path(transcript_path(os.path.realpath(env.cwd), first.session_id, {"CLAUDE_CONFIG_DIR": str(config)}))
    assert path.exists() and str(path).startswith(str(config))


def test_resume_failure_falls_back_to_recap(client, env, key):
    first = rc(env, client, key, "remember mango", extra_env={"FAKE_CLAUDE_MODE": "no_transcript"})
    assert first.ok and not env.transcript(first.session_id).exists()
    second = rc(env, client, key, "what fruit?")
    assert second.resume_failed and second.ok and second.recorded
    assert second.session_id != first.session_id
    calls = env.calls()
    assert calls[-2]["resume"] == first.session_id  # the failed attempt
    fresh = calls[-1]
    assert fresh["resume"] is None
    assert fresh["prompt"].startswith(RECAP_HEAD)
    assert fresh["prompt"].endswith("[End of recap]\n\nwhat fruit?")
    assert "user: remember mango\n" in fresh["prompt"]
    assert second.recap and fresh["prompt"] == second.recap + "what fruit?"

    session = client.get(key=key)["session"]
    assert session["cliSessionId"] == second.session_id
    chain = client.history(session["id"])["chain"]
    assert [l["reason"] for l in chain] == ["created", "fresh_after_failure"]
    assert session["totalFailures"] == 1 and session.get("lastFailureReason") == "no_conversation_found"
    msgs = client.messages_list(session["id"])["messages"]
    assert msgs[-2]["content"] == "what fruit?"  # the prompt, not the recap, is stored
    assert lease_free(client, key)


def test_resume_failure_fresh_without_recap(client, env, key):
    rc(env, client, key, "one", extra_env={"FAKE_CLAUDE_MODE": "no_transcript"})
    second = rc(env, client, key, "two", on_resume_failure="fresh")
    assert second.resume_failed and second.ok and second.recap == ""
    assert env.calls()[-1]["prompt"] == "two"


def test_resume_failure_fail_mode(client, env, key):
    first = rc(env, client, key, "one", extra_env={"FAKE_CLAUDE_MODE": "no_transcript"})
    with pytest.raises(ClaudeResumeFailed) as info:
        rc(env, client, key, "two", on_resume_failure="fail")
    assert info.value.result.exit_code == 1 and "No conversation found" in info.value.result.stderr
    assert len(env.calls()) == 2  # no fresh retry
    session = client.get(key=key)["session"]
    assert session["cliSessionId"] == first.session_id and session["consecutiveFailures"] == 1
    assert lease_free(client, key)


def test_is_error_is_a_failure(client, env, key):
    res = rc(env, client, key, "x", extra_env={"FAKE_CLAUDE_MODE": "is_error"})
    assert res.exit_code == 0 and res.is_error and not res.ok
    assert res.session_id is None and res.result == "API Error: overloaded"
    session = client.get(key=key)["session"]
    assert "cliSessionId" not in session  # never record an id from an error result
    done = client.audit_list(session_id=session["id"], action="turn.complete")["entries"]
    assert done and done[0]["outcome"] == "failed"
    assert done[0]["detail"].get("reason") == "is_error (success): API Error: overloaded"
    assert lease_free(client, key)


@pytest.mark.parametrize("mode", ["crash", "garbage", "exit2"])
def test_cli_failures_release_the_lease(client, env, key, mode):
    res = rc(env, client, key, "x", extra_env={"FAKE_CLAUDE_MODE": mode})
    assert not res.ok and res.session_id is None
    if mode == "crash":
        assert res.exit_code < 0
    session = client.get(key=key)["session"]
    assert "cliSessionId" not in session
    assert lease_free(client, key)


def test_missing_executable_releases_and_raises(client, env, key):
    with pytest.raises(FileNotFoundError):
        run_claude([str(env.root / "no-such-claude"), "-p", "x"], key, client=client, cwd=str(env.cwd))
    assert lease_free(client, key)
    sid = client.get(key=key)["session"]["id"]
    done = client.audit_list(session_id=sid, action="turn.complete")["entries"]
    assert done[0]["detail"].get("reason") == "spawn_failed: ENOENT"


def test_failure_reason_is_recorded(client, env, key):
    rc(env, client, key, "x", extra_env={"FAKE_CLAUDE_MODE": "exit2"})
    sid = client.get(key=key)["session"]["id"]
    done = client.audit_list(session_id=sid, action="turn.complete")["entries"]
    assert done[0]["detail"].get("reason") == "exit_code_2: Error: something broke"


def test_output_formats(client, env, key):
    lines = []
    res = run_claude([env.cli, "-p", "streamed", "--output-format", "stream-json"], key, client=client,
                     cwd=str(env.cwd), env=env.env(), on_line=lines.append)
    assert res.ok and res.result == "echo: streamed (turn 1)"
    assert len(lines) == 3 and json.loads(lines[-1])["type"] == "result"
    assert env.calls()[-1]["format"] == "stream-json"

    res = run_claude([env.cli, "-p", "--verbose", "--output-format=json", "arr"], key, client=client,
                     cwd=str(env.cwd), env=env.env())
    assert res.ok and res.result == "echo: arr (turn 2)" and res.stdout.startswith("[")

    res = run_claude([env.cli, "--output-format", "text", "-p", "plain"], key, client=client,
                     cwd=str(env.cwd), env=env.env())
    assert res.ok and res.result == "echo: plain (turn 3)"
    argv = env.calls()[-1]["argv"]
    assert argv.count("--output-format") == 1 and argv[argv.index("--output-format") + 1] == "json"


def test_prompt_from_stdin(client, env, key):
    res = run_claude([env.cli, "-p"], key, client=client, cwd=str(env.cwd), env=env.env(), input="from stdin")
    assert res.ok and res.result == "echo: from stdin (turn 1)"
    msgs = client.messages_list(client.get(key=key)["session"]["id"])["messages"]
    assert msgs[0]["content"] == "from stdin"


def test_history_disabled(client, env, key):
    rc(env, client, key, "secret", history=False)
    assert client.get(key=key)["session"]["messageCount"] == 0


def test_fork(client, env, key):
    parent = rc(env, client, key, "remember plum")
    child = rc(env, client, key, "and then?", fork=True)
    assert child.key.startswith(key + ":fork:") and len(child.key) == len(key) + len(":fork:") + 8
    assert child.ok and child.session_id != parent.session_id
    assert child.result == "echo: and then? (turn 2)"  # the fork carries the parent's context
    call = env.calls()[-1]
    assert call["resume"] == parent.session_id and call["fork"] is True
    child_session = client.get(key=child.key)["session"]
    assert child_session["parentId"] == client.get(key=key)["session"]["id"]
    assert child_session["cliSessionId"] == child.session_id
    chain = client.history(child_session["id"])["chain"]
    assert chain[-1]["reason"] == "forked"
    # The fork's transcript is stored whole (a new id starts at offset 0).
    local = env.transcript(child.session_id).read_bytes()
    assert client.transcript_read_all(child_session["id"], cli_session_id=child.session_id) == local
    named = rc(env, client, key, "named", fork=True, fork_key=key + ":mine")
    assert named.key == key + ":mine" and named.ok


def test_fork_restores_parent_transcript_on_new_home(client, env, key):
    parent = rc(env, client, key, "remember fig")
    home_b = env.root / "home-fork"
    home_b.mkdir()
    child = rc(env, client, key, "recall", home=home_b, fork=True)
    assert child.ok and child.result == "echo: recall (turn 2)", (child.stderr, child.warnings)
    assert env.transcript(parent.session_id, home_b).exists()


def test_default_key_is_cwd(client, env, monkeypatch):
    monkeypatch.delenv("SESSIOND_KEY", raising=False)
    res = run_claude([env.cli, "-p", "k"], client=client, cwd=str(env.cwd), env=env.env())
    assert res.key == f"cwd:{os.path.realpath(env.cwd)}"
    monkeypatch.setenv("SESSIOND_KEY", "from-env:" + str(env.root))
    res = run_claude([env.cli, "-p", "k"], client=client, cwd=str(env.cwd), env=env.env())
    assert res.key == "from-env:" + str(env.root)


def test_holder_names_the_client(client, server, env, key):
    seen = {}

    def peek():
        time.sleep(0.4)
        with Client(server.addr, timeout=5) as other:
            try:
                other.acquire(key)
            except Exception as exc:  # noqa: BLE001
                seen["err"] = exc

    th = threading.Thread(target=peek)
    th.start()
    rc(env, client, key, "slow", extra_env={"FAKE_CLAUDE_SLEEP": "1"})
    th.join()
    holder = seen["err"].data["holder"]
    assert holder.startswith("pytest@") and holder.endswith(f" pid {os.getpid()}")


def test_waits_for_a_held_lease(client, server, env, key):
    a = client.acquire(key)
    threading.Timer(0.5, lambda: client.release(a["session"]["id"], a["lease"])).start()
    with Client(server.addr, timeout=5) as other:
        t0 = time.monotonic()
        res = rc(env, other, key, "after wait", wait=10)
        assert res.ok and time.monotonic() - t0 >= 0.4


def test_registry_gone_mid_turn(env, key):
    proc = SessiondProcess()
    try:
        client = Client(proc.addr, timeout=3)
        warnings = []
        killer = threading.Timer(0.5, proc.stop)
        killer.start()
        res = run_claude([env.cli, "-p", "survive"], key, client=client, cwd=str(env.cwd),
                         env=env.env(FAKE_CLAUDE_SLEEP="1.5"), warn=warnings.append)
        killer.join()
        assert res.ok and res.result == "echo: survive (turn 1)"  # the CLI's result still comes back
        assert not res.recorded and res.warnings == warnings
        assert any("could not record" in w and res.session_id in w for w in warnings), warnings
        client.close()
    finally:
        proc.cleanup()


def test_own_client_from_addr(server, env, key):
    res = run_claude([env.cli, "-p", "own"], key, addr=server.addr, client_name="rc-test",
                     cwd=str(env.cwd), env=env.env())
    assert res.ok and res.recorded
