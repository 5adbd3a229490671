"""The asyncio client: one connection, many concurrent calls matched by id."""

from __future__ import annotations

import asyncio
import itertools
import socket
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Set, Tuple, Union

from . import types as t
from ._api_async import AsyncAPI
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
from .client import DEFAULT_CLIENT_NAME, _copy_error
from .errors import ConnectionClosed, ProtocolError, SessiondError, Timeout, TooLarge, error_from_response
from .turn import AsyncTurn

__all__ = ["AsyncClient", "connect_async"]

_RECV_BYTES = 256 * 1024


class AsyncClient(AsyncAPI):
    """An asyncio sessiond client over one TCP or Unix-socket connection.

    Same arguments and methods as :class:`~sessiond_client.Client`, as coroutines. Many calls may
    run at once on the one connection (``asyncio.gather``); responses are matched by id and may
    arrive in any order.

    ::

        async with AsyncClient("127.0.0.1:7420") as c:
            r = await c.acquire("plan:42")

    or ``c = await AsyncClient.open(...)`` … ``await c.close()``.
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
        self.connect_timeout = float(connect_timeout)
        self.max_frame_bytes = int(max_frame_bytes)
        self.send_hello = hello
        #: The ``hello`` result, once sent.
        self.server_info: Optional[t.HelloResult] = None
        #: Called with each server notification (a ``method`` and no ``id``); ignored when ``None``.
        self.on_notification: Optional[Callable[[Dict[str, Any]], None]] = None

        self._ids = itertools.count(1)
        self._pending: Dict[int, Tuple["asyncio.Future[Any]", str]] = {}
        self._abandoned: Set[int] = set()
        self._reader: Optional[asyncio.StreamReader] = None
        self._writer: Optional[asyncio.StreamWriter] = None
        self._read_task: Optional["asyncio.Task[None]"] = None
        self._write_lock: Optional[asyncio.Lock] = None
        self._closed: Optional[SessiondError] = None
        self._connected = False
        self._server_max_frame: Optional[int] = None

    # -- connection --------------------------------------------------------------------------

    @classmethod
    async def open(
        cls, addr: Union[str, Address, None] = None, token: Optional[str] = None, **kwargs: Any
    ) -> "AsyncClient":
        """Create and connect a client."""
        client = cls(addr, token, **kwargs)
        await client.connect()
        return client

    async def connect(self) -> "AsyncClient":
        """Connect and send ``hello`` (once; later calls do nothing)."""
        if self._connected:
            return self
        if self._closed is not None:
            raise _copy_error(self._closed, None)
        addr = self.address
        try:
            if addr.kind == "unix":
                opening = asyncio.open_unix_connection(addr.path)
            else:
                opening = asyncio.open_connection(addr.host, addr.port)
            self._reader, self._writer = await asyncio.wait_for(opening, self.connect_timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"could not connect to sessiond at {addr} within {self.connect_timeout:g} s") from None
        except OSError as exc:
            raise ConnectionClosed(f"could not connect to sessiond at {addr}: {exc}") from exc
        sock = self._writer.get_extra_info("socket") if self._writer is not None else None
        if sock is not None and addr.kind == "tcp":
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover
                pass
        self._connected = True
        self._write_lock = asyncio.Lock()
        self._read_task = asyncio.ensure_future(self._read_loop())
        if self.send_hello:
            try:
                self.server_info = await self.hello(
                    self.client_name, version=self.client_version, token=self.token, protocol_version=PROTOCOL_VERSION
                )
            except BaseException:
                await self.close()
                raise
            max_frame = self.server_info.get("maxFrameBytes") if isinstance(self.server_info, dict) else None
            if isinstance(max_frame, int) and max_frame > 0:
                self._server_max_frame = max_frame
        return self

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def close(self) -> None:
        """Close the connection. Calls still waiting fail with :class:`ConnectionClosed`."""
        self._fail(ConnectionClosed("the client closed the connection"))
        task = self._read_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        writer = self._writer
        if writer is not None:
            try:
                await asyncio.wait_for(writer.wait_closed(), 5)
            except (asyncio.TimeoutError, OSError, asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    async def __aenter__(self) -> "AsyncClient":
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed is not None else ("open" if self._connected else "unconnected")
        return f"<sessiond_client.AsyncClient {self.address} {state}>"

    def _fail(self, error: SessiondError) -> None:
        first = self._closed is None
        if first:
            self._closed = (
                error
                if isinstance(error, ConnectionClosed)
                else ConnectionClosed(f"the connection is closed after an earlier error: {error}")
            )
            if self._writer is not None:
                try:
                    self._writer.close()
                except Exception:  # noqa: BLE001  # pragma: no cover
                    pass
        pending = list(self._pending.values())
        self._pending.clear()
        for future, method in pending:
            if not future.done():
                future.set_exception(_copy_error(error, method))

    # -- calls -------------------------------------------------------------------------------

    async def call(
        self, method: str, params: Optional[Mapping[str, Any]] = None, *, timeout: Optional[float] = None
    ) -> Any:
        """Send one request and wait for its result (see :meth:`Client.call`)."""
        if not self._connected:
            if self._closed is not None:
                raise _copy_error(self._closed, method)
            await self.connect()
        limit = self.timeout if timeout is None else float(timeout)
        rid = next(self._ids)
        frame = encode_frame(make_request(rid, method, params))
        cap = self._server_max_frame
        if cap is not None and len(frame) - 4 > cap:
            raise TooLarge(
                f"request of {len(frame) - 4} bytes exceeds the server's maximum frame of {cap} bytes",
                method=method,
            )
        if self._closed is not None:
            raise _copy_error(self._closed, method)
        future: "asyncio.Future[Any]" = asyncio.get_running_loop().create_future()
        self._pending[rid] = (future, method)
        try:
            return await asyncio.wait_for(self._send_and_wait(frame, future, method), limit)
        except asyncio.TimeoutError:
            raise Timeout(f"no response to {method} within {limit:g} s", method=method) from None
        finally:
            if self._pending.pop(rid, None) is not None and self._closed is None:
                self._abandoned.add(rid)  # timed out or cancelled: drop its late answer quietly

    async def _send_and_wait(self, frame: bytes, future: "asyncio.Future[Any]", method: str) -> Any:
        writer = self._writer
        assert writer is not None and self._write_lock is not None
        async with self._write_lock:
            if self._closed is not None:
                raise _copy_error(self._closed, method)
            try:
                writer.write(frame)
                await writer.drain()
            except (OSError, RuntimeError) as exc:
                if self._closed is None:
                    self._fail(ConnectionClosed(f"connection lost while sending {method}: {exc}"))
                if future.done():
                    return future.result()
                raise _copy_error(self._closed or ConnectionClosed("connection lost"), method) from exc
        return await future

    # -- reading -----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        reader = self._reader
        assert reader is not None
        frames = FrameBuffer(self.max_frame_bytes)
        while True:
            try:
                data = await reader.read(_RECV_BYTES)
            except asyncio.CancelledError:
                raise
            except OSError as exc:
                self._fail(ConnectionClosed(f"connection to sessiond lost: {exc}"))
                return
            if not data:
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
                except Exception:  # noqa: BLE001 - a callback bug must not kill the connection
                    pass
            return
        if kind == "orphan_error":
            error = error_from_response(value)
            error.message = f"{error.message} (the server reported a connection error and closes the connection)"
            raise error
        entry = self._pending.pop(value, None) if isinstance(value, int) else None
        if entry is None:
            if isinstance(value, int) and value in self._abandoned:
                self._abandoned.discard(value)
                return
            raise ProtocolError(f"the server sent a response with an unknown id: {value!r}")
        future, method = entry
        if future.done():
            return
        if "error" in message:
            future.set_exception(error_from_response(message["error"], method))
        else:
            future.set_result(message.get("result"))

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
    ) -> AsyncTurn:
        """``async with client.turn(key) as t:`` — see :meth:`Client.turn`."""
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
        return AsyncTurn(self, key, acquire_args, renew=renew, renew_every=renew_every)


async def connect_async(addr: Union[str, Address, None] = None, token: Optional[str] = None, **kwargs: Any) -> AsyncClient:
    """Open and connect an :class:`AsyncClient` (same arguments)."""
    return await AsyncClient.open(addr, token, **kwargs)
