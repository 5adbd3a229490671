import Foundation

/// Where a session is in its lifecycle.
public enum SessionStatus: String, Codable, Sendable, CaseIterable {
    /// In use; the next acquire resumes the head CLI session id, if there is one.
    case active
    /// Idle longer than its TTL; the next acquire starts fresh on the same key.
    case expired
    /// Too many consecutive resume failures; the next acquire starts fresh.
    case nonResumable = "non_resumable"
    /// Ended on purpose; the next acquire starts a new conversation on the same key.
    case closed
}

/// Why the next turn starts a new CLI conversation instead of resuming one.
public enum FreshReason: String, Codable, Sendable, CaseIterable {
    /// The session is new, or has never recorded a CLI session id.
    case new
    /// The session was idle longer than its TTL.
    case expired
    /// The session reached the consecutive resume-failure limit.
    case nonResumable = "non_resumable"
    /// The session was closed, so its old conversation is stale.
    case stale
    /// The resume of this turn failed and the caller falls back to a fresh start.
    case resumeFailed = "resume_failed"
}

/// Why a CLI session id joined a session's chain.
public enum ChainReason: String, Codable, Sendable, CaseIterable {
    case created
    case forked
    case changedByCLI = "changed_by_cli"
    case freshAfterFailure = "fresh_after_failure"
    case freshAfterExpiry = "fresh_after_expiry"
}

/// What the caller of `session.acquire` should do with the CLI.
public struct ResumeDecision: Codable, Sendable, Equatable {
    public enum Action: String, Codable, Sendable { case resume, fresh }

    public var action: Action
    /// The CLI session id to resume (only with `resume`).
    public var cliSessionId: String?
    /// Why the turn starts fresh (only with `fresh`).
    public var reason: FreshReason?
    /// Resume as a fork (`--fork-session`): the first turn of a forked session.
    public var fork: Bool

    public init(action: Action, cliSessionId: String? = nil, reason: FreshReason? = nil, fork: Bool = false) {
        self.action = action
        self.cliSessionId = cliSessionId
        self.reason = reason
        self.fork = fork
    }

    public static func resume(_ id: String, fork: Bool = false) -> ResumeDecision {
        ResumeDecision(action: .resume, cliSessionId: id, fork: fork)
    }

    public static func fresh(_ reason: FreshReason) -> ResumeDecision {
        ResumeDecision(action: .fresh, reason: reason)
    }
}

/// A granted lease. The token is secret: only its holder ever sees it.
public struct Lease: Codable, Sendable, Equatable {
    public var token: String
    /// Grows with every grant on the session; writes carrying an older fence are refused.
    public var fence: Int64
    public var holder: String
    public var expiresAt: Date

    public init(token: String, fence: Int64, holder: String, expiresAt: Date) {
        self.token = token
        self.fence = fence
        self.holder = holder
        self.expiresAt = expiresAt
    }

    /// What a write carries to prove it holds this lease.
    public var proof: LeaseProof { LeaseProof(token: token, fence: fence) }
}

/// The lease a write claims to hold.
public struct LeaseProof: Codable, Sendable, Equatable {
    public var token: String
    public var fence: Int64

    public init(token: String, fence: Int64) {
        self.token = token
        self.fence = fence
    }
}

/// The public view of a session's current lease (never the token).
public struct LeaseState: Codable, Sendable, Equatable {
    public var holder: String
    public var fence: Int64
    public var expiresAt: Date

    public init(holder: String, fence: Int64, expiresAt: Date) {
        self.holder = holder
        self.fence = fence
        self.expiresAt = expiresAt
    }
}

/// A session as the registry reports it.
public struct SessionInfo: Codable, Sendable, Equatable {
    public var id: String
    public var tenant: String
    public var key: String
    public var tool: String
    public var cwd: String?
    /// The head of the chain: the CLI session id the next turn resumes.
    public var cliSessionId: String?
    public var status: SessionStatus
    public var createdAt: Date
    public var lastUsedAt: Date
    public var expiresAt: Date
    public var ttlSeconds: Int
    public var turnCount: Int
    public var resumeAttempts: Int
    public var resumeSuccesses: Int
    public var consecutiveFailures: Int
    public var totalFailures: Int
    public var lastFailureReason: String?
    public var costUsd: Double
    public var inputTokens: Int
    public var outputTokens: Int
    public var messageCount: Int
    public var transcriptBytes: Int
    public var metadata: [String: JSONValue]
    public var labels: [String]
    public var parentId: String?
    /// The current lease, if one is held and unexpired.
    public var lease: LeaseState?

    public init(
        id: String, tenant: String, key: String, tool: String, cwd: String?, cliSessionId: String?,
        status: SessionStatus, createdAt: Date, lastUsedAt: Date, expiresAt: Date, ttlSeconds: Int,
        turnCount: Int, resumeAttempts: Int, resumeSuccesses: Int, consecutiveFailures: Int, totalFailures: Int,
        lastFailureReason: String?, costUsd: Double, inputTokens: Int, outputTokens: Int, messageCount: Int,
        transcriptBytes: Int, metadata: [String: JSONValue], labels: [String], parentId: String?, lease: LeaseState?
    ) {
        self.id = id
        self.tenant = tenant
        self.key = key
        self.tool = tool
        self.cwd = cwd
        self.cliSessionId = cliSessionId
        self.status = status
        self.createdAt = createdAt
        self.lastUsedAt = lastUsedAt
        self.expiresAt = expiresAt
        self.ttlSeconds = ttlSeconds
        self.turnCount = turnCount
        self.resumeAttempts = resumeAttempts
        self.resumeSuccesses = resumeSuccesses
        self.consecutiveFailures = consecutiveFailures
        self.totalFailures = totalFailures
        self.lastFailureReason = lastFailureReason
        self.costUsd = costUsd
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.messageCount = messageCount
        self.transcriptBytes = transcriptBytes
        self.metadata = metadata
        self.labels = labels
        self.parentId = parentId
        self.lease = lease
    }
}

/// One entry of a session's chain of CLI session ids.
public struct ChainLink: Codable, Sendable, Equatable {
    public var seq: Int
    public var cliSessionId: String
    public var reason: ChainReason
    public var at: Date

    public init(seq: Int, cliSessionId: String, reason: ChainReason, at: Date) {
        self.seq = seq
        self.cliSessionId = cliSessionId
        self.reason = reason
        self.at = at
    }
}

/// Who wrote a message.
public enum MessageRole: String, Codable, Sendable, CaseIterable {
    case user, assistant, system, tool
}

/// A message to append to a session's history.
public struct NewMessage: Codable, Sendable, Equatable {
    public var role: MessageRole
    public var content: String
    public var inputTokens: Int?
    public var outputTokens: Int?

    public init(role: MessageRole, content: String, inputTokens: Int? = nil, outputTokens: Int? = nil) {
        self.role = role
        self.content = content
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
    }
}

/// A stored message.
public struct Message: Codable, Sendable, Equatable {
    public var seq: Int
    public var role: MessageRole
    public var content: String
    public var inputTokens: Int?
    public var outputTokens: Int?
    public var at: Date

    public init(seq: Int, role: MessageRole, content: String, inputTokens: Int?, outputTokens: Int?, at: Date) {
        self.seq = seq
        self.role = role
        self.content = content
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.at = at
    }
}

/// The stored size of one CLI transcript.
public struct TranscriptState: Codable, Sendable, Equatable {
    public var cliSessionId: String
    public var size: Int

    public init(cliSessionId: String, size: Int) {
        self.cliSessionId = cliSessionId
        self.size = size
    }
}

/// One audit-log row.
public struct AuditEntry: Codable, Sendable, Equatable {
    public var id: Int64
    public var at: Date
    public var tenant: String
    public var actor: String
    public var sessionId: String?
    public var key: String?
    public var action: String
    public var outcome: String
    public var detail: [String: JSONValue]

    public init(
        id: Int64, at: Date, tenant: String, actor: String, sessionId: String?, key: String?, action: String,
        outcome: String, detail: [String: JSONValue]
    ) {
        self.id = id
        self.at = at
        self.tenant = tenant
        self.actor = actor
        self.sessionId = sessionId
        self.key = key
        self.action = action
        self.outcome = outcome
        self.detail = detail
    }
}

/// An API token as listed (never the secret).
public struct TokenInfo: Codable, Sendable, Equatable {
    public var id: String
    public var tenant: String
    public var admin: Bool
    public var label: String?
    public var createdAt: Date
    public var revokedAt: Date?

    public init(id: String, tenant: String, admin: Bool, label: String?, createdAt: Date, revokedAt: Date?) {
        self.id = id
        self.tenant = tenant
        self.admin = admin
        self.label = label
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }
}

extension String {
    /// Whether the text has a character of general category Cc: U+0000–U+001F or U+007F–U+009F, which
    /// names on the wire (keys, tools, labels, CLI session ids, client names) refuse. Read from the UTF-8
    /// bytes (the second range is C2 80–C2 9F), with no Unicode property lookup per scalar.
    public var containsControlCharacter: Bool {
        var previous: UInt8 = 0
        for byte in utf8 {
            if byte < 0x20 || byte == 0x7F || (previous == 0xC2 && byte <= 0x9F && byte >= 0x80) { return true }
            previous = byte
        }
        return false
    }
}
