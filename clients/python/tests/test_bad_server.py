"""Bad input from the server side must give a clear client error quickly, never a hang."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time

import pytest
from fakeserver import HELLO_RESULT, Conn, FakeServer

from sessiond_client import (
    AsyncClient,
    Client,
    ConnectionClosed,
    LeaseHeld,
    ProtocolError,
    SessiondError,
    Timeout,
    TooLarge,
)

KINDS = ["sync", "async"]
TIMEOUT = 1.0


def call_once(kind: str, addr: str, method: str = "health", *, timeout: float = TIMEOUT, **client_kw):
    """Connect, make one call, return the exception raised (or the result) and the elapsed time."""
    start = time.monotonic()
    if kind == "sync":
        try:
            with Client(addr, timeout=timeout, **client_kw) as c:
                return c.call(method), time.monotonic() - start
        except SessiondError as exc:
            return exc, time.monotonic() - start

    async def go():
        try:
            async with AsyncClient(addr, timeout=timeout, **client_kw) as c:
                return await c.call(method)
        except SessiondError as exc:
            return exc

    return asyncio.run(go()), time.monotonic() - start


def after_hello(action):
    def handler(conn: Conn) -> None:
        conn.answer_hello()
        req = conn.read()
        assert req is not None
        action(conn, req)

    return handler


def hold_open(conn: Conn) -> None:
    conn.sock.settimeout(10)
    try:
        conn.sock.recv(1)  # wait for the client to go away
    except OSError:
        pass


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_frame_then_close(kind):
    def act(conn, req):
        conn.send_raw(struct.pack(">I", 100) + b'{"jsonrpc":')
        conn.close()

    with FakeServer(after_hello(act)) as srv:
        err, elapsed = call_once(kind, srv.addr)
    assert isinstance(err, ProtocolError), err
    assert "truncated" in str(err)
    assert elapsed < TIMEOUT


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_frame_kept_open_times_out(kind):
    def act(conn, req):
        conn.send_raw(struct.pack(">I", 100) + b'{"jsonrpc":')
        hold_open(conn)

    with FakeServer(after_hello(act)) as srv:
        err, elapsed = call_once(kind, srv.addr, timeout=0.5)
    assert isinstance(err, Timeout), err
    assert isinstance(err, TimeoutError)
    assert err.reason == "timeout" and err.code == -32013
    assert 0.4 < elapsed < 3


@pytest.mark.parametrize("kind", KINDS)
def test_oversized_length_header(kind):
    def act(conn, req):
        conn.send_raw(struct.pack(">I", 2 * 1024 * 1024))  # no payload follows
        hold_open(conn)

    with FakeServer(after_hello(act)) as srv:
        err, elapsed = call_once(kind, srv.addr, max_frame_bytes=1024 * 1024, timeout=5)
    assert isinstance(err, ProtocolError), err
    assert "maximum" in str(err)
    assert elapsed < 3  # refused at the header, not after the timeout


@pytest.mark.parametrize("kind", KINDS)
def test_huge_length_header_default_cap(kind):
    def act(conn, req):
        conn.send_raw(b"\xff\xff\xff\xff")
        hold_open(conn)

    with FakeServer(after_hello(act)) as srv:
        err, elapsed = call_once(kind, srv.addr, timeout=5)
    assert isinstance(err, ProtocolError), err
    assert elapsed < 3


@pytest.mark.parametrize("kind", KINDS)
def test_zero_length_frame(kind):
    def act(conn, req):
        conn.send_raw(b"\x00\x00\x00\x00")
        hold_open(conn)

    with FakeServer(after_hello(act)) as srv:
        err, elapsed = call_once(kind, srv.addr, timeout=5)
    assert isinstance(err, ProtocolError), err
    assert "zero-length" in str(err)
    assert elapsed < 3


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("payload", [b"{not json", b"\xff\xfe", b"[1,2,3]", b'"text"'])
def test_invalid_json(kind, payload):
    def act(conn, req):
        conn.send_raw(struct.pack(">I", len(payload)) + payload)
        hold_open(conn)

    with FakeServer(after_hello(act)) as srv:
        err, elapsed = call_once(kind, srv.addr, timeout=5)
    assert isinstance(err, ProtocolError), err
    assert elapsed < 3


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_id(kind):
    def act(conn, req):
        conn.send({"jsonrpc": "2.0", "id": 987654, "result": {}})
        hold_open(conn)

    with FakeServer(after_hello(act)) as srv:
        err, elapsed = call_once(kind, srv.addr, timeout=5)
    assert isinstance(err, ProtocolError), err
    assert "unknown id" in str(err)
    assert elapsed < 3


@pytest.mark.parametrize("kind", KINDS)
def test_response_without_result_or_error(kind):
    def act(conn, req):
        conn.send({"jsonrpc": "2.0", "id": req["id"]})
        hold_open(conn)

    with FakeServer(after_hello(act)) as srv:
        err, elapsed = call_once(kind, srv.addr, timeout=5)
    assert isinstance(err, ProtocolError), err
    assert elapsed < 3


@pytest.mark.parametrize("kind", KINDS)
def test_server_closes_mid_call(kind):
    def act(conn, req):
        conn.close()

    with FakeServer(after_hello(act)) as srv:
        err, elapsed = call_once(kind, srv.addr, timeout=5)
    assert isinstance(err, ConnectionClosed), err
    assert isinstance(err, ConnectionError)
    assert elapsed < 3


@pytest.mark.parametrize("kind", KINDS)
def test_null_id_error_fails_pending_call(kind):
    def act(conn, req):
        conn.send(
            {
                "jsonrpc": "2.0",
                "id": None,
                "error": {"code": -32006, "message": "frame too large", "data": {"reason": "too_large"}},
            }
        )
        conn.close()

    with FakeServer(after_hello(act)) as srv:
        err, elapsed = call_once(kind, srv.addr, timeout=5)
    assert isinstance(err, TooLarge), err
    assert elapsed < 3


@pytest.mark.parametrize("kind", KINDS)
def test_connection_refused(kind):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    err, elapsed = call_once(kind, f"127.0.0.1:{port}")
    assert isinstance(err, ConnectionClosed), err
    assert elapsed < 3


@pytest.mark.parametrize("kind", KINDS)
def test_hello_error_raises_on_connect(kind):
    def handler(conn):
        req = conn.read()
        conn.reply_error(req, -32004, "bad token", "unauthenticated")
        hold_open(conn)

    with FakeServer(handler) as srv:
        err, _ = call_once(kind, srv.addr)
    assert type(err).__name__ == "Unauthenticated" and err.reason == "unauthenticated"


def test_sync_calls_fail_fast_after_connection_failure():
    def act(conn, req):
        conn.send_raw(b"\x00\x00\x00\x00")
        hold_open(conn)

    with FakeServer(after_hello(act)) as srv:
        c = Client(srv.addr, timeout=5)
        with pytest.raises(ProtocolError):
            c.call("health")
        start = time.monotonic()
        with pytest.raises(ConnectionClosed):
            c.call("health")
        assert time.monotonic() - start < 0.5
        c.close()


def test_late_response_after_timeout_is_ignored_sync():
    def handler(conn):
        conn.answer_hello()
        slow = conn.read()
        time.sleep(0.6)  # answer after the client gave up
        conn.reply(slow, {"late": True})
        fast = conn.read()
        conn.reply(fast, {"n": 2})
        hold_open(conn)

    with FakeServer(handler) as srv, Client(srv.addr, timeout=5) as c:
        with pytest.raises(Timeout):
            c.call("slow", timeout=0.3)
        time.sleep(0.5)
        assert c.call("fast") == {"n": 2}


def test_late_response_after_timeout_is_ignored_async():
    def handler(conn):
        conn.answer_hello()
        slow = conn.read()
        time.sleep(0.6)
        conn.reply(slow, {"late": True})
        fast = conn.read()
        conn.reply(fast, {"n": 2})
        hold_open(conn)

    async def go():
        async with AsyncClient(srv.addr, timeout=5) as c:
            with pytest.raises(Timeout):
                await c.call("slow", timeout=0.3)
            await asyncio.sleep(0.5)
            return await c.call("fast")

    with FakeServer(handler) as srv:
        assert asyncio.run(go()) == {"n": 2}


def reverse_order_handler(n):
    def handler(conn):
        conn.answer_hello()
        reqs = [conn.read() for _ in range(n)]
        conn.send({"jsonrpc": "2.0", "method": "server.event", "params": {"x": 1}})  # ignored
        for req in reversed(reqs):
            if req["method"] == "boom":
                conn.reply_error(req, -32002, "held", "lease_held", holder="someone")
            else:
                conn.reply(req, {"echo": req["params"]["i"]})
        hold_open(conn)

    return handler


def test_out_of_order_responses_async():
    async def go():
        async with AsyncClient(srv.addr, timeout=5) as c:
            calls = [c.call("echo", {"i": i}) for i in range(5)] + [c.call("boom", {"i": 99})]
            return await asyncio.gather(*calls, return_exceptions=True)

    with FakeServer(reverse_order_handler(6)) as srv:
        results = asyncio.run(go())
    assert results[:5] == [{"echo": i} for i in range(5)]
    assert isinstance(results[5], LeaseHeld) and results[5].data["holder"] == "someone"


def test_out_of_order_responses_sync_threads():
    results = {}
    with FakeServer(reverse_order_handler(4)) as srv, Client(srv.addr, timeout=5) as c:

        def worker(i):
            results[i] = c.call("echo", {"i": i})

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(5)
    assert results == {i: {"echo": i} for i in range(4)}


def test_unknown_error_reason_maps_to_base_class():
    def act(conn, req):
        conn.reply_error(req, -32099, "brand new", "brand_new_reason", extra=1)
        hold_open(conn)

    with FakeServer(after_hello(act)) as srv:
        err, _ = call_once("sync", srv.addr)
    assert type(err) is SessiondError
    assert err.reason == "brand_new_reason" and err.code == -32099 and err.data["extra"] == 1


def test_client_refuses_request_over_server_max_frame():
    def handler(conn):
        req = conn.read()
        conn.reply(req, dict(HELLO_RESULT, maxFrameBytes=1000))
        hold_open(conn)

    with FakeServer(handler) as srv, Client(srv.addr, timeout=2) as c:
        with pytest.raises(TooLarge):
            c.call("messages.append", {"x": "y" * 2000})
        assert not c.closed


def test_send_timeout_when_server_does_not_read():
    """A server that never reads: a big request times out instead of blocking forever."""
    stop = threading.Event()

    def handler(conn):
        conn.answer_hello()
        stop.wait(10)

    with FakeServer(handler) as srv, Client(srv.addr, timeout=1) as c:
        start = time.monotonic()
        with pytest.raises(Timeout):
            c.call("messages.append", {"x": "y" * (12 * 1024 * 1024)})
        assert time.monotonic() - start < 4
        stop.set()


def test_sync_close_fails_waiting_calls():
    def handler(conn):
        conn.answer_hello()
        conn.read()  # never answered
        hold_open(conn)

    with FakeServer(handler) as srv:
        c = Client(srv.addr, timeout=10)
        errors = []

        def waiter():
            try:
                c.call("slow")
            except SessiondError as exc:
                errors.append(exc)

        th = threading.Thread(target=waiter)
        th.start()
        time.sleep(0.2)
        start = time.monotonic()
        c.close()
        th.join(5)
        assert time.monotonic() - start < 3 and not th.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], ConnectionClosed)
        with pytest.raises(ConnectionClosed):
            c.health()
