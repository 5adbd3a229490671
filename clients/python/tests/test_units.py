"""Pure unit tests: no server needed."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
from conftest import PKG_ROOT

import sessiond_client as sc
from sessiond_client import claude as cl
from sessiond_client._wire import (
    Address,
    FrameBuffer,
    classify_response,
    decode_payload,
    encode_frame,
    iso_time,
    lease_proof,
    parse_address,
    parse_time,
)
from sessiond_client.errors import REASON_CODES, error_from_response


@pytest.mark.parametrize(
    "text,expected",
    [
        ("127.0.0.1:7420", Address("tcp", "127.0.0.1", 7420)),
        ("localhost:1", Address("tcp", "localhost", 1)),
        ("tcp://10.0.0.1:99", Address("tcp", "10.0.0.1", 99)),
        ("tcp://10.0.0.1:99/", Address("tcp", "10.0.0.1", 99)),
        ("[::1]:7421", Address("tcp", "::1", 7421)),
        ("tcp://[::1]:7421", Address("tcp", "::1", 7421)),
        ("myhost", Address("tcp", "myhost", 7420)),
        ("unix:/tmp/s.sock", Address("unix", path="/tmp/s.sock")),
        ("unix:///tmp/s.sock", Address("unix", path="/tmp/s.sock")),
        ("/run/sessiond.sock", Address("unix", path="/run/sessiond.sock")),
        ("unix:relative.sock", Address("unix", path="relative.sock")),
    ],
)
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "host:notaport", "host:0", "host:70000", "::1:80", "http://x:1", "unix:", ":80"])
def test_parse_address_rejects(text):
    with pytest.raises(ValueError):
        parse_address(text)


def test_address_defaults_from_env(monkeypatch):
    monkeypatch.delenv("SESSIOND_ADDR", raising=False)
    assert parse_address(None) == Address("tcp", "127.0.0.1", 7420)
    monkeypatch.setenv("SESSIOND_ADDR", "unix:/x.sock")
    assert parse_address(None) == Address("unix", path="/x.sock")


def test_frame_roundtrip_and_split_delivery():
    frames = [encode_frame({"jsonrpc": "2.0", "id": i, "result": {"s": "é" * i}}) for i in range(5)]
    data = b"".join(frames)
    assert frames[0][:4] == len(frames[0][4:]).to_bytes(4, "big")
    buf = FrameBuffer(1 << 20)
    got = []
    for b in data:  # one byte at a time
        buf.feed(bytes([b]))
        got += [decode_payload(p) for p in buf.frames()]
    assert [m["id"] for m in got] == list(range(5))
    assert not buf.mid_frame


def test_frame_buffer_caps():
    buf = FrameBuffer(10)
    buf.feed((11).to_bytes(4, "big"))
    with pytest.raises(sc.ProtocolError):
        list(buf.frames())
    buf = FrameBuffer(10)
    buf.feed(b"\x00\x00\x00\x05ab")
    assert list(buf.frames()) == [] and buf.mid_frame


def test_classify_response():
    assert classify_response({"jsonrpc": "2.0", "method": "x"}) == ("notification", None)
    assert classify_response({"id": 3, "result": {}}) == ("response", 3)
    assert classify_response({"id": None, "error": {"code": 1}})[0] == "orphan_error"
    for bad in ({"id": None, "result": {}}, {"id": [1], "result": 1}, {"id": 1}, {"result": 1}, {"id": True, "result": 1}):
        with pytest.raises(sc.ProtocolError):
            classify_response(bad)


def test_error_mapping_covers_every_reason():
    expected = {
        "parse_error": (sc.ParseError, -32700),
        "invalid_request": (sc.InvalidRequest, -32600),
        "method_not_found": (sc.MethodNotFound, -32601),
        "invalid_params": (sc.InvalidParams, -32602),
        "internal": (sc.InternalError, -32603),
        "not_found": (sc.NotFound, -32001),
        "lease_held": (sc.LeaseHeld, -32002),
        "stale_lease": (sc.StaleLease, -32003),
        "unauthenticated": (sc.Unauthenticated, -32004),
        "forbidden": (sc.Forbidden, -32005),
        "too_large": (sc.TooLarge, -32006),
        "rate_limited": (sc.RateLimited, -32007),
        "shutting_down": (sc.ShuttingDown, -32008),
        "conflict": (sc.Conflict, -32009),
        "storage_full": (sc.StorageFull, -32010),
        "unavailable": (sc.Unavailable, -32011),
        "overloaded": (sc.Overloaded, -32012),
    }
    for reason, (cls, code) in expected.items():
        err = error_from_response({"code": code, "message": "m", "data": {"reason": reason, "x": 1}}, "some.method")
        assert type(err) is cls and err.reason == reason and err.code == code and err.data["x"] == 1
        assert err.message == "m" and err.method == "some.method" and isinstance(err, sc.SessiondError)
        # Without data.reason the code decides.
        assert type(error_from_response({"code": code, "message": "m"})) is cls
        assert REASON_CODES[reason] == code
    unknown = error_from_response({"code": -1, "message": "m", "data": {"reason": "new_reason"}})
    assert type(unknown) is sc.SessiondError and unknown.reason == "new_reason"
    assert isinstance(error_from_response("junk"), sc.ProtocolError)


def test_time_helpers():
    t = dt.datetime(2026, 11, 21, 8, 46, 19, 123456, tzinfo=dt.timezone.utc)
    assert iso_time(t) == "2026-11-21T08:46:19.123Z"
    assert iso_time("x") == "x" and iso_time(None) is None
    assert parse_time("2026-11-21T08:46:19.123Z") == t.replace(microsecond=123000)


def test_lease_proof():
    assert lease_proof({"token": "t", "fence": 3, "holder": "h"}) == {"token": "t", "fence": 3}
    with pytest.raises(ValueError):
        lease_proof({"token": "t"})


def test_async_api_is_generated_from_sync_api():
    rc = subprocess.run([sys.executable, str(PKG_ROOT / "tools" / "gen_async_api.py"), "--check"]).returncode
    assert rc == 0, "run python3 clients/python/tools/gen_async_api.py"


def test_sync_and_async_clients_have_the_same_methods():
    public = lambda cls: {n for n in dir(cls) if not n.startswith("_")}  # noqa: E731
    assert public(sc.Client) - {"address"} >= public(sc.AsyncClient) - {"open", "connect", "connect_timeout", "send_hello"}
    for name in ["hello", "health", "acquire", "complete", "renew", "release", "touch", "get", "list", "update",
                 "delete", "fork", "history", "messages_append", "messages_list", "transcript_append",
                 "transcript_read", "audit_list", "stats", "tokens_create", "tokens_list", "tokens_revoke",
                 "call", "turn", "close"]:
        assert callable(getattr(sc.Client, name)) and callable(getattr(sc.AsyncClient, name)), name


# -- run_claude helpers -----------------------------------------------------------------------


def test_transcript_path(monkeypatch):
    env = {"HOME": "/home/u"}
    assert cl.transcript_path("/work/my_proj.v2", "abc", env) == "/home/u/.claude/projects/-work-my-proj-v2/abc.jsonl"
    env = {"HOME": "/home/u", "CLAUDE_CONFIG_DIR": "/cfg"}
    assert cl.transcript_path("/a b/c", "id", env) == "/cfg/projects/-a-b-c/id.jsonl"
    assert cl.project_dir_name("/tmp/é x") == "-tmp---x"


def test_project_dir_name_matches_claude_code():
    # Expected values computed with the CLI's own JavaScript (2.1.329) under node.
    long_b = "/a/" + "b" * 250
    assert cl.project_dir_name(long_b) == ("-a-" + "b" * 250)[:200] + "-hvza71"
    emoji = "/é😀/" + "long-" * 60
    name = cl.project_dir_name(emoji)
    assert name.startswith("-----long-") and name.endswith("-lgv6du") and len(name) == 207


@pytest.mark.parametrize(
    "args,expected",
    [
        (["claude", "-p", "hello"], 2),
        (["claude", "--print", "hello"], 2),
        (["claude", "-p", "--model", "m", "hi"], 4),
        (["claude", "--model", "m", "-p", "hi"], 4),
        (["claude", "hi", "-p"], 1),
        (["claude", "-p", "--add-dir", "a", "b", "--verbose", "q"], 6),
        (["claude", "-p", "--output-format=json", "q"], 3),
        (["claude", "-p", "--debug", "--verbose"], None),
        (["claude", "-p"], None),
        (["claude", "-p", "--", "-dash prompt"], 3),
        (["claude", "-p", "--output-format", "json"], None),
    ],
)
def test_find_prompt(args, expected):
    assert cl.find_prompt(args) == expected


@pytest.mark.parametrize("bad", ["--resume", "-r", "--continue", "-c", "--session-id", "--resume=abc", "--session-id=x"])
def test_run_claude_refuses_session_flags(bad):
    with pytest.raises(ValueError):
        sc.run_claude(["claude", "-p", "x", bad], key="k", addr="127.0.0.1:1")
    cl._check_args(["claude", "-p", "--", bad])  # after "--" it is the prompt


def test_run_claude_rejects_bad_options():
    with pytest.raises(ValueError):
        sc.run_claude([], key="k")
    with pytest.raises(ValueError):
        sc.run_claude(["claude", "-p", "x"], key="k", on_resume_failure="maybe")


def test_cli_args():
    args = ["claude", "-p", "hi", "--output-format", "text"]
    fmt, at = cl._output_format(args)
    assert fmt == "text" and at == [3, 4]
    out = cl._cli_args(args, 2, "RECAP hi", True, at, "sid", True)
    assert out == ["claude", "--output-format", "json", "--resume", "sid", "--fork-session", "-p", "RECAP hi"]
    args = ["claude", "-p", "hi", "--output-format=stream-json"]
    fmt, at = cl._output_format(args)
    assert fmt == "stream-json"
    assert cl._cli_args(args, 2, "hi", False, at, None, False) == args


def test_parse_cli_output():
    obj = {"type": "result", "result": "x", "session_id": "s"}
    assert cl.parse_cli_output('{"type":"result","result":"x","session_id":"s"}\n', "json") == obj
    arr = '[{"type":"system"},{"type":"result","result":"x","session_id":"s"},{"type":"other"}]'
    assert cl.parse_cli_output(arr, "json") == obj
    stream = '{"type":"system"}\n{"type":"assistant"}\n{"type":"result","result":"x","session_id":"s"}\n'
    assert cl.parse_cli_output(stream, "stream-json") == obj
    assert cl.parse_cli_output("garbage", "json") is None
    assert cl.parse_cli_output("", "stream-json") is None
    assert cl.parse_cli_output('warning: x\n{"type":"result","result":"x","session_id":"s"}', "json") == obj


def test_build_recap_format_and_bound():
    msgs = [{"role": "user", "content": "remember pineapple"}, {"role": "assistant", "content": "OK"}]
    recap = cl.build_recap(msgs)
    assert recap == (
        "[Recap of the earlier conversation, which could not be resumed]\n"
        "user: remember pineapple\nassistant: OK\n[End of recap]\n\n"
    )
    assert cl.build_recap([]) == ""
    many = [{"role": "user", "content": f"{i} " + "x" * 1000} for i in range(20)]
    recap = cl.build_recap(many)
    assert len(recap) <= 8000 and recap.endswith("[End of recap]\n\n")
    assert "19 xxx" in recap and "\nuser: 0 " not in recap  # the newest are kept
    huge = cl.build_recap([{"role": "user", "content": "y" * 50000 + "THE END"}])
    assert len(huge) == 8000 and huge.startswith("[Recap")
    assert "\nuser: …yyy" in huge and huge.endswith("THE END\n[End of recap]\n\n")  # keeps the end


def test_failure_reasons():
    run = lambda code, err="": cl._Run([], code, "", err)  # noqa: E731
    assert cl._failure_reason(run(0), {"is_error": True, "subtype": "success", "result": "API Error"}) == \
        "is_error (success): API Error"
    assert cl._failure_reason(run(1), {"is_error": True}) == "is_error (unknown)"
    assert cl._failure_reason(run(-9), None) == "killed_by_SIGKILL"
    assert cl._failure_reason(run(2, "warn\nError: broke\n"), None) == "exit_code_2: Error: broke"
    assert cl._failure_reason(run(3), {"session_id": "x"}) == "exit_code_3"
    assert cl._failure_reason(run(0), None) == "no_result"
    assert cl._failure_reason(run(0), {"result": "x"}) == "no_session_id"
    assert len(cl._failure_reason(run(1, "e" * 500), None)) <= 200


def test_package_exports():
    for name in sc.__all__:
        assert hasattr(sc, name), name
    assert os.path.exists(PKG_ROOT / "sessiond_client" / "py.typed")


# -- golden fixture matcher -------------------------------------------------------------------


def test_golden_matcher():
    from golden import Mismatch, match, substitute

    refs = {}
    expect = {"jsonrpc": "2.0", "id": 1, "result": {"session": {"id": "$capture:sid", "createdAt": "$date",
              "cwd": "$any", "turnCount": "$number", "key": "$string", "labels": []}}}
    actual = {"jsonrpc": "2.0", "id": 1, "result": {"session": {"id": "S1", "createdAt": "2026-11-21T08:46:19.123Z",
              "turnCount": 0, "key": "k", "labels": [], "extra": True}}}
    match(expect, actual, refs)
    assert refs == {"sid": "S1"}
    assert substitute({"params": {"sessionId": "$ref:sid", "x": ["$ref:sid"]}}, refs) == {
        "params": {"sessionId": "S1", "x": ["S1"]}}
    for bad in (
        {"id": 2},
        {"result": {"session": {"createdAt": "yesterday"}}},
        {"result": {"session": {"labels": ["x"]}}},
        {"result": {"session": {"turnCount": "$string"}}},
        {"result": {"session": {"missing": "$string"}}},
        {"result": {"session": {"extra": 1}}},
    ):
        with pytest.raises(Mismatch):
            match(bad, actual, {})
    match({"id": None}, {"id": None}, {})
    with pytest.raises(Mismatch):
        match({"id": None}, {"id": 0}, {})
