"""Errors raised by the sessiond client.

Every error is a :class:`SessiondError`. Errors the server reports carry the stable
``data.reason`` string of docs/PROTOCOL.md as ``.reason`` and map to one subclass per reason;
a reason this client does not know maps to :class:`SessiondError` itself. Branch on the class or
on ``.reason``, never on ``.message``.

Client-side failures are :class:`Timeout` (no response in time), :class:`ConnectionClosed` (the
connection is gone) and :class:`ProtocolError` (the server sent bytes that are not a valid frame
or response).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Type

__all__ = [
    "SessiondError",
    "ParseError",
    "InvalidRequest",
    "MethodNotFound",
    "InvalidParams",
    "InternalError",
    "NotFound",
    "LeaseHeld",
    "StaleLease",
    "Unauthenticated",
    "Forbidden",
    "TooLarge",
    "RateLimited",
    "ShuttingDown",
    "Conflict",
    "StorageFull",
    "Unavailable",
    "Overloaded",
    "Timeout",
    "ConnectionClosed",
    "ProtocolError",
    "error_from_response",
    "REASON_CODES",
]


class SessiondError(Exception):
    """Base class of every sessiond client error.

    Attributes:
        reason: the stable reason string (``data.reason``), e.g. ``"lease_held"``.
        code: the JSON-RPC error code (e.g. ``-32002``), or ``None`` for client-side errors
            that have no wire code.
        message: the human-readable message (do not branch on it).
        data: the whole ``error.data`` object (``reason`` included), e.g. ``holder`` and
            ``expiresAt`` for ``lease_held``.
        method: the method of the failed call, when known.
    """

    #: The reason this class stands for (``None`` on the base class).
    REASON: Optional[str] = None
    #: The JSON-RPC code that goes with ``REASON``.
    CODE: Optional[int] = None

    def __init__(
        self,
        message: str,
        *,
        reason: Optional[str] = None,
        code: Optional[int] = None,
        data: Optional[Mapping[str, Any]] = None,
        method: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason: Optional[str] = reason if reason is not None else self.REASON
        self.code: Optional[int] = code if code is not None else self.CODE
        self.data: Dict[str, Any] = dict(data) if data else {}
        if self.reason is not None and "reason" not in self.data:
            self.data["reason"] = self.reason
        self.method = method

    def __str__(self) -> str:
        where = f" ({self.method})" if self.method else ""
        if self.reason:
            return f"{self.reason}: {self.message}{where}"
        return f"{self.message}{where}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, reason={self.reason!r}, "
            f"code={self.code!r}, data={self.data!r})"
        )

    def __reduce__(self) -> Any:  # keep errors picklable (multiprocessing, concurrent.futures)
        return (
            _rebuild,
            (type(self), self.message, self.reason, self.code, self.data, self.method),
        )


def _rebuild(
    cls: Type[SessiondError],
    message: str,
    reason: Optional[str],
    code: Optional[int],
    data: Dict[str, Any],
    method: Optional[str],
) -> SessiondError:
    return cls(message, reason=reason, code=code, data=data, method=method)


class ParseError(SessiondError):
    """The server could not parse the request JSON."""

    REASON = "parse_error"
    CODE = -32700


class InvalidRequest(SessiondError):
    """Not a JSON-RPC request object, or a bad frame."""

    REASON = "invalid_request"
    CODE = -32600


class MethodNotFound(SessiondError):
    """Unknown method."""

    REASON = "method_not_found"
    CODE = -32601


class InvalidParams(SessiondError):
    """A missing or wrong-typed parameter; the message names it."""

    REASON = "invalid_params"
    CODE = -32602


class InternalError(SessiondError):
    """A server bug or unexpected storage error."""

    REASON = "internal"
    CODE = -32603


class NotFound(SessiondError):
    """No such session, transcript or token in the caller's tenant."""

    REASON = "not_found"
    CODE = -32001


class LeaseHeld(SessiondError):
    """Another client holds the lease (``data['holder']``, ``data['expiresAt']``)."""

    REASON = "lease_held"
    CODE = -32002


class StaleLease(SessiondError):
    """The lease token or fence is not current, or the lease expired."""

    REASON = "stale_lease"
    CODE = -32003


class Unauthenticated(SessiondError):
    """Auth is on and the connection has no valid token."""

    REASON = "unauthenticated"
    CODE = -32004


class Forbidden(SessiondError):
    """The method needs an admin token."""

    REASON = "forbidden"
    CODE = -32005


class TooLarge(SessiondError):
    """A frame, field or transcript over its limit."""

    REASON = "too_large"
    CODE = -32006


class RateLimited(SessiondError):
    """Too many failed hellos (``data['retryAfterMs']``)."""

    REASON = "rate_limited"
    CODE = -32007


class ShuttingDown(SessiondError):
    """The server is draining; retry later."""

    REASON = "shutting_down"
    CODE = -32008


class Conflict(SessiondError):
    """The request conflicts with stored state (e.g. ``data['size']``)."""

    REASON = "conflict"
    CODE = -32009


class StorageFull(SessiondError):
    """The disk or database size cap is full."""

    REASON = "storage_full"
    CODE = -32010


class Unavailable(SessiondError):
    """The database is temporarily unusable."""

    REASON = "unavailable"
    CODE = -32011


class Overloaded(SessiondError):
    """Too many connections."""

    REASON = "overloaded"
    CODE = -32012


class Timeout(SessiondError, TimeoutError):
    """No response within the call's timeout (client side, reason ``timeout``).

    Also a :class:`TimeoutError`.
    """

    REASON = "timeout"
    CODE = -32013


class ConnectionClosed(SessiondError, ConnectionError):
    """The connection is closed (by the server, by :meth:`close`, or after a fatal error).

    Also a :class:`ConnectionError`.
    """

    REASON = "connection_closed"
    CODE = None


class ProtocolError(SessiondError):
    """The server sent something that is not a valid frame or JSON-RPC response: a truncated
    frame, a frame over the client's cap, invalid JSON, or a response with an unknown id.
    The connection is closed afterwards."""

    REASON = "protocol_error"
    CODE = None


_BY_REASON: Dict[str, Type[SessiondError]] = {
    str(cls.REASON): cls
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        InternalError,
        NotFound,
        LeaseHeld,
        StaleLease,
        Unauthenticated,
        Forbidden,
        TooLarge,
        RateLimited,
        ShuttingDown,
        Conflict,
        StorageFull,
        Unavailable,
        Overloaded,
        Timeout,
    )
}

#: reason -> JSON-RPC code, as in docs/PROTOCOL.md.
REASON_CODES: Dict[str, int] = {r: c.CODE for r, c in _BY_REASON.items() if c.CODE is not None}
_BY_CODE: Dict[int, str] = {c: r for r, c in REASON_CODES.items()}


def error_from_response(error: Any, method: Optional[str] = None) -> SessiondError:
    """Build the exception for a JSON-RPC ``error`` member.

    The class comes from ``data.reason``; when that is missing, from the numeric code; an unknown
    reason gives a plain :class:`SessiondError` that still carries the reason string.
    """
    if not isinstance(error, dict):
        return ProtocolError(f"malformed error member in response: {error!r}"[:300], method=method)
    message = error.get("message")
    if not isinstance(message, str):
        message = str(message) if message is not None else "(no message)"
    code = error.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        code = None
    data = error.get("data")
    data = dict(data) if isinstance(data, dict) else {}
    reason = data.get("reason")
    if not isinstance(reason, str):
        reason = _BY_CODE.get(code) if code is not None else None
    cls = _BY_REASON.get(reason, SessiondError) if reason else SessiondError
    if cls is Timeout:  # a server never sends "timeout"; keep it a plain server error
        cls = SessiondError
    return cls(message, reason=reason, code=code, data=data, method=method)
