"""Wire helpers shared by the sync and async clients: addresses, frames, params."""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
import struct
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple, Union

from .errors import ProtocolError

DEFAULT_ADDR = "127.0.0.1:7420"
DEFAULT_PORT = 7420
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
PROTOCOL_VERSION = 1
HEADER = struct.Struct(">I")


@dataclass(frozen=True)
class Address:
    """Where sessiond listens: ``kind`` is ``"tcp"`` (``host``, ``port``) or ``"unix"`` (``path``)."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(addr: Union[str, Address, None] = None) -> Address:
    """Parse an address as docs/PROTOCOL.md defines it.

    ``HOST:PORT``, ``tcp://HOST:PORT``, ``[::1]:PORT``, ``unix:/path``, ``unix:///path``, or a plain
    path starting with ``/``. ``None`` means ``$SESSIOND_ADDR``, else ``127.0.0.1:7420``.
    """
    if isinstance(addr, Address):
        return addr
    if addr is None:
        addr = os.environ.get("SESSIOND_ADDR") or DEFAULT_ADDR
    text = addr.strip()
    if not text:
        raise ValueError("empty sessiond address")
    if text.startswith("unix://"):
        path = text[len("unix://"):]
        if not path.startswith("/"):
            raise ValueError(f"unix address needs an absolute path: {addr!r}")
        return Address("unix", path=path)
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not path:
            raise ValueError(f"unix address without a path: {addr!r}")
        return Address("unix", path=path)
    if text.startswith("/"):
        return Address("unix", path=text)
    if text.startswith("tcp://"):
        text = text[len("tcp://"):].rstrip("/")
    if "://" in text:
        raise ValueError(f"unsupported address scheme: {addr!r}")
    host, port = _split_host_port(text, addr)
    return Address("tcp", host=host, port=port)


def _split_host_port(text: str, original: str) -> Tuple[str, int]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"bad IPv6 address: {original!r}")
        host = text[1:end]
        rest = text[end + 1:]
        if not rest:
            return host, DEFAULT_PORT
        if not rest.startswith(":"):
            raise ValueError(f"bad address: {original!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise ValueError(f"IPv6 addresses need brackets, e.g. [::1]:7420: {original!r}")
    else:
        host, port_text = text, str(DEFAULT_PORT)
    if not host:
        raise ValueError(f"address without a host: {original!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"bad port in address: {original!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in address: {original!r}")
    return host, port


def encode_frame(message: Mapping[str, Any]) -> bytes:
    """One frame: a 4-byte big-endian length, then the UTF-8 JSON."""
    payload = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return HEADER.pack(len(payload)) + payload


def check_length(length: int, max_frame_bytes: int) -> None:
    """Validate a frame length header read from the server."""
    if length == 0:
        raise ProtocolError("the server sent a zero-length frame")
    if length > max_frame_bytes:
        raise ProtocolError(
            f"the server sent a frame of {length} bytes, over the client's maximum of {max_frame_bytes} bytes"
        )


def decode_payload(payload: bytes) -> Dict[str, Any]:
    """Decode one frame payload into a JSON object, or raise :class:`ProtocolError`."""
    try:
        message = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"the server sent a frame that is not valid UTF-8: {exc}") from None
    except ValueError as exc:
        raise ProtocolError(f"the server sent a frame that is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"the server sent a JSON {type(message).__name__}, not an object")
    return message


class FrameBuffer:
    """Incremental frame decoder: feed bytes, take whole payloads."""

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._need: Optional[int] = None

    def feed(self, data: bytes) -> None:
        self._buf += data

    def frames(self) -> Iterator[bytes]:
        """Yield each complete payload; raises :class:`ProtocolError` on a bad header."""
        while True:
            if self._need is None:
                if len(self._buf) < 4:
                    return
                (length,) = HEADER.unpack_from(self._buf, 0)
                check_length(length, self.max_frame_bytes)
                del self._buf[:4]
                self._need = length
            if len(self._buf) < self._need:
                return
            payload = bytes(self._buf[: self._need])
            del self._buf[: self._need]
            self._need = None
            yield payload

    @property
    def mid_frame(self) -> bool:
        """Whether bytes of an unfinished frame are buffered (EOF now means a truncated frame)."""
        return self._need is not None or len(self._buf) > 0


def classify_response(message: Dict[str, Any]) -> Tuple[str, Any]:
    """Sort one decoded message from the server.

    Returns ``("notification", None)`` (a ``method`` and no ``id``: ignored),
    ``("orphan_error", error)`` (an error with ``"id": null``: the server could not tie it to a
    request and closes the connection), or ``("response", id)``. Anything else raises
    :class:`ProtocolError`.
    """
    if "id" not in message:
        if "method" in message:
            return "notification", None
        if "error" in message:
            return "orphan_error", message["error"]
        raise ProtocolError(f"the server sent a message with no id and no method: {_preview(message)}")
    rid = message["id"]
    if rid is None:
        if "error" in message:
            return "orphan_error", message["error"]
        raise ProtocolError(f"the server sent a result with a null id: {_preview(message)}")
    if isinstance(rid, bool) or not isinstance(rid, (int, str)):
        raise ProtocolError(f"the server sent a response with an invalid id: {_preview(message)}")
    if "result" not in message and "error" not in message:
        raise ProtocolError(f"the server sent a response with neither result nor error: {_preview(message)}")
    return "response", rid


def _preview(message: Any) -> str:
    text = json.dumps(message, ensure_ascii=False)
    return text if len(text) <= 200 else text[:200] + "…"


def make_request(rid: int, method: str, params: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    request: Dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        request["params"] = dict(params)
    return request


def compact(**fields: Any) -> Dict[str, Any]:
    """Drop the members whose value is ``None`` (optional params are omitted, never null)."""
    return {k: v for k, v in fields.items() if v is not None}


def lease_proof(lease: Any) -> Dict[str, Any]:
    """A LeaseProof ``{token, fence}`` from a Lease dict (or any mapping with those members)."""
    if isinstance(lease, Mapping):
        try:
            return {"token": lease["token"], "fence": lease["fence"]}
        except KeyError:
            raise ValueError("a lease needs 'token' and 'fence'") from None
    token = getattr(lease, "token", None)
    fence = getattr(lease, "fence", None)
    if token is None or fence is None:
        raise TypeError(f"not a lease: {lease!r}")
    return {"token": token, "fence": fence}


def iso_time(value: Union[str, _dt.datetime, None]) -> Optional[str]:
    """ISO-8601 UTC with milliseconds for datetimes; strings pass through."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    value = value.astimezone(_dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_time(value: str) -> _dt.datetime:
    """Parse a wire time (``2026-11-21T08:46:19.123Z``) into an aware datetime."""
    text = value.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    return _dt.datetime.fromisoformat(text)


def b64encode(data: Union[bytes, bytearray, memoryview]) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def b64decode(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ProtocolError("transcript data is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise ProtocolError(f"transcript data is not valid base64: {exc}") from None


def default_token(token: Optional[str]) -> Optional[str]:
    if token is not None:
        return token or None
    return os.environ.get("SESSIOND_TOKEN") or None


def message_list(messages: Any) -> Any:
    """Messages as the wire wants them (accepts dicts or ``(role, content)`` pairs)."""
    if messages is None:
        return None
    out = []
    for m in messages:
        if isinstance(m, Mapping):
            out.append(dict(m))
        elif isinstance(m, (tuple, list)) and len(m) == 2:
            out.append({"role": m[0], "content": m[1]})
        else:
            raise TypeError(f"a message is a dict {{role, content}} or a (role, content) pair, not {m!r}")
    return out
