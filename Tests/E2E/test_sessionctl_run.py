"""The real Claude Code CLI, a real sessiond and real sockets: `sessionctl run` keeps a conversation's
context across turns, registry crashes, lost transcripts, concurrent wrappers, failed resumes, expiry
and Ctrl-C."""
import signal
import time

from conftest import wait_until


def chain(machine, key):
    return machine.ctl("history", key)


def audit_actions(machine, key):
    return [entry["action"] for entry in machine.ctl("audit", key, "--limit", "500")["entries"]]


def test_two_turns_keep_context_and_the_second_resumes_the_first_id(machine):
    out, _ = machine.turn("e2e:two", "remember pineapple")
    assert out.strip() == "OK, I will remember pineapple."
    first_id = machine.ctl("show", "e2e:two")["cliSessionId"]

    out, err = machine.turn("e2e:two", "what should you remember?", "-v")
    assert out.strip() == "You asked me to remember pineapple."
    assert f"resuming {first_id}" in err
    session = machine.ctl("show", "e2e:two")
    assert session["cliSessionId"] == first_id
    assert session["turnCount"] == 2
    assert session["resumeSuccesses"] == 1
    assert session["costUsd"] > 0
    assert [link["reason"] for link in chain(machine, "e2e:two")] == ["created"]
    messages = machine.ctl("messages", "e2e:two")["messages"]
    assert [m["content"] for m in messages] == [
        "remember pineapple", "OK, I will remember pineapple.",
        "what should you remember?", "You asked me to remember pineapple."]
    assert "resume_ok" in audit_actions(machine, "e2e:two")


def test_registry_killed_between_turns_keeps_context(machine, registry):
    machine.turn("e2e:crash", "remember walnut")
    registry.kill()
    registry.start()
    out, err = machine.turn("e2e:crash", "what should you remember?", "-v")
    assert out.strip() == "You asked me to remember walnut."
    assert "resuming" in err
    assert machine.ctl("show", "e2e:crash")["turnCount"] == 2


def test_a_new_machine_restores_the_transcript_and_keeps_context(machine, new_machine):
    machine.turn("e2e:move", "remember lighthouse")
    other = new_machine()
    assert other.transcripts() == []
    out, err = other.turn("e2e:move", "what should you remember?", "-v")
    assert out.strip() == "You asked me to remember lighthouse."
    assert "restored the transcript" in err
    assert len(other.transcripts()) == 1
    # Back on the first machine, whose copy is now behind: it is refreshed and the conversation goes on.
    out, _ = machine.turn("e2e:move", "remember harbour")
    out, _ = other.turn("e2e:move", "what should you remember?")
    assert out.strip() == "You asked me to remember lighthouse, harbour."


def test_two_wrappers_on_one_key_take_turns(machine):
    # Each turn takes over a second at the fake model, so the two would overlap without the lease.
    first = machine.spawn("e2e:race", "sleep 1200ms remember alpha")
    second = machine.spawn("e2e:race", "sleep 1200ms remember beta")
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    out, _ = machine.turn("e2e:race", "what should you remember?")
    remembered = out.strip()
    assert remembered in ("You asked me to remember alpha, beta.", "You asked me to remember beta, alpha.")
    messages = [m["content"] for m in machine.ctl("messages", "e2e:race")["messages"]]
    # Each prompt is followed by its own answer: the turns did not interleave.
    assert len(messages) == 6
    for index in (0, 2):
        word = messages[index].split()[-1]
        assert messages[index + 1] == f"OK, I will remember {word}."
    # One conversation throughout: the later turns resumed the first turn's id.
    assert [link["reason"] for link in chain(machine, "e2e:race")] == ["created"]
    grants = [e for e in machine.ctl("audit", "e2e:race", "--action", "lease.grant")["entries"]]
    assert sorted(e["detail"]["fence"] for e in grants) == [1, 2, 3]
    # The CLI's own transcript has both turns, in order, and no interleaving.
    transcript = machine.transcripts()[0].read_text()
    assert transcript.index(messages[0]) < transcript.index(messages[2])


def test_resume_failure_falls_back_to_a_recap_and_three_in_a_row_make_it_non_resumable(machine):
    # Nothing stored anywhere: no transcript upload, and the local copy is wiped.
    machine.turn("e2e:fail", "remember mango", "--no-transcript")
    first_id = machine.ctl("show", "e2e:fail")["cliSessionId"]
    machine.wipe_transcripts()

    out, err = machine.turn("e2e:fail", "what should you remember?", "--no-transcript")
    assert "could not resume" in err and "recap" in err
    assert out.strip() == "You asked me to remember mango."
    links = chain(machine, "e2e:fail")
    assert [link["reason"] for link in links] == ["created", "fresh_after_failure"]
    new_id = links[-1]["cliSessionId"]
    assert new_id != first_id
    failures = machine.ctl("audit", "e2e:fail", "--action", "resume_failed")["entries"]
    assert failures[0]["detail"]["reason"] == "no_conversation_found"

    # The next turn resumes the new id.
    out, err = machine.turn("e2e:fail", "remember kiwi", "-v", "--no-transcript")
    assert f"resuming {new_id}" in err

    # Three failures in a row (policy fail: no fresh start) make the session non_resumable.
    for attempt in range(1, 4):
        machine.wipe_transcripts()
        machine.turn("e2e:fail", "hello", "--on-resume-failure", "fail", "--no-transcript", expect_exit=1)
        session = machine.ctl("show", "e2e:fail")
        assert session["consecutiveFailures"] == attempt
    assert session["status"] == "non_resumable"
    out, err = machine.turn("e2e:fail", "remember plum", "-v", "--no-transcript")
    assert "starting fresh (non_resumable)" in err
    assert out.strip() == "OK, I will remember plum."
    session = machine.ctl("show", "e2e:fail")
    assert session["status"] == "active"
    assert session["consecutiveFailures"] == 0
    assert [link["reason"] for link in chain(machine, "e2e:fail")][-1] == "fresh_after_failure"


def test_an_expired_session_starts_fresh_and_the_audit_log_says_why(machine):
    machine.turn("e2e:ttl", "remember acorn")
    machine.ctl("touch", "e2e:ttl", "--ttl", "1")
    time.sleep(1.5)
    out, err = machine.turn("e2e:ttl", "what should you remember?", "-v")
    assert "starting fresh (expired)" in err
    assert out.strip() == "I have nothing to remember."
    fresh = machine.ctl("audit", "e2e:ttl", "--action", "fresh_start")["entries"]
    assert fresh[0]["detail"]["cause"] == "expired"
    assert [link["reason"] for link in chain(machine, "e2e:ttl")] == ["created", "fresh_after_expiry"]


def test_ctrl_c_during_a_turn_releases_the_lease(machine):
    machine.turn("e2e:int", "remember cedar")
    wrapper = machine.spawn("e2e:int", "sleep 20000ms recall")
    # Wait until the CLI is running under the lease.
    assert wait_until(lambda: machine.ctl("show", "e2e:int").get("lease") is not None, timeout=30)
    time.sleep(1.5)
    wrapper.send_signal(signal.SIGINT)
    wrapper.communicate(timeout=60)
    assert machine.ctl("show", "e2e:int").get("lease") is None
    failed = machine.ctl("audit", "e2e:int", "--action", "turn.complete")["entries"][0]
    assert failed["outcome"] == "failed"
    # The next turn is not blocked (no waiting allowed) and still has the conversation.
    out, _ = machine.turn("e2e:int", "what should you remember?", "--wait", "0")
    assert "cedar" in out
