"""Typed methods of :class:`~sessiond_client.Client`, one per protocol method.

Naming: the wire name with ``session.`` dropped and ``.`` turned into ``_`` (``session.acquire`` ->
``acquire``, ``messages.list`` -> ``messages_list``). Arguments are snake_case keywords; ``None``
means "not sent" (the server default applies). Every method takes ``timeout`` (seconds) to override
the client's default for that call.

_api_async.py is generated from this file by tools/gen_async_api.py: edit this file, then run
``python3 tools/gen_async_api.py``.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union, cast

from . import types as t
from ._wire import PROTOCOL_VERSION, b64decode, b64encode, compact, iso_time, lease_proof, message_list

LeaseLike = Union[t.Lease, t.LeaseProof, Mapping[str, Any]]
TimeLike = Union[str, _dt.datetime]
MessageLike = Union[t.NewMessage, Mapping[str, Any], Sequence[str]]


class SyncAPI:
    """Mixin: needs ``call(method, params, timeout=...)`` and ``timeout``."""

    timeout: float

    def call(self, method: str, params: Optional[Mapping[str, Any]] = None, *, timeout: Optional[float] = None) -> Any:
        raise NotImplementedError

    def _wait_timeout(self, timeout: Optional[float], wait_ms: Optional[int]) -> Optional[float]:
        """A call that may wait ``wait_ms`` on the server gets that much extra time."""
        if timeout is not None or not wait_ms:
            return timeout
        return self.timeout + wait_ms / 1000.0

    # -- handshake ---------------------------------------------------------------------------

    def hello(
        self,
        name: str,
        *,
        version: Optional[str] = None,
        token: Optional[str] = None,
        protocol_version: int = PROTOCOL_VERSION,
        timeout: Optional[float] = None,
    ) -> t.HelloResult:
        """``hello``: name the client and, when auth is on, authenticate the connection.

        The client sends it on connect already; call it again to present another token."""
        params = {"client": compact(name=name, version=version), "protocolVersion": protocol_version}
        if token:
            params["token"] = token
        return cast(t.HelloResult, self.call("hello", params, timeout=timeout))

    def health(self, *, timeout: Optional[float] = None) -> t.HealthResult:
        """``health``: liveness figures (callable without auth)."""
        return cast(t.HealthResult, self.call("health", None, timeout=timeout))

    # -- sessions and leases -----------------------------------------------------------------

    def acquire(
        self,
        key: str,
        *,
        tool: Optional[str] = None,
        cwd: Optional[str] = None,
        holder: Optional[str] = None,
        ttl_seconds: Optional[int] = None,
        lease_seconds: Optional[int] = None,
        wait_ms: Optional[int] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        labels: Optional[Iterable[str]] = None,
        timeout: Optional[float] = None,
    ) -> t.AcquireResult:
        """``session.acquire``: get-or-create the session for ``key`` and take its lease.

        Raises :class:`~sessiond_client.LeaseHeld` when another client holds the lease and it is not
        released within ``wait_ms``. The call's timeout is extended by ``wait_ms``."""
        params = compact(
            key=key,
            tool=tool,
            cwd=cwd,
            holder=holder,
            ttlSeconds=ttl_seconds,
            leaseSeconds=lease_seconds,
            waitMs=wait_ms,
            metadata=dict(metadata) if metadata is not None else None,
            labels=list(labels) if labels is not None else None,
        )
        return cast(
            t.AcquireResult,
            self.call("session.acquire", params, timeout=self._wait_timeout(timeout, wait_ms)),
        )

    def complete(
        self,
        session_id: str,
        lease: LeaseLike,
        outcome: str,
        *,
        cli_session_id: Optional[str] = None,
        reason: Optional[str] = None,
        cost_usd: Optional[float] = None,
        input_tokens: Optional[int] = None,
        output_tokens: Optional[int] = None,
        messages: Optional[Iterable[MessageLike]] = None,
        keep_lease: Optional[bool] = None,
        timeout: Optional[float] = None,
    ) -> t.CompleteResult:
        """``session.complete``: record a turn's outcome (``ok``, ``resume_failed`` or ``error``)
        and release the lease (unless ``keep_lease``)."""
        params = compact(
            sessionId=session_id,
            lease=lease_proof(lease),
            outcome=outcome,
            cliSessionId=cli_session_id,
            reason=reason,
            costUsd=cost_usd,
            inputTokens=input_tokens,
            outputTokens=output_tokens,
            messages=message_list(messages),
            keepLease=keep_lease,
        )
        return cast(t.CompleteResult, self.call("session.complete", params, timeout=timeout))

    def renew(
        self,
        session_id: str,
        lease: LeaseLike,
        *,
        lease_seconds: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> t.RenewResult:
        """``session.renew``: extend a held lease."""
        params = compact(sessionId=session_id, lease=lease_proof(lease), leaseSeconds=lease_seconds)
        return cast(t.RenewResult, self.call("session.renew", params, timeout=timeout))

    def release(self, session_id: str, lease: LeaseLike, *, timeout: Optional[float] = None) -> t.ReleaseResult:
        """``session.release``: give a lease back without recording a turn."""
        params = {"sessionId": session_id, "lease": lease_proof(lease)}
        return cast(t.ReleaseResult, self.call("session.release", params, timeout=timeout))

    def touch(
        self,
        session_id: Optional[str] = None,
        *,
        key: Optional[str] = None,
        ttl_seconds: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> t.SessionResult:
        """``session.touch``: mark a session (by id or key) used now."""
        params = compact(sessionId=session_id, key=key, ttlSeconds=ttl_seconds)
        return cast(t.SessionResult, self.call("session.touch", params, timeout=timeout))

    def get(
        self, session_id: Optional[str] = None, *, key: Optional[str] = None, timeout: Optional[float] = None
    ) -> t.SessionResult:
        """``session.get``: one session by id or key."""
        params = compact(sessionId=session_id, key=key)
        return cast(t.SessionResult, self.call("session.get", params, timeout=timeout))

    def list(
        self,
        *,
        status: Optional[str] = None,
        tool: Optional[str] = None,
        key_prefix: Optional[str] = None,
        label: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> t.SessionListResult:
        """``session.list``: one page of sessions; pass ``nextCursor`` as ``cursor`` for the next."""
        params = compact(status=status, tool=tool, keyPrefix=key_prefix, label=label, limit=limit, cursor=cursor)
        return cast(t.SessionListResult, self.call("session.list", params, timeout=timeout))

    def update(
        self,
        session_id: str,
        *,
        metadata: Optional[Mapping[str, Any]] = None,
        labels: Optional[Iterable[str]] = None,
        ttl_seconds: Optional[int] = None,
        status: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> t.SessionResult:
        """``session.update``: replace metadata or labels, set the TTL, or set status ``closed``/``active``."""
        params = compact(
            sessionId=session_id,
            metadata=dict(metadata) if metadata is not None else None,
            labels=[*labels] if labels is not None else None,
            ttlSeconds=ttl_seconds,
            status=status,
        )
        return cast(t.SessionResult, self.call("session.update", params, timeout=timeout))

    def delete(
        self, session_id: str, *, force: Optional[bool] = None, timeout: Optional[float] = None
    ) -> t.DeleteResult:
        """``session.delete``: remove a session with its chain, messages and transcripts."""
        params = compact(sessionId=session_id, force=force)
        return cast(t.DeleteResult, self.call("session.delete", params, timeout=timeout))

    def fork(self, session_id: str, key: str, *, timeout: Optional[float] = None) -> t.SessionResult:
        """``session.fork``: a child session under ``key``; its first turn resumes the parent's head
        with ``--fork-session``."""
        params = {"sessionId": session_id, "key": key}
        return cast(t.SessionResult, self.call("session.fork", params, timeout=timeout))

    def history(self, session_id: str, *, timeout: Optional[float] = None) -> t.HistoryResult:
        """``session.history``: the chain of CLI session ids, oldest first."""
        return cast(t.HistoryResult, self.call("session.history", {"sessionId": session_id}, timeout=timeout))

    # -- messages ----------------------------------------------------------------------------

    def messages_append(
        self,
        session_id: str,
        messages: Iterable[MessageLike],
        *,
        lease: Optional[LeaseLike] = None,
        timeout: Optional[float] = None,
    ) -> t.MessagesAppendResult:
        """``messages.append``: add messages (dicts ``{role, content}`` or ``(role, content)`` pairs)."""
        params = compact(
            sessionId=session_id,
            lease=lease_proof(lease) if lease is not None else None,
            messages=message_list(messages),
        )
        return cast(t.MessagesAppendResult, self.call("messages.append", params, timeout=timeout))

    def messages_list(
        self,
        session_id: str,
        *,
        after_seq: Optional[int] = None,
        tail: Optional[int] = None,
        limit: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> t.MessagesListResult:
        """``messages.list``: messages after ``after_seq``, or the last ``tail`` messages."""
        params = compact(sessionId=session_id, afterSeq=after_seq, tail=tail, limit=limit)
        return cast(t.MessagesListResult, self.call("messages.list", params, timeout=timeout))

    # -- transcripts -------------------------------------------------------------------------

    def transcript_append(
        self,
        session_id: str,
        lease: LeaseLike,
        cli_session_id: str,
        offset: int,
        data: Union[bytes, bytearray, memoryview],
        *,
        timeout: Optional[float] = None,
    ) -> t.TranscriptAppendResult:
        """``transcript.append``: store transcript ``data`` (raw bytes) at ``offset``."""
        params = {
            "sessionId": session_id,
            "lease": lease_proof(lease),
            "cliSessionId": cli_session_id,
            "offset": offset,
            "data": b64encode(data),
        }
        return cast(t.TranscriptAppendResult, self.call("transcript.append", params, timeout=timeout))

    def transcript_read(
        self,
        session_id: str,
        *,
        cli_session_id: Optional[str] = None,
        offset: Optional[int] = None,
        limit: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> t.TranscriptReadResult:
        """``transcript.read``: one chunk; ``data`` in the result is decoded to ``bytes``."""
        params = compact(sessionId=session_id, cliSessionId=cli_session_id, offset=offset, limit=limit)
        result = self.call("transcript.read", params, timeout=timeout)
        if isinstance(result, dict) and "data" in result:
            result["data"] = b64decode(result["data"])
        return cast(t.TranscriptReadResult, result)

    # -- audit, stats, tokens ----------------------------------------------------------------

    def audit_list(
        self,
        *,
        session_id: Optional[str] = None,
        action: Optional[str] = None,
        since: Optional[TimeLike] = None,
        until: Optional[TimeLike] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> t.AuditListResult:
        """``audit.list``: audit rows, newest first; ``since``/``until`` take ISO strings or datetimes."""
        params = compact(
            sessionId=session_id,
            action=action,
            since=iso_time(since),
            until=iso_time(until),
            limit=limit,
            cursor=cursor,
        )
        return cast(t.AuditListResult, self.call("audit.list", params, timeout=timeout))

    def stats(self, *, timeout: Optional[float] = None) -> t.StatsResult:
        """``stats``: the caller's tenant in figures."""
        return cast(t.StatsResult, self.call("stats", None, timeout=timeout))

    def tokens_create(
        self,
        tenant: str,
        *,
        admin: Optional[bool] = None,
        label: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> t.TokensCreateResult:
        """``tokens.create`` (admin): a new API token; the secret ``token`` is returned only once."""
        params = compact(tenant=tenant, admin=admin, label=label)
        return cast(t.TokensCreateResult, self.call("tokens.create", params, timeout=timeout))

    def tokens_list(self, *, timeout: Optional[float] = None) -> t.TokensListResult:
        """``tokens.list`` (admin): every token, without secrets."""
        return cast(t.TokensListResult, self.call("tokens.list", None, timeout=timeout))

    def tokens_revoke(self, token_id: str, *, timeout: Optional[float] = None) -> t.TokensRevokeResult:
        """``tokens.revoke`` (admin): revoke a token by its ``id`` (from ``info`` or ``tokens_list``)."""
        return cast(t.TokensRevokeResult, self.call("tokens.revoke", {"id": token_id}, timeout=timeout))

    # -- helpers -----------------------------------------------------------------------------

    def transcript_read_all(
        self,
        session_id: str,
        *,
        cli_session_id: Optional[str] = None,
        offset: int = 0,
        chunk_bytes: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> bytes:
        """Read a stored transcript from ``offset`` to its end, chunk by chunk."""
        parts: List[bytes] = []
        while True:
            chunk = self.transcript_read(
                session_id, cli_session_id=cli_session_id, offset=offset, limit=chunk_bytes, timeout=timeout
            )
            data = chunk["data"]
            parts.append(data)
            offset += len(data)
            if chunk["eof"] or not data or offset >= chunk["size"]:
                return b"".join(parts)

    def list_all(
        self,
        *,
        status: Optional[str] = None,
        tool: Optional[str] = None,
        key_prefix: Optional[str] = None,
        label: Optional[str] = None,
        page_size: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> List[t.Session]:
        """Every session matching the filters (follows ``nextCursor``)."""
        sessions: List[t.Session] = []
        cursor: Optional[str] = None
        while True:
            page = self.list(
                status=status,
                tool=tool,
                key_prefix=key_prefix,
                label=label,
                limit=page_size,
                cursor=cursor,
                timeout=timeout,
            )
            sessions.extend(page["sessions"])
            cursor = page.get("nextCursor")
            if not cursor:
                return sessions


