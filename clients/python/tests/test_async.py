"""The asyncio client against a real sessiond: methods, pipelining, out-of-order responses."""

from __future__ import annotations

import asyncio
import time

import pytest

from sessiond_client import AsyncClient, ConnectionClosed, InvalidParams, LeaseHeld, NotFound, Timeout


def run(coro):
    return asyncio.run(coro)


def test_async_methods(server, key):
    async def go():
        async with AsyncClient(server.addr, client_name="pytest-async", timeout=10) as c:
            assert c.server_info["tenant"] == "local"
            assert (await c.health())["status"] == "ok"
            a = await c.acquire(key, cwd="/w")
            sid = a["session"]["id"]
            await c.renew(sid, a["lease"])
            await c.messages_append(sid, [("user", "q")], lease=a["lease"])
            await c.transcript_append(sid, a["lease"], "cli-a", 0, b"line\n")
            done = await c.complete(sid, a["lease"], "ok", cli_session_id="cli-a",
                                    messages=[("assistant", "a")])
            assert done["session"]["messageCount"] == 2
            assert (await c.get(key=key))["session"]["cliSessionId"] == "cli-a"
            assert (await c.touch(sid))["session"]["id"] == sid
            assert sid in [s["id"] for s in (await c.list(key_prefix=key))["sessions"]]
            assert len(await c.list_all(key_prefix=key)) == 1
            assert (await c.update(sid, labels=["x"]))["session"]["labels"] == ["x"]
            assert [m["content"] for m in (await c.messages_list(sid))["messages"]] == ["q", "a"]
            assert (await c.transcript_read(sid))["data"] == b"line\n"
            assert await c.transcript_read_all(sid, cli_session_id="cli-a") == b"line\n"
            assert [l["cliSessionId"] for l in (await c.history(sid))["chain"]] == ["cli-a"]
            assert (await c.audit_list(session_id=sid))["entries"]
            assert (await c.stats())["sessions"] >= 1
            child = (await c.fork(sid, key + ":child"))["session"]
            assert child["parentId"] == sid
            b = await c.acquire(key)
            assert b["decision"]["action"] == "resume" and b["transcript"]["size"] == 5
            assert (await c.release(sid, b["lease"]))["released"] is True
            assert (await c.delete(child["id"]))["deleted"] is True
            with pytest.raises(NotFound):
                await c.get(child["id"])
            with pytest.raises(InvalidParams):
                await c.call("session.get", {"sessionId": 5})

    run(go())


def test_pipelining_200_concurrent_calls(server, key):
    async def go():
        async with AsyncClient(server.addr, timeout=30) as c:
            a = await c.acquire(key)
            sid = a["session"]["id"]
            calls = []
            for i in range(200):
                if i % 4 == 0:
                    calls.append(c.health())
                elif i % 4 == 1:
                    calls.append(c.get(sid))
                elif i % 4 == 2:
                    calls.append(c.messages_append(sid, [("user", f"m{i}")]))
                else:
                    calls.append(c.get("missing-" + str(i)))
            results = await asyncio.gather(*calls, return_exceptions=True)
            for i, r in enumerate(results):
                if i % 4 == 0:
                    assert r["status"] == "ok"
                elif i % 4 == 1:
                    assert r["session"]["id"] == sid
                elif i % 4 == 2:
                    assert r["firstSeq"] == r["lastSeq"]
                else:
                    assert isinstance(r, NotFound), r
            seqs = sorted(r["firstSeq"] for i, r in enumerate(results) if i % 4 == 2)
            assert seqs == list(range(1, 51))
            assert len(c._pending) == 0
            await c.release(sid, a["lease"])

    start = time.monotonic()
    run(go())
    assert time.monotonic() - start < 20


def test_slow_call_does_not_block_others(server, key):
    """A waiting acquire is answered after faster calls sent later on the same connection."""

    async def go():
        async with AsyncClient(server.addr, timeout=10) as holder, AsyncClient(server.addr, timeout=10) as c:
            a = await holder.acquire(key)
            waiting = asyncio.ensure_future(c.acquire(key, wait_ms=5000))
            await asyncio.sleep(0.2)
            t0 = time.monotonic()
            for _ in range(5):
                assert (await c.health())["status"] == "ok"
            assert time.monotonic() - t0 < 2 and not waiting.done()
            await holder.release(a["session"]["id"], a["lease"])
            got = await asyncio.wait_for(waiting, 5)
            assert got["lease"]["fence"] > a["lease"]["fence"]
            await c.release(got["session"]["id"], got["lease"])

    run(go())


def test_async_lease_held_and_timeout(server, key):
    async def go():
        async with AsyncClient(server.addr, timeout=10) as holder, AsyncClient(server.addr, timeout=10) as c:
            a = await holder.acquire(key, holder="the holder")
            with pytest.raises(LeaseHeld) as info:
                await c.acquire(key)
            assert info.value.data["holder"] == "the holder"
            t0 = time.monotonic()
            with pytest.raises(Timeout):
                await c.acquire(key, wait_ms=5000, timeout=0.3)
            assert time.monotonic() - t0 < 2
            assert (await c.health())["status"] == "ok"  # the connection survives a timeout
            await holder.release(a["session"]["id"], a["lease"])

    run(go())


def test_async_close_fails_pending_calls(server, key):
    async def go():
        async with AsyncClient(server.addr, timeout=10) as holder:
            a = await holder.acquire(key)
            c = await AsyncClient.open(server.addr, timeout=10)
            waiting = asyncio.ensure_future(c.acquire(key, wait_ms=5000))
            await asyncio.sleep(0.2)
            await c.close()
            with pytest.raises(ConnectionClosed):
                await waiting
            with pytest.raises(ConnectionClosed):
                await c.health()
            await holder.release(a["session"]["id"], a["lease"])

    run(go())


def test_async_unix_socket(server):
    async def go():
        async with AsyncClient(f"unix:{server.unix_path}", timeout=5) as c:
            return await c.health()

    assert run(go())["status"] == "ok"
