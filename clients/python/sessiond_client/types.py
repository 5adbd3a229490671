"""Typed shapes of sessiond results (docs/PROTOCOL.md, "Objects" and "Methods").

Results are plain ``dict`` objects at run time, typed with these ``TypedDict`` classes. Field names
are the wire names (camelCase). Members the protocol marks optional are absent when they have no
value (never ``None``), so read them with ``.get()``. Members added by a newer server are kept.
Times are ISO-8601 UTC strings (``2026-11-21T08:46:19.123Z``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, TypedDict

__all__ = [
    "ClientInfo",
    "HelloResult",
    "HealthResult",
    "LeaseProof",
    "Lease",
    "LeaseState",
    "Decision",
    "TranscriptState",
    "Session",
    "NewMessage",
    "Message",
    "ChainLink",
    "AuditEntry",
    "TokenInfo",
    "AcquireResult",
    "CompleteResult",
    "RenewResult",
    "ReleaseResult",
    "SessionResult",
    "SessionListResult",
    "DeleteResult",
    "HistoryResult",
    "MessagesAppendResult",
    "MessagesListResult",
    "TranscriptAppendResult",
    "TranscriptReadResult",
    "AuditListResult",
    "StatsResult",
    "TokensCreateResult",
    "TokensListResult",
    "TokensRevokeResult",
    "ReasonCount",
    "AgeBucket",
    "Outcome",
    "Status",
]

Outcome = Literal["ok", "resume_failed", "error"]
Status = Literal["active", "expired", "non_resumable", "closed"]


class _ClientInfoBase(TypedDict):
    name: str


class ClientInfo(_ClientInfoBase, total=False):
    version: str


class HelloResult(TypedDict):
    server: ClientInfo
    protocolVersion: int
    tenant: str
    admin: bool
    authRequired: bool
    maxFrameBytes: int
    maxInFlight: int


class HealthResult(TypedDict):
    status: str
    version: str
    uptimeSeconds: float
    connections: int
    schemaVersion: str


class LeaseProof(TypedDict):
    token: str
    fence: int


class Lease(TypedDict):
    token: str
    fence: int
    holder: str
    expiresAt: str


class LeaseState(TypedDict):
    holder: str
    fence: int
    expiresAt: str


class _DecisionBase(TypedDict):
    action: Literal["resume", "fresh"]


class Decision(_DecisionBase, total=False):
    cliSessionId: str
    reason: str  # new | expired | non_resumable | stale | resume_failed
    fork: bool


class TranscriptState(TypedDict):
    cliSessionId: str
    size: int


class _SessionBase(TypedDict):
    id: str
    tenant: str
    key: str
    tool: str
    status: Status
    createdAt: str
    lastUsedAt: str
    expiresAt: str
    ttlSeconds: int
    turnCount: int
    resumeAttempts: int
    resumeSuccesses: int
    consecutiveFailures: int
    totalFailures: int
    costUsd: float
    inputTokens: int
    outputTokens: int
    messageCount: int
    transcriptBytes: int
    metadata: Dict[str, Any]
    labels: List[str]


class Session(_SessionBase, total=False):
    cwd: str
    cliSessionId: str
    lastFailureReason: str
    parentId: str
    lease: LeaseState


class _NewMessageBase(TypedDict):
    role: Literal["user", "assistant", "system", "tool"]
    content: str


class NewMessage(_NewMessageBase, total=False):
    inputTokens: int
    outputTokens: int


class _MessageBase(_NewMessageBase):
    seq: int
    at: str


class Message(_MessageBase, total=False):
    inputTokens: int
    outputTokens: int


class ChainLink(TypedDict):
    seq: int
    cliSessionId: str
    reason: str  # created | forked | changed_by_cli | fresh_after_failure | fresh_after_expiry
    at: str


class _AuditEntryBase(TypedDict):
    id: int
    at: str
    tenant: str
    actor: str
    action: str
    outcome: str
    detail: Dict[str, Any]


class AuditEntry(_AuditEntryBase, total=False):
    sessionId: str
    key: str


class _TokenInfoBase(TypedDict):
    id: str
    tenant: str
    admin: bool
    createdAt: str


class TokenInfo(_TokenInfoBase, total=False):
    label: str
    revokedAt: str


class _AcquireResultBase(TypedDict):
    session: Session
    created: bool
    lease: Lease
    decision: Decision


class AcquireResult(_AcquireResultBase, total=False):
    transcript: TranscriptState


class _CompleteResultBase(TypedDict):
    session: Session
    chainExtended: bool


class CompleteResult(_CompleteResultBase, total=False):
    lease: Lease
    decision: Decision


class RenewResult(TypedDict):
    lease: Lease


class ReleaseResult(TypedDict):
    released: bool


class SessionResult(TypedDict):
    """Result of session.get, session.touch, session.update and session.fork."""

    session: Session


class _SessionListResultBase(TypedDict):
    sessions: List[Session]


class SessionListResult(_SessionListResultBase, total=False):
    nextCursor: str


class DeleteResult(TypedDict):
    deleted: bool


class HistoryResult(TypedDict):
    chain: List[ChainLink]


class MessagesAppendResult(TypedDict):
    firstSeq: int
    lastSeq: int


class _MessagesListResultBase(TypedDict):
    messages: List[Message]


class MessagesListResult(_MessagesListResultBase, total=False):
    nextAfterSeq: int


class TranscriptAppendResult(TypedDict):
    size: int
    appended: int


class TranscriptReadResult(TypedDict):
    """Result of transcript.read. ``data`` is already base64-decoded to ``bytes``."""

    cliSessionId: str
    offset: int
    data: bytes
    size: int
    eof: bool


class _AuditListResultBase(TypedDict):
    entries: List[AuditEntry]


class AuditListResult(_AuditListResultBase, total=False):
    nextCursor: str


class ReasonCount(TypedDict):
    reason: str
    count: int


class AgeBucket(TypedDict):
    le: str
    count: int


class _StatsResultBase(TypedDict):
    sessions: int
    byStatus: Dict[str, int]
    turns: int
    resumeAttempts: int
    resumeSuccesses: int
    resumeFailures: int
    freshStarts: int
    topFailureReasons: List[ReasonCount]
    sessionAge: List[AgeBucket]
    databaseBytes: int
    walBytes: int


class StatsResult(_StatsResultBase, total=False):
    #: Successes over attempts; absent before the first resume attempt.
    resumeSuccessRate: float


class TokensCreateResult(TypedDict):
    token: str
    info: TokenInfo


class TokensListResult(TypedDict):
    tokens: List[TokenInfo]


class TokensRevokeResult(TypedDict):
    revoked: bool
