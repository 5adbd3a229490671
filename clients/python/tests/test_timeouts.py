"""Call timeouts against a real sessiond."""

from __future__ import annotations

import time

import pytest

from sessiond_client import Client, Timeout


def test_call_timeout_and_connection_survives(client, server, key):
    a = client.acquire(key)
    with Client(server.addr, timeout=5) as c:
        start = time.monotonic()
        with pytest.raises(Timeout) as info:
            c.acquire(key, wait_ms=3000, timeout=0.3)
        elapsed = time.monotonic() - start
        assert 0.25 < elapsed < 3
        assert info.value.reason == "timeout" and info.value.method == "session.acquire"
        assert c.health()["status"] == "ok"
    client.release(a["session"]["id"], a["lease"])


def test_default_timeout_covers_wait_ms(client, server, key):
    """acquire(wait_ms=...) extends the call timeout by the wait, so a 1 s client default does not
    cut a 1.5 s wait short."""
    a = client.acquire(key)
    with Client(server.addr, timeout=1.0) as c:
        start = time.monotonic()
        from sessiond_client import LeaseHeld

        with pytest.raises(LeaseHeld):
            c.acquire(key, wait_ms=1500)
        assert time.monotonic() - start >= 1.4
    client.release(a["session"]["id"], a["lease"])


def test_connect_timeout_is_quick_for_closed_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    from sessiond_client import ConnectionClosed

    start = time.monotonic()
    with pytest.raises(ConnectionClosed):
        Client(f"127.0.0.1:{port}", connect_timeout=2)
    assert time.monotonic() - start < 2
