"""Turn context managers: acquire, renew in the background, complete or release on exit."""

from __future__ import annotations

import asyncio
import datetime as _dt
import threading
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional

from . import types as t
from ._wire import compact, message_list, parse_time
from .errors import ConnectionClosed, NotFound, SessiondError, StaleLease

if TYPE_CHECKING:  # pragma: no cover
    from .aio import AsyncClient
    from .client import Client

__all__ = ["Turn", "AsyncTurn", "TurnError"]

DEFAULT_LEASE_SECONDS = 600
_REASON_MAX = 200


class TurnError(RuntimeError):
    """A turn method was used in the wrong state (e.g. before the turn was acquired)."""


class _TurnBase:
    """What the body of a turn sees: the session, its lease, and the resume decision."""

    def __init__(
        self, key: str, acquire_args: Dict[str, Any], renew: bool, renew_every: Optional[float]
    ) -> None:
        self.key = key
        self._acquire_args = acquire_args
        self._renew_enabled = renew
        self._renew_every = renew_every
        #: The ``session.acquire`` result.
        self.acquired: Optional[t.AcquireResult] = None
        #: The session as acquired (``session["id"]``, ``session["cliSessionId"]``, …).
        self.session: t.Session = {}  # type: ignore[typeddict-item]
        #: The current lease (updated by background renewals).
        self.lease: t.Lease = {}  # type: ignore[typeddict-item]
        #: What to do: ``{"action": "resume", "cliSessionId": …, "fork": …}`` or ``{"action": "fresh", …}``.
        self.decision: t.Decision = {}  # type: ignore[typeddict-item]
        #: The stored transcript of the id to resume (``{cliSessionId, size}``), if any.
        self.transcript: Optional[t.TranscriptState] = None
        #: Whether the acquire created the session.
        self.created = False
        #: The ``session.complete`` result after exit (``None`` when the lease was only released).
        self.result: Optional[t.CompleteResult] = None
        #: The last error of a background renewal, if one failed.
        self.renew_error: Optional[BaseException] = None
        #: How many background renewals succeeded.
        self.renewals = 0
        self._outcome: Optional[Dict[str, Any]] = None
        self._finished = False

    # -- what the body reads -----------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return self.session["id"]

    @property
    def resume_id(self) -> Optional[str]:
        """The CLI session id to ``--resume``, or ``None`` when the turn starts fresh."""
        if self.decision.get("action") == "resume":
            return self.decision.get("cliSessionId")
        return None

    @property
    def is_resume(self) -> bool:
        return self.resume_id is not None

    @property
    def fork(self) -> bool:
        """Whether to resume with ``--fork-session`` (the first turn of a forked session)."""
        return bool(self.decision.get("fork")) and self.is_resume

    @property
    def fresh_reason(self) -> Optional[str]:
        """Why the turn starts fresh (``new``, ``expired``, ``non_resumable``, ``stale``, ``resume_failed``)."""
        return self.decision.get("reason") if self.decision.get("action") == "fresh" else None

    @property
    def outcome(self) -> Optional[str]:
        """The outcome the body set so far, if any."""
        return self._outcome["outcome"] if self._outcome else None

    def stored_transcript_size(self, cli_session_id: Optional[str]) -> int:
        """Bytes of ``cli_session_id``'s transcript the registry already holds (0 if unknown)."""
        tr = self.transcript
        if tr and cli_session_id and tr.get("cliSessionId") == cli_session_id:
            return int(tr.get("size", 0))
        return 0

    # -- what the body sets ------------------------------------------------------------------

    def ok(
        self,
        cli_session_id: str,
        *,
        cost_usd: Optional[float] = None,
        input_tokens: Optional[int] = None,
        output_tokens: Optional[int] = None,
        messages: Optional[Iterable[Any]] = None,
    ) -> None:
        """On exit, complete with outcome ``ok`` and the id the CLI reported."""
        if not cli_session_id:
            raise ValueError("ok() needs the CLI session id the CLI reported")
        self._outcome = compact(
            outcome="ok",
            cli_session_id=cli_session_id,
            cost_usd=cost_usd,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            messages=message_list(messages),
        )

    def resume_failed(self, reason: str) -> None:
        """On exit, complete with outcome ``resume_failed`` (the head could not be resumed)."""
        self._outcome = {"outcome": "resume_failed", "reason": reason}

    def error(self, reason: str) -> None:
        """On exit, complete with outcome ``error`` (the chain is unchanged)."""
        self._outcome = {"outcome": "error", "reason": reason}

    def clear_outcome(self) -> None:
        """Forget the outcome set so far (exit then only releases the lease)."""
        self._outcome = None

    # -- internals ---------------------------------------------------------------------------

    def _apply_acquire(self, result: t.AcquireResult) -> None:
        self.acquired = result
        self.session = result["session"]
        self.lease = result["lease"]
        self.decision = result["decision"]
        self.transcript = result.get("transcript")
        self.created = bool(result.get("created"))

    def _apply_kept(self, result: t.CompleteResult) -> None:
        self.session = result.get("session", self.session)
        if "lease" in result:
            self.lease = result["lease"]
        self.decision = result.get("decision") or {"action": "fresh", "reason": "resume_failed"}
        self.transcript = None

    def _renew_interval(self) -> float:
        if self._renew_every is not None:
            return max(0.05, float(self._renew_every))
        seconds = self._acquire_args.get("lease_seconds")
        if not seconds:
            seconds = _seconds_until(self.lease.get("expiresAt")) or DEFAULT_LEASE_SECONDS
        return max(0.5, float(seconds) / 3.0)

    def _check_open(self) -> None:
        if self.acquired is None:
            raise TurnError("the turn is not acquired yet (use it as a context manager)")
        if self._finished:
            raise TurnError("the turn is finished")

    def __repr__(self) -> str:
        action = self.decision.get("action", "?") if self.decision else "unacquired"
        return f"<{type(self).__name__} key={self.key!r} {action} resume_id={self.resume_id!r}>"


def _seconds_until(stamp: Any) -> Optional[float]:
    if not isinstance(stamp, str):
        return None
    try:
        left = (parse_time(stamp) - _dt.datetime.now(_dt.timezone.utc)).total_seconds()
    except ValueError:
        return None
    return left if 1.0 <= left <= 7 * 86400 else None  # ignore nonsense from clock skew


def _reason_for(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 1] + "…"


def _renew_should_stop(exc: BaseException) -> bool:
    return isinstance(exc, (StaleLease, NotFound, ConnectionClosed))


class Turn(_TurnBase):
    """A synchronous turn; see :meth:`Client.turn`."""

    def __init__(
        self,
        client: "Client",
        key: str,
        acquire_args: Dict[str, Any],
        *,
        renew: bool = True,
        renew_every: Optional[float] = None,
    ) -> None:
        super().__init__(key, acquire_args, renew, renew_every)
        self.client = client
        self._lease_lock = threading.RLock()
        self._stop = threading.Event()
        self._renewer: Optional[threading.Thread] = None

    def __enter__(self) -> "Turn":
        self._apply_acquire(self.client.acquire(self.key, **self._acquire_args))
        if self._renew_enabled:
            self._renewer = threading.Thread(target=self._renew_loop, name=f"sessiond-renew {self.key}", daemon=True)
            self._renewer.start()
        return self

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        self._stop_renewing()
        self.finish(exc)

    def _renew_loop(self) -> None:
        interval = self._renew_interval()
        while not self._stop.wait(interval):
            try:
                self.renew()
            except BaseException as exc:  # noqa: BLE001 - recorded for the body to inspect
                self.renew_error = exc
                if _renew_should_stop(exc) or not isinstance(exc, Exception):
                    return

    def _stop_renewing(self) -> None:
        self._stop.set()
        renewer = self._renewer
        if renewer is not None and renewer is not threading.current_thread():
            renewer.join()

    def renew(self, lease_seconds: Optional[int] = None) -> t.Lease:
        """Extend the lease now (the background renewal does this every lease/3)."""
        self._check_open()
        with self._lease_lock:
            seconds = lease_seconds if lease_seconds is not None else self._acquire_args.get("lease_seconds")
            result = self.client.renew(self.session_id, self.lease, lease_seconds=seconds)
            self.lease = result["lease"]
            self.renewals += 1
            return self.lease

    def restart_fresh(self, reason: str = "no_conversation_found") -> t.Decision:
        """The resume failed: record ``resume_failed`` now but keep the lease (``keepLease``), and
        switch this turn to the fresh decision the server returns, so the body can start over."""
        self._check_open()
        with self._lease_lock:
            result = self.client.complete(
                self.session_id, self.lease, "resume_failed", reason=reason, keep_lease=True
            )
            self._apply_kept(result)
        return self.decision

    def finish(
        self, exc: Optional[BaseException] = None, *, reason: Optional[str] = None
    ) -> Optional[t.CompleteResult]:
        """Complete (or release) now; what ``__exit__`` does. Idempotent.

        With ``exc``, completes with outcome ``error`` and ``reason`` (default: from ``exc``)."""
        if self._finished or self.acquired is None:
            return self.result
        self._stop_renewing()
        self._finished = True
        client, sid = self.client, self.session_id
        with self._lease_lock:
            if exc is None:
                if self._outcome is None:
                    client.release(sid, self.lease)
                else:
                    out = dict(self._outcome)
                    outcome = out.pop("outcome")
                    self.result = client.complete(sid, self.lease, outcome, **out)
                return self.result
            try:
                self.result = client.complete(sid, self.lease, "error", reason=reason or _reason_for(exc))
            except SessiondError:
                try:
                    client.release(sid, self.lease)
                except SessiondError:
                    pass
        return self.result


class AsyncTurn(_TurnBase):
    """An asyncio turn; see :meth:`AsyncClient.turn`. Use with ``async with``."""

    def __init__(
        self,
        client: "AsyncClient",
        key: str,
        acquire_args: Dict[str, Any],
        *,
        renew: bool = True,
        renew_every: Optional[float] = None,
    ) -> None:
        super().__init__(key, acquire_args, renew, renew_every)
        self.client = client
        self._lease_lock: Optional[asyncio.Lock] = None
        self._renewer: Optional["asyncio.Task[None]"] = None

    async def __aenter__(self) -> "AsyncTurn":
        self._lease_lock = asyncio.Lock()
        self._apply_acquire(await self.client.acquire(self.key, **self._acquire_args))
        if self._renew_enabled:
            self._renewer = asyncio.ensure_future(self._renew_loop())
        return self

    async def __aexit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        await self.finish(exc)

    async def _renew_loop(self) -> None:
        interval = self._renew_interval()
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded for the body to inspect
                self.renew_error = exc
                if _renew_should_stop(exc):
                    return

    async def _stop_renewing(self) -> None:
        task = self._renewer
        self._renewer = None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    async def renew(self, lease_seconds: Optional[int] = None) -> t.Lease:
        """Extend the lease now (the background renewal does this every lease/3)."""
        self._check_open()
        assert self._lease_lock is not None
        async with self._lease_lock:
            seconds = lease_seconds if lease_seconds is not None else self._acquire_args.get("lease_seconds")
            result = await self.client.renew(self.session_id, self.lease, lease_seconds=seconds)
            self.lease = result["lease"]
            self.renewals += 1
            return self.lease

    async def restart_fresh(self, reason: str = "no_conversation_found") -> t.Decision:
        """See :meth:`Turn.restart_fresh`."""
        self._check_open()
        assert self._lease_lock is not None
        async with self._lease_lock:
            result = await self.client.complete(
                self.session_id, self.lease, "resume_failed", reason=reason, keep_lease=True
            )
            self._apply_kept(result)
        return self.decision

    async def finish(
        self, exc: Optional[BaseException] = None, *, reason: Optional[str] = None
    ) -> Optional[t.CompleteResult]:
        """Complete (or release) now; what ``__aexit__`` does. Idempotent (see :meth:`Turn.finish`)."""
        if self._finished or self.acquired is None:
            return self.result
        await self._stop_renewing()
        self._finished = True
        client, sid = self.client, self.session_id
        if exc is None:
            if self._outcome is None:
                await client.release(sid, self.lease)
            else:
                out = dict(self._outcome)
                outcome = out.pop("outcome")
                self.result = await client.complete(sid, self.lease, outcome, **out)
            return self.result
        try:
            self.result = await client.complete(sid, self.lease, "error", reason=reason or _reason_for(exc))
        except SessiondError:
            try:
                await client.release(sid, self.lease)
            except SessiondError:
                pass
        return self.result


