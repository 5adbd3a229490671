"""turn() context managers: outcomes, release on exceptions, background renewal."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from sessiond_client import AsyncClient, Client, LeaseHeld


def lease_free(client, key) -> bool:
    try:
        got = client.acquire(key)
    except LeaseHeld:
        return False
    client.release(got["session"]["id"], got["lease"])
    return True


def test_turn_ok_then_resume(client, key):
    with client.turn(key, cwd="/w") as t:
        assert t.created and t.resume_id is None and t.fresh_reason == "new" and not t.fork
        assert t.lease["token"] and t.session["key"] == key
        t.ok("cli-1", cost_usd=0.25, input_tokens=3, output_tokens=4,
             messages=[("user", "hello"), ("assistant", "hi")])
    assert t.result["session"]["cliSessionId"] == "cli-1"
    assert t.result["session"]["messageCount"] == 2
    with client.turn(key) as t2:
        assert t2.is_resume and t2.resume_id == "cli-1"
        t2.ok("cli-1")
    assert t2.result["session"]["turnCount"] == 2
    assert lease_free(client, key)


def test_turn_releases_when_body_raises(client, key):
    with pytest.raises(RuntimeError, match="kaboom"):
        with client.turn(key) as t:
            t.ok("never-recorded")
            raise RuntimeError("kaboom")
    assert lease_free(client, key)
    session = client.get(key=key)["session"]
    assert "cliSessionId" not in session  # the outcome set before the exception is not used
    assert t.result is not None  # completed with outcome "error"
    completes = client.audit_list(session_id=session["id"], action="turn.complete")["entries"]
    assert len(completes) == 1 and completes[0]["outcome"] == "failed"
    assert completes[0]["detail"].get("reason") == "RuntimeError: kaboom"


def test_turn_without_outcome_releases(client, key):
    with client.turn(key) as t:
        pass
    assert t.result is None
    assert lease_free(client, key)
    assert client.get(key=key)["session"]["turnCount"] == 0


def test_turn_error_and_resume_failed_outcomes(client, key):
    with client.turn(key) as t:
        t.ok("c1")
    with client.turn(key) as t:
        assert t.resume_id == "c1"
        t.resume_failed("no_conversation_found")
    s = t.result["session"]
    assert s["consecutiveFailures"] == 1 and s.get("lastFailureReason") == "no_conversation_found"
    with client.turn(key) as t:
        t.error("cli crashed")
    assert t.result["session"]["cliSessionId"] == "c1"
    assert lease_free(client, key)


def test_turn_restart_fresh(client, key):
    with client.turn(key) as t:
        t.ok("c1")
    with client.turn(key) as t:
        assert t.resume_id == "c1"
        old_fence = t.lease["fence"]
        decision = t.restart_fresh("no_conversation_found")
        assert decision["action"] == "fresh" and t.resume_id is None and t.lease["fence"] >= old_fence
        t.ok("c2")
    chain = client.history(t.session_id)["chain"]
    assert [(l["cliSessionId"], l["reason"]) for l in chain] == [("c1", "created"), ("c2", "fresh_after_failure")]


def test_turn_renews_in_background(client, key):
    with client.turn(key, lease_seconds=2, renew_every=0.3) as t:
        first_expiry = t.lease["expiresAt"]
        time.sleep(2.5)  # longer than the lease: only renewals keep it
        assert t.renewals >= 3 and t.renew_error is None
        assert t.lease["expiresAt"] > first_expiry
        t.ok("c-renewed")
    assert t.result["session"]["cliSessionId"] == "c-renewed"


def test_turn_default_renew_interval_is_a_third_of_the_lease(client, key):
    with client.turn(key, lease_seconds=3) as t:
        assert abs(t._renew_interval() - 1.0) < 0.01
    with client.turn(key) as t:  # from expiresAt: the server's default lease (600 s)
        assert 150 < t._renew_interval() <= 200


def test_turn_waits_for_a_held_lease(client, server, key):
    a = client.acquire(key)
    threading.Timer(0.5, lambda: client.release(a["session"]["id"], a["lease"])).start()
    with Client(server.addr, timeout=5) as other:
        start = time.monotonic()
        with other.turn(key, wait_ms=5000) as t:
            assert time.monotonic() - start >= 0.4
            t.ok("after-wait")
    with Client(server.addr, timeout=5) as other:
        b = client.acquire(key)
        with pytest.raises(LeaseHeld):
            with other.turn(key, wait_ms=0):
                pass
        client.release(b["session"]["id"], b["lease"])


def test_async_turn(server, key):
    async def go():
        async with AsyncClient(server.addr, timeout=10) as c:
            async with c.turn(key, lease_seconds=2, renew_every=0.3) as t:
                assert t.fresh_reason == "new"
                await asyncio.sleep(1.0)
                assert t.renewals >= 2
                t.ok("async-1", messages=[("user", "x")])
            assert t.result["session"]["cliSessionId"] == "async-1"
            with pytest.raises(ValueError):
                async with c.turn(key) as t2:
                    assert t2.resume_id == "async-1"
                    raise ValueError("nope")
            async with c.turn(key, wait_ms=0) as t3:  # released despite the exception
                decision = await t3.restart_fresh("no_conversation_found")
                assert decision["action"] == "fresh"
                t3.ok("async-2")
            return (await c.history(t3.session_id))["chain"]

    chain = asyncio.run(go())
    assert [l["cliSessionId"] for l in chain] == ["async-1", "async-2"]


def test_async_turn_cancelled_body_releases(server, key):
    async def go():
        async with AsyncClient(server.addr, timeout=10) as c:
            async def body():
                async with c.turn(key):
                    await asyncio.sleep(10)

            task = asyncio.ensure_future(body())
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            got = await c.acquire(key, wait_ms=0)  # free again
            await c.release(got["session"]["id"], got["lease"])

    asyncio.run(go())
