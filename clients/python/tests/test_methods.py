"""Every protocol method through the synchronous client, against a real sessiond."""

from __future__ import annotations

import datetime as dt

import pytest

from sessiond_client import (
    Client,
    Conflict,
    InvalidParams,
    LeaseHeld,
    MethodNotFound,
    NotFound,
    SessiondError,
    StaleLease,
)
from sessiond_client._wire import parse_time


def test_hello_and_health(client, server):
    info = client.server_info
    assert info is not None
    assert info["protocolVersion"] == 1
    assert info["tenant"] == "local" and info["admin"] is True and info["authRequired"] is False
    assert info["maxFrameBytes"] >= 1024 and info["maxInFlight"] >= 1
    assert isinstance(info["server"]["name"], str)
    again = client.hello("pytest-again", version="9")
    assert again["tenant"] == "local"
    health = client.health()
    assert health["status"] == "ok"
    assert health["connections"] >= 1 and health["uptimeSeconds"] >= 0
    assert isinstance(health["version"], str) and "schemaVersion" in health


def test_client_without_hello(server):
    with Client(server.addr, hello=False, timeout=5) as c:
        assert c.server_info is None
        assert c.health()["status"] == "ok"
        with pytest.raises(NotFound):
            c.get(key="no-such-key")


def test_full_turn_cycle(client, key):
    first = client.acquire(key, tool="claude", cwd="/tmp/x", holder="me", lease_seconds=60,
                           metadata={"a": 1}, labels=["l1"])
    assert first["created"] is True
    assert first["decision"]["action"] == "fresh" and first["decision"].get("reason") == "new"
    lease = first["lease"]
    assert isinstance(lease["token"], str) and isinstance(lease["fence"], int) and lease["holder"] == "me"
    session = first["session"]
    assert session["key"] == key and session["tool"] == "claude" and session["cwd"] == "/tmp/x"
    assert session["status"] == "active" and session["metadata"] == {"a": 1} and session["labels"] == ["l1"]
    assert "cliSessionId" not in session
    assert session["lease"]["holder"] == "me" and "token" not in session["lease"]
    sid = session["id"]

    done = client.complete(
        sid, lease, "ok", cli_session_id="cli-1", cost_usd=0.5, input_tokens=10, output_tokens=3,
        messages=[{"role": "user", "content": "hi"}, ("assistant", "hello")],
    )
    assert done["chainExtended"] is True
    s = done["session"]
    assert s["cliSessionId"] == "cli-1" and s["turnCount"] == 1 and s["messageCount"] == 2
    assert s["costUsd"] == pytest.approx(0.5) and s["inputTokens"] == 10 and s["outputTokens"] == 3
    assert "lease" not in s and "lease" not in done

    second = client.acquire(key)
    assert second["created"] is False
    assert second["decision"] == {"action": "resume", "cliSessionId": "cli-1", "fork": False} or (
        second["decision"]["action"] == "resume" and second["decision"]["cliSessionId"] == "cli-1"
        and not second["decision"].get("fork")
    )
    assert second["lease"]["fence"] > lease["fence"]
    with pytest.raises(StaleLease):
        client.complete(sid, lease, "ok", cli_session_id="cli-x")  # the old lease
    renewed = client.renew(sid, second["lease"], lease_seconds=120)["lease"]
    assert renewed["token"] == second["lease"]["token"] and renewed["fence"] == second["lease"]["fence"]
    assert parse_time(renewed["expiresAt"]) > dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=100)
    done2 = client.complete(sid, renewed, "ok", cli_session_id="cli-1")
    assert done2["chainExtended"] is False and done2["session"]["turnCount"] == 2
    assert done2["session"]["resumeSuccesses"] >= 1

    third = client.acquire(key)
    assert client.release(sid, third["lease"]) == {"released": True}
    with pytest.raises(StaleLease):
        client.renew(sid, third["lease"])


def test_lease_held(client, server, key):
    got = client.acquire(key, holder="first holder")
    with Client(server.addr, timeout=5) as other:
        with pytest.raises(LeaseHeld) as info:
            other.acquire(key)
        err = info.value
        assert err.reason == "lease_held" and err.code == -32002
        assert err.data["holder"] == "first holder" and "expiresAt" in err.data
    client.release(got["session"]["id"], got["lease"])


def test_resume_failed_and_error_outcomes(client, key):
    a = client.acquire(key)
    sid = a["session"]["id"]
    client.complete(sid, a["lease"], "ok", cli_session_id="c1")
    b = client.acquire(key)
    kept = client.complete(sid, b["lease"], "resume_failed", reason="no_conversation_found", keep_lease=True)
    assert kept["decision"]["action"] == "fresh" and kept["decision"].get("reason") == "resume_failed"
    assert "lease" in kept
    done = client.complete(sid, kept["lease"], "ok", cli_session_id="c2")
    assert done["chainExtended"] is True and done["session"]["cliSessionId"] == "c2"
    chain = client.history(sid)["chain"]
    assert [l["cliSessionId"] for l in chain] == ["c1", "c2"]
    assert [l["reason"] for l in chain] == ["created", "fresh_after_failure"]
    assert [l["seq"] for l in chain] == [1, 2]
    c = client.acquire(key)
    done = client.complete(sid, c["lease"], "error", reason="boom")
    assert done["session"]["cliSessionId"] == "c2" and done["chainExtended"] is False


def test_touch_get_list_update_delete(client, key):
    a = client.acquire(key, labels=["blue"])
    sid = a["session"]["id"]
    client.release(sid, a["lease"])
    assert client.get(sid)["session"]["key"] == key
    assert client.get(key=key)["session"]["id"] == sid
    touched = client.touch(key=key, ttl_seconds=3600)["session"]
    assert touched["ttlSeconds"] == 3600
    assert client.touch(sid)["session"]["id"] == sid

    page = client.list(key_prefix=key)
    assert [s["id"] for s in page["sessions"]] == [sid] and "nextCursor" not in page
    assert sid in [s["id"] for s in client.list(label="blue", limit=1000)["sessions"]]

    upd = client.update(sid, metadata={"k": "v"}, labels=["red"], ttl_seconds=7200)["session"]
    assert upd["metadata"] == {"k": "v"} and upd["labels"] == ["red"] and upd["ttlSeconds"] == 7200
    closed = client.update(sid, status="closed")["session"]
    assert closed["status"] == "closed"
    assert sid in [s["id"] for s in client.list(status="closed", key_prefix=key)["sessions"]]
    again = client.acquire(key)
    assert again["decision"]["action"] == "fresh" and again["decision"].get("reason") == "stale"
    client.release(sid, again["lease"])

    assert client.delete(sid)["deleted"] is True
    with pytest.raises(NotFound):
        client.get(sid)


def test_list_pagination(client, key):
    ids = []
    for i in range(5):
        a = client.acquire(f"{key}:{i}")
        client.release(a["session"]["id"], a["lease"])
        ids.append(a["session"]["id"])
    first = client.list(key_prefix=key + ":", limit=2)
    assert len(first["sessions"]) == 2 and first.get("nextCursor")
    everything = client.list_all(key_prefix=key + ":", page_size=2)
    assert sorted(s["id"] for s in everything) == sorted(ids)


def test_delete_with_lease_needs_force(client, key):
    a = client.acquire(key)
    sid = a["session"]["id"]
    try:
        client.delete(sid)
    except (LeaseHeld, Conflict):
        pass  # refused while the lease is held
    else:
        pytest.fail("session.delete removed a session whose lease is held without force")
    assert client.delete(sid, force=True)["deleted"] is True


def test_fork(client, key):
    a = client.acquire(key)
    sid = a["session"]["id"]
    client.complete(sid, a["lease"], "ok", cli_session_id="parent-head")
    child = client.fork(sid, key + ":fork:1")["session"]
    assert child["parentId"] == sid and child["key"] == key + ":fork:1"
    got = client.acquire(key + ":fork:1")
    assert got["decision"]["action"] == "resume"
    assert got["decision"]["cliSessionId"] == "parent-head" and got["decision"]["fork"] is True
    done = client.complete(child["id"], got["lease"], "ok", cli_session_id="child-1")
    assert done["session"]["cliSessionId"] == "child-1"
    chain = client.history(child["id"])["chain"]
    assert chain[-1]["cliSessionId"] == "child-1" and chain[-1]["reason"] == "forked"
    with pytest.raises(SessiondError):  # the key is taken
        client.fork(sid, key + ":fork:1")


def test_messages(client, key):
    a = client.acquire(key)
    sid = a["session"]["id"]
    r = client.messages_append(sid, [("user", "one"), ("assistant", "two")], lease=a["lease"])
    assert r == {"firstSeq": 1, "lastSeq": 2}
    r = client.messages_append(sid, [{"role": "system", "content": "three", "inputTokens": 4}])
    assert r == {"firstSeq": 3, "lastSeq": 3}
    listed = client.messages_list(sid)["messages"]
    assert [(m["seq"], m["role"], m["content"]) for m in listed] == [
        (1, "user", "one"), (2, "assistant", "two"), (3, "system", "three")]
    assert listed[2].get("inputTokens") == 4 and isinstance(listed[0]["at"], str)
    assert [m["seq"] for m in client.messages_list(sid, after_seq=1)["messages"]] == [2, 3]
    assert [m["seq"] for m in client.messages_list(sid, tail=2)["messages"]] == [2, 3]
    page = client.messages_list(sid, limit=2)
    assert [m["seq"] for m in page["messages"]] == [1, 2] and page.get("nextAfterSeq") == 2
    with pytest.raises(StaleLease):
        client.messages_append(sid, [("user", "x")], lease={"token": "bogus", "fence": 1})
    client.release(sid, a["lease"])


def test_free_text_keeps_nul_characters(client, key):
    # A NUL is valid JSON text (\u0000); the server once stored such text cut at the NUL.
    content = "before\x00after \u00fcn\u00efcode"
    a = client.acquire(key, cwd="/tmp/a\x00b", holder="h\x001")
    assert a["session"]["cwd"] == "/tmp/a\x00b" and a["lease"]["holder"] == "h\x001"
    sid = a["session"]["id"]
    client.complete(sid, a["lease"], "resume_failed", reason="gone\x00away",
                    messages=[("user", content), ("assistant", "")])
    got = client.get(sid)["session"]
    assert got["cwd"] == "/tmp/a\x00b" and got["lastFailureReason"] == "gone\x00away"
    assert [m["content"] for m in client.messages_list(sid)["messages"]] == [content, ""]
    assert [m["content"] for m in client.messages_list(sid, tail=2)["messages"]] == [content, ""]


def test_transcripts(client, key):
    a = client.acquire(key)
    sid, lease = a["session"]["id"], a["lease"]
    data = b'{"type":"user"}\n' * 100 + bytes(range(256))
    r = client.transcript_append(sid, lease, "cli-t", 0, data[:1000])
    assert r == {"size": 1000, "appended": 1000}
    r = client.transcript_append(sid, lease, "cli-t", 500, data[500:])  # overlap is skipped
    assert r["size"] == len(data) and r["appended"] == len(data) - 1000
    with pytest.raises(Conflict) as info:
        client.transcript_append(sid, lease, "cli-t", len(data) + 10, b"zz")
    assert info.value.data["size"] == len(data)
    chunk = client.transcript_read(sid, cli_session_id="cli-t", offset=10, limit=100)
    assert chunk["data"] == data[10:110] and chunk["offset"] == 10 and chunk["size"] == len(data)
    assert chunk["eof"] is False and chunk["cliSessionId"] == "cli-t"
    assert client.transcript_read_all(sid, cli_session_id="cli-t", chunk_bytes=333) == data
    client.complete(sid, lease, "ok", cli_session_id="cli-t")
    head = client.transcript_read(sid)  # default: the head's transcript
    assert head["cliSessionId"] == "cli-t" and head["data"] == data and head["eof"] is True
    b = client.acquire(key)
    assert b["transcript"] == {"cliSessionId": "cli-t", "size": len(data)}
    assert b["session"]["transcriptBytes"] == len(data)
    with pytest.raises(StaleLease):
        client.transcript_append(sid, lease, "cli-t", len(data), b"x")  # old lease
    client.release(sid, b["lease"])
    with pytest.raises(NotFound):
        client.transcript_read(sid, cli_session_id="no-such-cli-id")


def test_audit_and_stats(client, key):
    a = client.acquire(key)
    sid = a["session"]["id"]
    client.complete(sid, a["lease"], "ok", cli_session_id="cli-a")
    entries = client.audit_list(session_id=sid)["entries"]
    actions = {e["action"] for e in entries}
    assert {"session.create", "lease.grant", "turn.complete"} <= actions, actions
    for e in entries:
        assert e["tenant"] == "local" and e["sessionId"] == sid and e["outcome"] in ("ok", "refused", "failed")
        assert isinstance(e["id"], int) and isinstance(e["detail"], dict) and isinstance(e["actor"], str)
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, reverse=True)  # newest first
    grants = client.audit_list(session_id=sid, action="lease.grant")["entries"]
    assert grants and all(e["action"] == "lease.grant" for e in grants)
    since = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    assert client.audit_list(session_id=sid, since=since)["entries"] == []
    page = client.audit_list(limit=1)
    assert len(page["entries"]) == 1 and page.get("nextCursor")
    nxt = client.audit_list(limit=1, cursor=page["nextCursor"])
    assert nxt["entries"][0]["id"] < page["entries"][0]["id"]

    stats = client.stats()
    assert stats["sessions"] >= 1 and stats["turns"] >= 1
    for field in ("byStatus", "resumeAttempts", "resumeSuccesses", "resumeFailures", "freshStarts",
                  "topFailureReasons", "sessionAge", "databaseBytes", "walBytes"):
        assert field in stats, field
    rate = stats.get("resumeSuccessRate")  # omitted before the first resume attempt
    assert rate is None or 0.0 <= rate <= 1.0


def test_error_classes(client, key):
    with pytest.raises(NotFound) as info:
        client.get("00000000-0000-0000-0000-000000000000")
    assert info.value.reason == "not_found" and info.value.code == -32001 and info.value.method == "session.get"
    with pytest.raises(NotFound):
        client.get(key=key + ":missing")
    with pytest.raises(MethodNotFound) as info:
        client.call("no.such.method", {})
    assert info.value.code == -32601
    with pytest.raises(InvalidParams) as info:
        client.call("session.acquire", {})
    assert info.value.code == -32602
    with pytest.raises(InvalidParams):
        client.call("session.acquire", {"key": 42})
    with pytest.raises(InvalidParams):
        client.complete("x", {"token": "t", "fence": 1}, "not-an-outcome")
    a = client.acquire(key)
    with pytest.raises(StaleLease) as info:
        client.complete(a["session"]["id"], {"token": "wrong", "fence": a["lease"]["fence"]}, "ok",
                        cli_session_id="x")
    assert info.value.code == -32003
    client.release(a["session"]["id"], a["lease"])
    assert client.health()["status"] == "ok"  # errors leave the connection usable


def test_unix_socket(server, key):
    assert server.unix_addr == server.unix_path
    for addr in (f"unix:{server.unix_path}", server.unix_path, f"unix://{server.unix_path}"):
        with Client(addr, timeout=5) as c:
            assert c.health()["status"] == "ok"
            a = c.acquire(key)
            c.release(a["session"]["id"], a["lease"])


def test_env_defaults(server, monkeypatch):
    monkeypatch.setenv("SESSIOND_ADDR", f"tcp://{server.addr}")
    monkeypatch.delenv("SESSIOND_TOKEN", raising=False)
    with Client() as c:
        assert c.health()["status"] == "ok"
        assert c.server_info["tenant"] == "local"


def _nulls(value, path="$"):
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return []


def test_results_never_carry_null(client, key):
    """PROTOCOL.md: optional members without a value are omitted, never null."""
    results = [client.server_info, client.health(), client.stats(), client.tokens_list()]
    a = client.acquire(key)
    results.append(a)
    sid = a["session"]["id"]
    client.messages_append(sid, [("user", "x")])
    client.transcript_append(sid, a["lease"], "cli-n", 0, b"abc")
    results.append(client.complete(sid, a["lease"], "ok", cli_session_id="cli-n"))
    b = client.acquire(key)
    results.append(b)
    results.append(client.complete(sid, b["lease"], "resume_failed", reason="r", keep_lease=True))
    results += [
        client.get(sid), client.list(key_prefix=key), client.history(sid), client.messages_list(sid),
        client.audit_list(session_id=sid), client.fork(sid, key + ":f"),
    ]
    chunk = client.transcript_read(sid, cli_session_id="cli-n")
    chunk.pop("data")
    results.append(chunk)
    for r in results:
        assert _nulls(r) == [], r
