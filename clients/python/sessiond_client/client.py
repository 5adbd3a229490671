"""The synchronous client: one connection, thread-safe, pipelined across threads."""

from __future__ import annotations

import itertools
import select
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Set, Union

from . import types as t
from ._api_sync import SyncAPI
from ._version import __version__
from ._wire import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_TIMEOUT,
    PROTOCOL_VERSION,
    Address,
    FrameBuffer,
    classify_response,
    compact,
    decode_payload,
    default_token,
    encode_frame,
    make_request,
    parse_address,
)
from .errors import (
    ConnectionClosed,
    ProtocolError,
    SessiondError,
    Timeout,
    TooLarge,
    error_from_response,
)
from .turn import Turn

__all__ = ["Client", "connect"]

DEFAULT_CLIENT_NAME = "sessiond-python"
_RECV_BYTES = 256 * 1024


class _Waiter:
    __slots__ = ("event", "method", "result", "error")

    def __init__(self, method: str) -> None:
        self.event = threading.Event()
        self.method = method
        self.result: Any = None
        self.error: Optional[BaseException] = None


class Client(SyncAPI):
    """A blocking sessiond client over one TCP or Unix-socket connection.

    Connects and sends ``hello`` in the constructor. Safe to share between threads: calls from
    several threads are pipelined on the one connection and matched to their responses by id.

    Args:
        addr: ``HOST:PORT``, ``tcp://HOST:PORT``, ``unix:/path`` or ``/path``; default
            ``$SESSIOND_ADDR``, else ``127.0.0.1:7420``.
        token: API token for ``hello``; default ``$SESSIOND_TOKEN``.
        client_name: the name sent in ``hello`` (shown in the audit log and as the lease holder).
        timeout: default per-call timeout in seconds (30).
        connect_timeout: timeout for connecting (10 s).
        max_frame_bytes: the largest frame accepted from the server (16 MiB).
        hello: send ``hello`` on connect (default ``True``).

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        addr: Union[str, Address, None] = None,
        token: Optional[str] = None,
        *,
        client_name: str = DEFAULT_CLIENT_NAME,
        client_version: Optional[str] = __version__,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        hello: bool = True,
    ) -> None:
        self.address = parse_address(addr)
        self.token = default_token(token)
        self.client_name = client_name
        self.client_version = client_version
        self.timeout = float(timeout)
        self.max_frame_bytes = int(max_frame_bytes)
        #: The ``hello`` result, once sent.
        self.server_info: Optional[t.HelloResult] = None
        #: Called with each server notification (a ``method`` and no ``id``); ignored when ``None``.
        self.on_notification: Optional[Callable[[Dict[str, Any]], None]] = None

        self._ids = itertools.count(1)
        self._pending: Dict[int, _Waiter] = {}
        self._abandoned: Set[int] = set()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._closed: Optional[SessiondError] = None
        self._closing = False
        self._server_max_frame: Optional[int] = None

        self._sock = self._connect(connect_timeout)
        self._reader = threading.Thread(target=self._read_loop, name=f"sessiond-reader {self.address}", daemon=True)
        self._reader.start()
        if hello:
            try:
                self.server_info = self.hello(
                    self.client_name, version=self.client_version, token=self.token, protocol_version=PROTOCOL_VERSION
                )
            except BaseException:
                self.close()
                raise
            max_frame = self.server_info.get("maxFrameBytes") if isinstance(self.server_info, dict) else None
            if isinstance(max_frame, int) and max_frame > 0:
                self._server_max_frame = max_frame

    # -- connection --------------------------------------------------------------------------

    def _connect(self, connect_timeout: float) -> socket.socket:
        addr = self.address
        try:
            if addr.kind == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(connect_timeout)
                    sock.connect(addr.path)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((addr.host, addr.port), timeout=connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except socket.timeout:
            raise Timeout(f"could not connect to sessiond at {addr} within {connect_timeout} s") from None
        except OSError as exc:
            raise ConnectionClosed(f"could not connect to sessiond at {addr}: {exc}") from exc
        sock.settimeout(None)
        return sock

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def close(self) -> None:
        """Close the connection. Calls still waiting fail with :class:`ConnectionClosed`."""
        self._closing = True
        self._fail(ConnectionClosed("the client closed the connection"))
        if threading.current_thread() is not self._reader and self._reader.is_alive():
            self._reader.join(timeout=5)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            if self._closed is None:
                self._closing = True
                self._sock.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed is not None else "open"
        return f"<sessiond_client.Client {self.address} {state}>"

    def _fail(self, error: SessiondError) -> None:
        """Mark the connection dead, close the socket and fail every waiting call with ``error``."""
        with self._lock:
            first = self._closed is None
            if first:
                self._closed = (
                    error
                    if isinstance(error, ConnectionClosed)
                    else ConnectionClosed(f"the connection is closed after an earlier error: {error}")
                )
            waiters = list(self._pending.items())
            self._pending.clear()
        if first:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self._sock.close()
            except OSError:
                pass
        for _, waiter in waiters:
            waiter.error = _copy_error(error, waiter.method)
            waiter.event.set()

    # -- calls -------------------------------------------------------------------------------

    def call(
        self, method: str, params: Optional[Mapping[str, Any]] = None, *, timeout: Optional[float] = None
    ) -> Any:
        """Send one request and wait for its result.

        Raises the :class:`SessiondError` subclass for the response's ``data.reason``,
        :class:`Timeout` when no response arrives within ``timeout`` (default: the client's),
        :class:`ConnectionClosed` or :class:`ProtocolError` when the connection fails."""
        limit = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + limit
        rid = next(self._ids)
        frame = encode_frame(make_request(rid, method, params))
        cap = self._server_max_frame
        if cap is not None and len(frame) - 4 > cap:
            raise TooLarge(
                f"request of {len(frame) - 4} bytes exceeds the server's maximum frame of {cap} bytes",
                method=method,
            )
        waiter = _Waiter(method)
        with self._lock:
            if self._closed is not None:
                raise _copy_error(self._closed, method)
            self._pending[rid] = waiter
        try:
            self._send(frame, deadline, method)
            if not waiter.event.wait(max(0.0, deadline - time.monotonic())):
                raise Timeout(f"no response to {method} within {limit:g} s", method=method)
        except BaseException:
            with self._lock:
                if self._pending.pop(rid, None) is not None and self._closed is None:
                    self._abandoned.add(rid)
            raise
        if waiter.error is not None:
            raise waiter.error
        return waiter.result

    def _send(self, frame: bytes, deadline: float, method: str) -> None:
        with self._send_lock:
            if self._closed is not None:
                raise _copy_error(self._closed, method)
            view = memoryview(frame)
            sent = 0
            dontwait = getattr(socket, "MSG_DONTWAIT", 0)
            try:
                if not dontwait:  # pragma: no cover - platforms without MSG_DONTWAIT
                    self._sock.sendall(frame)
                    return
                while sent < len(frame):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise socket.timeout()
                    _, writable, _ = select.select([], [self._sock], [], remaining)
                    if not writable:
                        continue
                    try:
                        sent += self._sock.send(view[sent:], dontwait)
                    except (BlockingIOError, InterruptedError):
                        continue
            except socket.timeout:
                if sent:  # half a frame on the wire: the stream cannot be used any more
                    self._fail(Timeout(f"timed out sending {method}; connection closed", method=method))
                raise Timeout(f"timed out sending {method} (the server is not reading)", method=method) from None
            except (OSError, ValueError) as exc:
                if self._closed is not None:
                    raise _copy_error(self._closed, method) from None
                error = ConnectionClosed(f"connection lost while sending {method}: {exc}", method=method)
                self._fail(error)
                raise _copy_error(error, method) from exc

    # -- reading -----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        frames = FrameBuffer(self.max_frame_bytes)
        sock = self._sock
        while True:
            try:
                data = sock.recv(_RECV_BYTES)
            except OSError as exc:
                if self._closing or self._closed is not None:
                    return
                self._fail(ConnectionClosed(f"connection to sessiond lost: {exc}"))
                return
            if not data:
                if self._closed is not None:
                    return
                if frames.mid_frame:
                    self._fail(
                        ProtocolError("the server closed the connection in the middle of a frame (truncated frame)")
                    )
                else:
                    self._fail(ConnectionClosed("the server closed the connection"))
                return
            frames.feed(data)
            try:
                for payload in frames.frames():
                    self._dispatch(decode_payload(payload))
            except SessiondError as exc:
                self._fail(exc)
                return

    def _dispatch(self, message: Dict[str, Any]) -> None:
        kind, value = classify_response(message)
        if kind == "notification":
            callback = self.on_notification
            if callback is not None:
                try:
                    callback(message)
                except Exception:  # a callback bug must not kill the connection
                    pass
            return
        if kind == "orphan_error":
            # The server could not tie the error to a request (a framing error): it closes next.
            error = error_from_response(value)
            error.message = f"{error.message} (the server reported a connection error and closes the connection)"
            raise error
        with self._lock:
            waiter = self._pending.pop(value, None) if isinstance(value, int) else None
            if waiter is None:
                if isinstance(value, int) and value in self._abandoned:
                    self._abandoned.discard(value)  # a late answer to a call that timed out
                    return
                raise ProtocolError(f"the server sent a response with an unknown id: {value!r}")
        if "error" in message:
            waiter.error = error_from_response(message["error"], waiter.method)
        else:
            waiter.result = message.get("result")
        waiter.event.set()

    # -- turns -------------------------------------------------------------------------------

    def turn(
        self,
        key: str,
        *,
        tool: Optional[str] = None,
        cwd: Optional[str] = None,
        holder: Optional[str] = None,
        ttl_seconds: Optional[int] = None,
        lease_seconds: Optional[int] = None,
        wait_ms: Optional[int] = 600_000,
        metadata: Optional[Mapping[str, Any]] = None,
        labels: Optional[Iterable[str]] = None,
        renew: bool = True,
        renew_every: Optional[float] = None,
    ) -> Turn:
        """A context manager for one turn: acquires the key (waiting up to ``wait_ms`` for a held
        lease), renews the lease in the background every lease/3 while the body runs, and on exit
        completes with the outcome the body set (``t.ok(...)``, ``t.resume_failed(...)``,
        ``t.error(...)``), or with outcome ``error`` when the body raises; with no outcome set it
        just releases the lease.

        ::

            with client.turn("plan:42", cwd=os.getcwd()) as t:
                if t.resume_id: ...        # run the CLI with --resume t.resume_id
                t.ok(new_id, cost_usd=0.01, messages=[("user", prompt), ("assistant", answer)])
        """
        acquire_args = compact(
            tool=tool,
            cwd=cwd,
            holder=holder,
            ttl_seconds=ttl_seconds,
            lease_seconds=lease_seconds,
            wait_ms=wait_ms,
            metadata=metadata,
            labels=labels,
        )
        return Turn(self, key, acquire_args, renew=renew, renew_every=renew_every)


def _copy_error(error: SessiondError, method: Optional[str]) -> SessiondError:
    """A fresh exception like ``error`` (so concurrent callers do not share one traceback)."""
    copy = type(error)(error.message, reason=error.reason, code=error.code, data=error.data, method=method)
    return copy


def connect(addr: Union[str, Address, None] = None, token: Optional[str] = None, **kwargs: Any) -> Client:
    """Open a :class:`Client` (same arguments)."""
    return Client(addr, token, **kwargs)
