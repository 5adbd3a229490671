"""Replays golden frame scenarios (docs/PROTOCOL.md, "Golden fixtures") over a raw socket."""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from typing import Any, Dict, List, Optional

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$")
_ABSENT = object()


class Mismatch(AssertionError):
    pass


def substitute(value: Any, refs: Dict[str, Any]) -> Any:
    """Replace every string ``"$ref:NAME"`` with the captured value."""
    if isinstance(value, str) and value.startswith("$ref:"):
        name = value[5:]
        if name not in refs:
            raise Mismatch(f"$ref:{name} used before it was captured")
        return refs[name]
    if isinstance(value, dict):
        return {k: substitute(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, refs) for v in value]
    return value


def match(expect: Any, actual: Any, refs: Dict[str, Any], path: str = "$") -> None:
    """Raise :class:`Mismatch` unless ``actual`` matches the pattern ``expect``."""
    if isinstance(expect, str) and expect.startswith("$"):
        if expect == "$any":
            return
        if actual is _ABSENT:
            raise Mismatch(f"{path}: missing (expected {expect})")
        if expect == "$string":
            if not isinstance(actual, str):
                raise Mismatch(f"{path}: expected a string, got {actual!r}")
            return
        if expect == "$number":
            if isinstance(actual, bool) or not isinstance(actual, (int, float)):
                raise Mismatch(f"{path}: expected a number, got {actual!r}")
            return
        if expect == "$date":
            if not isinstance(actual, str) or not DATE_RE.match(actual):
                raise Mismatch(f"{path}: expected an ISO-8601 date, got {actual!r}")
            return
        if expect.startswith("$capture:"):
            refs[expect[len("$capture:"):]] = actual
            return
        if expect.startswith("$ref:"):
            expect = substitute(expect, refs)
        # any other "$..." string is a literal
    if actual is _ABSENT:
        raise Mismatch(f"{path}: missing (expected {expect!r})")
    if isinstance(expect, dict):
        if not isinstance(actual, dict):
            raise Mismatch(f"{path}: expected an object, got {actual!r}")
        for k, v in expect.items():
            match(v, actual.get(k, _ABSENT), refs, f"{path}.{k}")
        return
    if isinstance(expect, list):
        if not isinstance(actual, list) or len(actual) != len(expect):
            raise Mismatch(f"{path}: expected an array of {len(expect)}, got {actual!r}")
        for i, (e, a) in enumerate(zip(expect, actual)):
            match(e, a, refs, f"{path}[{i}]")
        return
    if isinstance(expect, bool) or isinstance(actual, bool) or expect is None or actual is None:
        if expect is not actual and not (expect == actual and type(expect) is type(actual)):
            raise Mismatch(f"{path}: expected {expect!r}, got {actual!r}")
        return
    if expect != actual:
        raise Mismatch(f"{path}: expected {expect!r}, got {actual!r}")


class RawConnection:
    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buffered: List[Dict[str, Any]] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_exact(self, n: int) -> Optional[bytes]:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def read_frame(self) -> Optional[Dict[str, Any]]:
        header = self._recv_exact(4)
        if header is None:
            return None
        (n,) = struct.unpack(">I", header)
        payload = self._recv_exact(n)
        if payload is None:
            raise Mismatch("the server closed the connection in the middle of a frame")
        return json.loads(payload)

    def next_response(self, want_id: Any = _ABSENT) -> Dict[str, Any]:
        """The next frame, or (when ``want_id`` is given) the first one with that id."""
        for i, msg in enumerate(self.buffered):
            if want_id is _ABSENT or msg.get("id") == want_id:
                return self.buffered.pop(i)
        while True:
            try:
                msg = self.read_frame()
            except socket.timeout:
                got = f"; it sent other frames meanwhile: {self.buffered!r}" if self.buffered else ""
                raise Mismatch(f"no response within {self.timeout:g} s{got}") from None
            if msg is None:
                raise Mismatch("the server closed the connection instead of answering")
            if want_id is _ABSENT or msg.get("id") == want_id:
                return msg
            self.buffered.append(msg)

    def expect_nothing(self, wait: float = 0.3) -> None:
        """No frame arrives within ``wait`` seconds."""
        if self.buffered:
            raise Mismatch(f"expected no response, got {self.buffered[0]!r}")
        self.sock.settimeout(wait)
        try:
            msg = self.read_frame()
        except socket.timeout:
            return
        finally:
            self.sock.settimeout(self.timeout)
        raise Mismatch(f"expected no response, got {msg!r}")

    def expect_close(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(4096)
            except ConnectionResetError:
                return
            except socket.timeout:
                break
            if not chunk:
                return
        raise Mismatch("the server did not close the connection")

    def close(self) -> None:
        self.sock.close()


def replay(scenario: Dict[str, Any], host: str, port: int) -> None:
    refs: Dict[str, Any] = {}
    conn = RawConnection(host, port)
    try:
        for n, step in enumerate(scenario.get("steps", []), 1):
            where = f"step {n}"
            if "send" in step:
                message = substitute(step["send"], refs)
                payload = json.dumps(message).encode("utf-8")
                conn.send(struct.pack(">I", len(payload)) + payload)
            elif "sendRaw" in step:
                conn.send(bytes.fromhex("".join(step["sendRaw"].split())))
            if "expect" in step:
                expect = step["expect"]
                want = _ABSENT
                if isinstance(expect, dict) and "id" in expect:
                    candidate = substitute(expect["id"], refs) if isinstance(expect["id"], str) else expect["id"]
                    # Null-id errors come in order; requests with an id are matched by id.
                    if candidate is not None and not (isinstance(candidate, str) and candidate.startswith("$")):
                        want = candidate
                try:
                    actual = conn.next_response(want)
                    match(expect, actual, refs)
                except Mismatch as exc:
                    raise Mismatch(f"{where}: {exc}\n  sent: {step.get('send', step.get('sendRaw'))}") from None
            if step.get("expectNothing"):
                try:
                    conn.expect_nothing()
                except Mismatch as exc:
                    raise Mismatch(f"{where}: {exc}") from None
            if step.get("expectClose"):
                try:
                    conn.expect_close()
                except Mismatch as exc:
                    raise Mismatch(f"{where}: {exc}") from None
    finally:
        conn.close()
