import Foundation

/// Names a session by registry id or by key (exactly one).
public struct SessionSelector: Codable, Sendable, Equatable {
    public var sessionId: String?
    public var key: String?
    public init(sessionId: String? = nil, key: String? = nil) {
        self.sessionId = sessionId
        self.key = key
    }
}

/// `session.acquire`: get-or-create the session for a key and take its lease, in one transaction.
public enum SessionAcquire: RPCMethod {
    public static let name = "session.acquire"

    public struct Params: Codable, Sendable {
        public var key: String
        /// The CLI the session belongs to (default `claude`).
        public var tool: String?
        public var cwd: String?
        /// Who holds the lease, shown to waiters (default: the connection's client name).
        public var holder: String?
        /// Idle TTL for a new session, in seconds (default: the server's).
        public var ttlSeconds: Int?
        /// Lease duration (default 600 s).
        public var leaseSeconds: Int?
        /// How long to wait for a held lease before answering `lease_held` (default 0).
        public var waitMs: Int?
        public var metadata: [String: JSONValue]?
        public var labels: [String]?
        public init(
            key: String, tool: String? = nil, cwd: String? = nil, holder: String? = nil, ttlSeconds: Int? = nil,
            leaseSeconds: Int? = nil, waitMs: Int? = nil, metadata: [String: JSONValue]? = nil,
            labels: [String]? = nil
        ) {
            self.key = key
            self.tool = tool
            self.cwd = cwd
            self.holder = holder
            self.ttlSeconds = ttlSeconds
            self.leaseSeconds = leaseSeconds
            self.waitMs = waitMs
            self.metadata = metadata
            self.labels = labels
        }
    }

    public struct Result: Codable, Sendable, Equatable {
        public var session: SessionInfo
        public var created: Bool
        public var lease: Lease
        public var decision: ResumeDecision
        /// The stored transcript of the CLI session to resume, if any bytes are stored.
        public var transcript: TranscriptState?
        public init(
            session: SessionInfo, created: Bool, lease: Lease, decision: ResumeDecision, transcript: TranscriptState?
        ) {
            self.session = session
            self.created = created
            self.lease = lease
            self.decision = decision
            self.transcript = transcript
        }
    }
}

/// The outcome of a turn, reported by `session.complete`.
public enum TurnOutcome: String, Codable, Sendable {
    /// The CLI ran and reported a session id.
    case ok
    /// The CLI could not resume the head id (for example `No conversation found`).
    case resumeFailed = "resume_failed"
    /// The turn failed for another reason; the chain is unchanged.
    case error
}

/// `session.complete`: records a turn's outcome and releases the lease (unless `keepLease`).
public enum SessionComplete: RPCMethod {
    public static let name = "session.complete"

    public struct Params: Codable, Sendable {
        public var sessionId: String
        public var lease: LeaseProof
        public var outcome: TurnOutcome
        /// The id the CLI reported (required with `ok`).
        public var cliSessionId: String?
        /// Why the turn failed (with `resume_failed` and `error`).
        public var reason: String?
        /// This turn's cost, added to the session's total.
        public var costUsd: Double?
        /// The CLI's running total for the reported id (Claude Code's `total_cost_usd`); the store adds the
        /// difference from the total last reported for that id.
        public var cliTotalCostUsd: Double?
        public var inputTokens: Int?
        public var outputTokens: Int?
        public var messages: [NewMessage]?
        /// Keep the lease for a follow-up turn (for example the fresh start after a failed resume).
        public var keepLease: Bool?
        public init(
            sessionId: String, lease: LeaseProof, outcome: TurnOutcome, cliSessionId: String? = nil,
            reason: String? = nil, costUsd: Double? = nil, cliTotalCostUsd: Double? = nil, inputTokens: Int? = nil,
            outputTokens: Int? = nil, messages: [NewMessage]? = nil, keepLease: Bool? = nil
        ) {
            self.cliTotalCostUsd = cliTotalCostUsd
            self.sessionId = sessionId
            self.lease = lease
            self.outcome = outcome
            self.cliSessionId = cliSessionId
            self.reason = reason
            self.costUsd = costUsd
            self.inputTokens = inputTokens
            self.outputTokens = outputTokens
            self.messages = messages
            self.keepLease = keepLease
        }
    }

    public struct Result: Codable, Sendable, Equatable {
        public var session: SessionInfo
        /// Whether the reported id was new and joined the chain.
        public var chainExtended: Bool
        /// The lease, when kept.
        public var lease: Lease?
        /// What a follow-up turn under the kept lease should do (after `resume_failed`: start fresh).
        public var decision: ResumeDecision?
        public init(session: SessionInfo, chainExtended: Bool, lease: Lease?, decision: ResumeDecision?) {
            self.session = session
            self.chainExtended = chainExtended
            self.lease = lease
            self.decision = decision
        }
    }
}

/// `session.renew`: extends a held lease.
public enum SessionRenew: RPCMethod {
    public static let name = "session.renew"
    public static var isIdempotent: Bool { true }

    public struct Params: Codable, Sendable {
        public var sessionId: String
        public var lease: LeaseProof
        public var leaseSeconds: Int?
        public init(sessionId: String, lease: LeaseProof, leaseSeconds: Int? = nil) {
            self.sessionId = sessionId
            self.lease = lease
            self.leaseSeconds = leaseSeconds
        }
    }

    public struct Result: Codable, Sendable, Equatable {
        public var lease: Lease
        public init(lease: Lease) { self.lease = lease }
    }
}

/// `session.release`: gives a lease back without recording a turn.
public enum SessionRelease: RPCMethod {
    public static let name = "session.release"
    public static var isIdempotent: Bool { true }

    public struct Params: Codable, Sendable {
        public var sessionId: String
        public var lease: LeaseProof
        public init(sessionId: String, lease: LeaseProof) {
            self.sessionId = sessionId
            self.lease = lease
        }
    }

    public struct Result: Codable, Sendable, Equatable {
        public var released: Bool
        public init(released: Bool) { self.released = released }
    }
}

/// `session.touch`: marks a session used now, extending its idle TTL.
public enum SessionTouch: RPCMethod {
    public static let name = "session.touch"
    public static var isIdempotent: Bool { true }

    public struct Params: Codable, Sendable {
        public var sessionId: String?
        public var key: String?
        /// A new idle TTL to set at the same time.
        public var ttlSeconds: Int?
        public init(sessionId: String? = nil, key: String? = nil, ttlSeconds: Int? = nil) {
            self.sessionId = sessionId
            self.key = key
            self.ttlSeconds = ttlSeconds
        }
        public var selector: SessionSelector { SessionSelector(sessionId: sessionId, key: key) }
    }

    public struct Result: Codable, Sendable, Equatable {
        public var session: SessionInfo
        public init(session: SessionInfo) { self.session = session }
    }
}

/// `session.get`: one session by id or key.
public enum SessionGet: RPCMethod {
    public static let name = "session.get"
    public static var isIdempotent: Bool { true }
    public typealias Params = SessionSelector
    public typealias Result = SessionTouch.Result
}

/// `session.list`: sessions matching filters, newest use first, in pages.
public enum SessionList: RPCMethod {
    public static let name = "session.list"
    public static var isIdempotent: Bool { true }

    public struct Params: Codable, Sendable {
        public var status: SessionStatus?
        public var tool: String?
        public var keyPrefix: String?
        public var label: String?
        /// Page size (default 50, at most 1000).
        public var limit: Int?
        /// The `nextCursor` of the previous page.
        public var cursor: String?
        public init(
            status: SessionStatus? = nil, tool: String? = nil, keyPrefix: String? = nil, label: String? = nil,
            limit: Int? = nil, cursor: String? = nil
        ) {
            self.status = status
            self.tool = tool
            self.keyPrefix = keyPrefix
            self.label = label
            self.limit = limit
            self.cursor = cursor
        }
    }

    public struct Result: Codable, Sendable, Equatable {
        public var sessions: [SessionInfo]
        /// Pass as `cursor` for the next page; absent on the last page.
        public var nextCursor: String?
        public init(sessions: [SessionInfo], nextCursor: String?) {
            self.sessions = sessions
            self.nextCursor = nextCursor
        }
    }
}

/// `session.update`: changes metadata, labels, TTL or status (`closed` / `active`).
public enum SessionUpdate: RPCMethod {
    public static let name = "session.update"
    public static var isIdempotent: Bool { true }

    public struct Params: Codable, Sendable {
        public var sessionId: String
        /// Replaces the metadata object.
        public var metadata: [String: JSONValue]?
        /// Replaces the labels.
        public var labels: [String]?
        public var ttlSeconds: Int?
        /// `closed` ends the conversation; `active` reopens a closed, expired or non-resumable session.
        public var status: SessionStatus?
        public init(
            sessionId: String, metadata: [String: JSONValue]? = nil, labels: [String]? = nil, ttlSeconds: Int? = nil,
            status: SessionStatus? = nil
        ) {
            self.sessionId = sessionId
            self.metadata = metadata
            self.labels = labels
            self.ttlSeconds = ttlSeconds
            self.status = status
        }
    }

    public typealias Result = SessionTouch.Result
}

/// `session.delete`: removes a session with its chain, messages and transcripts.
public enum SessionDelete: RPCMethod {
    public static let name = "session.delete"
    public static var isIdempotent: Bool { true }

    public struct Params: Codable, Sendable {
        public var sessionId: String
        /// Delete even while another client holds the lease.
        public var force: Bool?
        public init(sessionId: String, force: Bool? = nil) {
            self.sessionId = sessionId
            self.force = force
        }
    }

    public struct Result: Codable, Sendable, Equatable {
        public var deleted: Bool
        public init(deleted: Bool) { self.deleted = deleted }
    }
}

/// `session.fork`: a new session under a new key whose parent is this one; its first turn resumes
/// the parent's head with `--fork-session`.
public enum SessionFork: RPCMethod {
    public static let name = "session.fork"

    public struct Params: Codable, Sendable {
        public var sessionId: String
        public var key: String
        public init(sessionId: String, key: String) {
            self.sessionId = sessionId
            self.key = key
        }
    }

    public typealias Result = SessionTouch.Result
}

/// `session.history`: the chain of CLI session ids, oldest first.
public enum SessionHistory: RPCMethod {
    public static let name = "session.history"
    public static var isIdempotent: Bool { true }

    public struct Params: Codable, Sendable {
        public var sessionId: String
        public init(sessionId: String) { self.sessionId = sessionId }
    }

    public struct Result: Codable, Sendable, Equatable {
        public var chain: [ChainLink]
        public init(chain: [ChainLink]) { self.chain = chain }
    }
}
