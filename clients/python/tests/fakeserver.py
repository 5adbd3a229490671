"""A tiny scripted TCP server on 127.0.0.1:0 for bad-server-input tests."""

from __future__ import annotations

import json
import socket
import struct
import threading
from typing import Any, Callable, Dict, List, Optional


class Conn:
    """One accepted connection with frame helpers."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.requests: List[Dict[str, Any]] = []

    def recv_exact(self, n: int) -> Optional[bytes]:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def read(self) -> Optional[Dict[str, Any]]:
        """The next request, or None at EOF."""
        header = self.recv_exact(4)
        if header is None:
            return None
        (n,) = struct.unpack(">I", header)
        payload = self.recv_exact(n)
        if payload is None:
            return None
        msg = json.loads(payload)
        self.requests.append(msg)
        return msg

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, obj: Any) -> None:
        payload = json.dumps(obj).encode()
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def reply(self, request: Dict[str, Any], result: Any) -> None:
        self.send({"jsonrpc": "2.0", "id": request["id"], "result": result})

    def reply_error(self, request: Dict[str, Any], code: int, message: str, reason: str, **data: Any) -> None:
        self.send(
            {
                "jsonrpc": "2.0",
                "id": request["id"],
                "error": {"code": code, "message": message, "data": dict(data, reason=reason)},
            }
        )

    def answer_hello(self) -> Dict[str, Any]:
        req = self.read()
        assert req is not None and req["method"] == "hello", req
        self.reply(req, HELLO_RESULT)
        return req

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


HELLO_RESULT = {
    "server": {"name": "fake", "version": "0"},
    "protocolVersion": 1,
    "tenant": "local",
    "admin": True,
    "authRequired": False,
    "maxFrameBytes": 16 * 1024 * 1024,
    "maxInFlight": 64,
}


class FakeServer:
    """Runs ``handler(conn)`` for each accepted connection, in a thread."""

    def __init__(self, handler: Callable[[Conn], None]) -> None:
        self.handler = handler
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self.conns: List[Conn] = []
        self.errors: List[BaseException] = []
        self.done = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            conn = Conn(sock)
            self.conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: Conn) -> None:
        try:
            self.handler(conn)
        except (OSError, ValueError) as exc:  # the client hung up: fine for these tests
            self.errors.append(exc)
        except BaseException as exc:  # noqa: BLE001
            self.errors.append(exc)
        finally:
            self.done.set()

    def close(self) -> None:
        self._stop = True
        try:
            self.listener.close()
        except OSError:
            pass
        for conn in self.conns:
            try:
                conn.close()
            except OSError:
                pass

    def __enter__(self) -> "FakeServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
