#!/usr/bin/env python3
"""Smoke test of naive_server.py's wire compatibility with sessiond (docs/PROTOCOL.md).

Starts naive_server.py on 127.0.0.1:0 with a temporary database, runs hello, session.acquire,
session.complete, session.get, session.list, messages.append, messages.list (plus a lease_held, a
stale_lease and the framing errors), checks every result's shape, stops the server, and exits 0.

    python3 Benchmarks/baselines/naive_client_smoke.py              # start naive_server.py and test it
    python3 Benchmarks/baselines/naive_client_smoke.py --addr 127.0.0.1:7420   # test a running server
                                                                    # (sessiond too: same checks)

Standard library only; every step has a timeout.
"""

import argparse
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class Conn:
    def __init__(self, host, port, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.next_id = 0

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("connection closed after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return buf

    def read_frame(self):
        (n,) = struct.unpack(">I", self.recv_exact(4))
        return json.loads(self.recv_exact(n))

    def send_raw(self, data):
        self.sock.sendall(data)

    def call(self, method, params=None):
        self.next_id += 1
        req = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            req["params"] = params
        data = json.dumps(req).encode()
        self.sock.sendall(struct.pack(">I", len(data)) + data)
        resp = self.read_frame()
        check(resp.get("jsonrpc") == "2.0" and resp.get("id") == self.next_id, "envelope of %s: %r" % (method, resp))
        return resp

    def ok(self, method, params=None):
        resp = self.call(method, params)
        check("result" in resp, "%s failed: %r" % (method, resp.get("error")))
        return resp["result"]

    def err(self, method, params, reason):
        resp = self.call(method, params)
        check("error" in resp, "%s should fail with %s, got %r" % (method, reason, resp))
        check(resp["error"].get("data", {}).get("reason") == reason,
              "%s: expected %s, got %r" % (method, reason, resp["error"]))
        return resp["error"]

    def close(self):
        self.sock.close()


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def check_session(s, key=None):
    for name in ("id", "tenant", "key", "tool", "status", "createdAt", "lastUsedAt", "expiresAt", "ttlSeconds",
                 "turnCount", "resumeAttempts", "resumeSuccesses", "consecutiveFailures", "totalFailures",
                 "costUsd", "inputTokens", "outputTokens", "messageCount", "transcriptBytes", "metadata", "labels"):
        check(name in s, "session lacks %s: %r" % (name, s))
    for name in ("createdAt", "lastUsedAt", "expiresAt"):
        check(DATE.match(s[name]), "%s is not an ISO-8601 ms date: %r" % (name, s[name]))
    check(all(v is not None for v in s.values()), "a session member is null: %r" % s)
    check("leaseToken" not in s and "token" not in s.get("lease", {}), "the session exposes the lease token")
    if key is not None:
        check(s["key"] == key, "key %r != %r" % (s["key"], key))


def run(host, port):
    c = Conn(host, port)
    hello = c.ok("hello", {"client": {"name": "smoke", "version": "1"}, "protocolVersion": 1})
    for name in ("server", "protocolVersion", "tenant", "admin", "authRequired", "maxFrameBytes", "maxInFlight"):
        check(name in hello, "hello lacks %s" % name)
    check(hello["tenant"] == "local" and hello["protocolVersion"] == 1, "hello: %r" % hello)

    key = "smoke:%s" % uuid.uuid4().hex[:12]
    a1 = c.ok("session.acquire", {"key": key, "cwd": "/work/project", "holder": "smoke-runner"})
    check(a1["created"] is True, "first acquire should create")
    check(a1["decision"] == {"action": "fresh", "reason": "new", "fork": False}, "decision %r" % a1["decision"])
    lease = a1["lease"]
    check(isinstance(lease["token"], str) and lease["fence"] == 1 and lease["holder"] == "smoke-runner"
          and DATE.match(lease["expiresAt"]), "lease %r" % lease)
    check_session(a1["session"], key)
    check(a1["session"]["lease"]["fence"] == 1 and a1["session"].get("cwd") == "/work/project", "session lease/cwd")
    sid = a1["session"]["id"]

    # A second acquire while the lease is held: lease_held with the holder.
    e = c.err("session.acquire", {"key": key}, "lease_held")
    check(e["code"] == -32002 and e["data"].get("holder") == "smoke-runner", "lease_held data %r" % e)

    cli1 = str(uuid.uuid4())
    done = c.ok("session.complete", {
        "sessionId": sid, "lease": {"token": lease["token"], "fence": 1}, "outcome": "ok", "cliSessionId": cli1,
        "costUsd": 0.5, "inputTokens": 10, "outputTokens": 20,
        "messages": [{"role": "user", "content": "remember pineapple"},
                     {"role": "assistant", "content": "OK, I will remember pineapple.", "outputTokens": 7}]})
    check(done["chainExtended"] is True, "chainExtended")
    s = done["session"]
    check_session(s, key)
    check(s["cliSessionId"] == cli1 and s["turnCount"] == 1 and s["messageCount"] == 2 and s["costUsd"] == 0.5
          and s["inputTokens"] == 10 and s["outputTokens"] == 20 and "lease" not in s, "completed session %r" % s)

    # The old lease is gone: stale_lease.
    e = c.err("session.complete", {"sessionId": sid, "lease": {"token": lease["token"], "fence": 1},
                                   "outcome": "ok", "cliSessionId": cli1}, "stale_lease")
    check(e["code"] == -32003, "stale_lease code")

    # Second turn resumes the reported id; a new id extends the chain again.
    a2 = c.ok("session.acquire", {"key": key})
    check(a2["created"] is False and a2["decision"] == {"action": "resume", "cliSessionId": cli1, "fork": False},
          "resume decision %r" % a2["decision"])
    check(a2["lease"]["fence"] == 2 and a2["lease"]["holder"] == "smoke", "fence 2, holder = client name")
    cli2 = str(uuid.uuid4())
    done2 = c.ok("session.complete", {
        "sessionId": sid, "lease": {"token": a2["lease"]["token"], "fence": 2}, "outcome": "ok",
        "cliSessionId": cli2, "inputTokens": 1, "outputTokens": 2,
        "messages": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]})
    check(done2["chainExtended"] is True and done2["session"]["turnCount"] == 2
          and done2["session"]["resumeSuccesses"] == 1 and done2["session"]["messageCount"] == 4, "turn 2 %r" % done2)
    hist = c.ok("session.history", {"sessionId": sid})["chain"]
    check([(l["seq"], l["cliSessionId"], l["reason"]) for l in hist] == [(1, cli1, "created"), (2, cli2, "changed_by_cli")],
          "chain %r" % hist)

    # session.get by id and by key; not_found.
    g = c.ok("session.get", {"sessionId": sid})["session"]
    check_session(g, key)
    check(g["turnCount"] == 2 and g["cliSessionId"] == cli2, "get by id")
    check(c.ok("session.get", {"key": key})["session"]["id"] == sid, "get by key")
    c.err("session.get", {"key": key + ":missing"}, "not_found")
    c.err("session.get", {"key": 42}, "invalid_params")
    c.err("session.acquire", {}, "invalid_params")
    c.err("no.such.method", None, "method_not_found")

    # session.list: pages with a cursor, newest first.
    extra = ["%s:list:%d" % (key, i) for i in range(5)]
    for k in extra:
        c.ok("session.acquire", {"key": k})
    page1 = c.ok("session.list", {"limit": 3, "keyPrefix": key})
    check(len(page1["sessions"]) == 3 and "nextCursor" in page1, "list page 1 %r" % page1.keys())
    check([x["key"] for x in page1["sessions"]] == [extra[4], extra[3], extra[2]], "list order")
    for x in page1["sessions"]:
        check_session(x)
    page2 = c.ok("session.list", {"limit": 3, "keyPrefix": key, "cursor": page1["nextCursor"]})
    check([x["key"] for x in page2["sessions"]] == [extra[1], extra[0], key] and "nextCursor" not in page2,
          "list page 2 %r" % [x["key"] for x in page2["sessions"]])
    check(len(c.ok("session.list", {})["sessions"]) >= 1, "list without params")

    # messages.append / messages.list (tail and pages).
    app = c.ok("messages.append", {"sessionId": sid, "messages": [
        {"role": "user", "content": "five"}, {"role": "assistant", "content": "six", "inputTokens": 3}]})
    check(app == {"firstSeq": 5, "lastSeq": 6}, "append %r" % app)
    tail = c.ok("messages.list", {"sessionId": sid, "tail": 2})["messages"]
    check([(m["seq"], m["role"], m["content"]) for m in tail] == [(5, "user", "five"), (6, "assistant", "six")],
          "tail %r" % tail)
    check(tail[1].get("inputTokens") == 3 and "outputTokens" not in tail[1] and DATE.match(tail[0]["at"]),
          "message members %r" % tail[1])
    pg = c.ok("messages.list", {"sessionId": sid, "limit": 4})
    check([m["seq"] for m in pg["messages"]] == [1, 2, 3, 4] and pg.get("nextAfterSeq") == 4, "page %r" % pg)
    pg2 = c.ok("messages.list", {"sessionId": sid, "afterSeq": 4})
    check([m["seq"] for m in pg2["messages"]] == [5, 6] and "nextAfterSeq" not in pg2, "page 2 %r" % pg2)
    check(pg["messages"][1]["content"] == "OK, I will remember pineapple." and pg["messages"][1]["outputTokens"] == 7,
          "stored message %r" % pg["messages"][1])
    c.err("messages.append", {"sessionId": sid, "lease": {"token": "nope", "fence": 9},
                              "messages": [{"role": "user", "content": "x"}]}, "stale_lease")
    c.err("messages.list", {"sessionId": "no-such-id"}, "not_found")

    # A string id and a notification (no response) on the same connection.
    data = json.dumps({"jsonrpc": "2.0", "method": "session.get", "params": {"key": key}}).encode()
    c.send_raw(struct.pack(">I", len(data)) + data)
    data = json.dumps({"jsonrpc": "2.0", "id": "two", "method": "session.get", "params": {"key": key}}).encode()
    c.send_raw(struct.pack(">I", len(data)) + data)
    r = c.read_frame()
    check(r["id"] == "two" and r["result"]["session"]["id"] == sid, "string id / notification %r" % r)
    c.close()

    # Framing errors: zero length and oversized frames get an id-null error, then the close.
    for raw, reason in ((b"\x00\x00\x00\x00", "invalid_request"), (b"\x7f\xff\xff\xff", "too_large")):
        z = Conn(host, port)
        z.send_raw(raw)
        r = z.read_frame()
        check(r["id"] is None and r["error"]["data"]["reason"] == reason, "framing %r" % r)
        try:
            extra_bytes = z.sock.recv(1)
        except OSError:
            extra_bytes = b""
        check(extra_bytes == b"", "the server should close after a framing error")
        z.close()
    # Parse error keeps the connection.
    p = Conn(host, port)
    p.send_raw(struct.pack(">I", 5) + b"{nope")
    r = p.read_frame()
    check(r["id"] is None and r["error"]["code"] == -32700, "parse error %r" % r)
    check(p.ok("session.get", {"sessionId": sid})["session"]["key"] == key, "after a parse error")
    p.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", help="HOST:PORT of a running server; default: start naive_server.py")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()
    proc = None
    tmp = None
    try:
        if args.addr:
            host, _, port = args.addr.rpartition(":")
        else:
            tmp = tempfile.TemporaryDirectory(prefix="naive-smoke-")
            proc = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "naive_server.py"), "--listen", "127.0.0.1:0",
                 "--db", os.path.join(tmp.name, "naive.sqlite")],
                stdout=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 15
            line = ""
            import select
            while time.monotonic() < deadline:
                ready, _, _ = select.select([proc.stdout], [], [], 0.5)
                if ready:
                    line = proc.stdout.readline()
                    break
                if proc.poll() is not None:
                    break
            m = re.match(r"^LISTENING tcp (\S+):(\d+)$", line.strip())
            check(m is not None, "naive_server did not print LISTENING (got %r)" % line)
            host, port = m.group(1), m.group(2)
        started = time.monotonic()
        run(host, int(port))
        check(time.monotonic() - started < args.timeout, "smoke took too long")
        print("naive smoke: ok (%s:%s)" % (host, port))
        return 0
    except (AssertionError, EOFError, OSError, ValueError, KeyError) as e:
        print("naive smoke: FAILED: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
