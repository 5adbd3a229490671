"""A well-behaved sessiond client for latency measurement, run as its own process.

usage: probe.py HOST:PORT OUTFILE INTERVAL_SECONDS [TOKEN]

Creates the tiny session `probe:tiny`, prints READY, then sends one `session.get` every INTERVAL
seconds on one connection, waiting for each answer, and appends `<monotonic start> <latency ms>
<ok|error reason>` lines to OUTFILE until SIGTERM (or 10 minutes, whichever comes first).
"""
import json
import signal
import socket
import struct
import sys
import time

MAX_SECONDS = 600


def main() -> int:
    addr, out_path, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
    token = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""

    def call(id, method, params, timeout=10.0):
        nonlocal buf
        payload = json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).encode()
        sock.sendall(struct.pack(">I", len(payload)) + payload)
        deadline = time.monotonic() + timeout
        while True:
            if len(buf) >= 4:
                (n,) = struct.unpack(">I", buf[:4])
                if len(buf) >= 4 + n:
                    body, buf = buf[4:4 + n], buf[4 + n:]
                    message = json.loads(body)
                    if message.get("id") == id:
                        return message
                    continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(method)
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk

    hello = {"client": {"name": "reliability-probe"}, "protocolVersion": 1}
    if token:
        hello["token"] = token
    answer = call(1, "hello", hello)
    if "error" in answer:
        print("HELLO-FAILED", json.dumps(answer), flush=True)
        return 1
    acquired = call(2, "session.acquire", {"key": "probe:tiny", "holder": "probe", "waitMs": 5000})
    if "result" in acquired:
        call(3, "session.release", {"sessionId": acquired["result"]["session"]["id"],
                                    "lease": {"token": acquired["result"]["lease"]["token"],
                                              "fence": acquired["result"]["lease"]["fence"]}})
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    out = open(out_path, "w")
    print("READY", flush=True)
    started = time.monotonic()
    next_at = started
    id = 10
    lines = []
    last_flush = started
    while not stop and time.monotonic() - started < MAX_SECONDS:
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
        t0 = time.monotonic()
        id += 1
        try:
            answer = call(id, "session.get", {"key": "probe:tiny"})
            status = "ok" if "result" in answer else "error:" + str(answer["error"].get("data", {}).get("reason"))
        except Exception as exc:  # noqa: BLE001 - any failure is recorded as such
            status = "error:" + type(exc).__name__
            lines.append(f"{t0:.6f} {(time.monotonic() - t0) * 1000:.3f} {status}\n")
            break
        t1 = time.monotonic()
        lines.append(f"{t0:.6f} {(t1 - t0) * 1000:.3f} {status}\n")
        next_at = max(next_at + interval, t1)
        if t1 - last_flush > 0.1:
            out.writelines(lines)
            out.flush()
            lines.clear()
            last_flush = t1
    out.writelines(lines)
    out.flush()
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
