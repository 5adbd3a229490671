import Foundation

/// `messages.append`: adds messages to a session's history. A lease, when given, must be current.
public enum MessagesAppend: RPCMethod {
    public static let name = "messages.append"

    public struct Params: Codable, Sendable {
        public var sessionId: String
        public var lease: LeaseProof?
        public var messages: [NewMessage]
        public init(sessionId: String, lease: LeaseProof? = nil, messages: [NewMessage]) {
            self.sessionId = sessionId
            self.lease = lease
            self.messages = messages
        }
    }

    public struct Result: Codable, Sendable, Equatable {
        /// The sequence numbers given to the appended messages.
        public var firstSeq: Int
        public var lastSeq: Int
        public init(firstSeq: Int, lastSeq: Int) {
            self.firstSeq = firstSeq
            self.lastSeq = lastSeq
        }
    }
}

/// `messages.list`: a page of history in sequence order: after `afterSeq`, or the last `tail` messages.
public enum MessagesList: RPCMethod {
    public static let name = "messages.list"
    public static var isIdempotent: Bool { true }

    public struct Params: Codable, Sendable {
        public var sessionId: String
        /// Return messages with a sequence number above this (default 0).
        public var afterSeq: Int?
        /// Return the last N messages instead (ignores `afterSeq`).
        public var tail: Int?
        /// Page size (default 100, at most 1000).
        public var limit: Int?
        public init(sessionId: String, afterSeq: Int? = nil, tail: Int? = nil, limit: Int? = nil) {
            self.sessionId = sessionId
            self.afterSeq = afterSeq
            self.tail = tail
            self.limit = limit
        }
    }

    public struct Result: Codable, Sendable, Equatable {
        public var messages: [Message]
        /// Pass as `afterSeq` for the next page; absent on the last page.
        public var nextAfterSeq: Int?
        public init(messages: [Message], nextAfterSeq: Int?) {
            self.messages = messages
            self.nextAfterSeq = nextAfterSeq
        }
    }
}

/// `transcript.append`: adds CLI transcript bytes at `offset`, which must not pass the stored size.
///
/// Bytes already stored are skipped, so retrying an append is safe.
public enum TranscriptAppend: RPCMethod {
    public static let name = "transcript.append"
    public static var isIdempotent: Bool { true }

    public struct Params: Codable, Sendable {
        public var sessionId: String
        public var lease: LeaseProof
        public var cliSessionId: String
        public var offset: Int
        /// The bytes, base64 on the wire.
        public var data: Data
        public init(sessionId: String, lease: LeaseProof, cliSessionId: String, offset: Int, data: Data) {
            self.sessionId = sessionId
            self.lease = lease
            self.cliSessionId = cliSessionId
            self.offset = offset
            self.data = data
        }
    }

    public struct Result: Codable, Sendable, Equatable {
        /// The stored size after the append.
        public var size: Int
        /// How many of the sent bytes were new.
        public var appended: Int
        public init(size: Int, appended: Int) {
            self.size = size
            self.appended = appended
        }
    }
}

/// `transcript.read`: a chunk of a stored CLI transcript.
public enum TranscriptRead: RPCMethod {
    public static let name = "transcript.read"
    public static var isIdempotent: Bool { true }

    public struct Params: Codable, Sendable {
        public var sessionId: String
        /// Which transcript (default: the session's head).
        public var cliSessionId: String?
        public var offset: Int?
        /// Chunk size (default and maximum 4 MiB).
        public var limit: Int?
        public init(sessionId: String, cliSessionId: String? = nil, offset: Int? = nil, limit: Int? = nil) {
            self.sessionId = sessionId
            self.cliSessionId = cliSessionId
            self.offset = offset
            self.limit = limit
        }
    }

    public struct Result: Codable, Sendable, Equatable {
        public var cliSessionId: String
        public var offset: Int
        public var data: Data
        /// The stored size of the whole transcript.
        public var size: Int
        public var eof: Bool
        public init(cliSessionId: String, offset: Int, data: Data, size: Int, eof: Bool) {
            self.cliSessionId = cliSessionId
            self.offset = offset
            self.data = data
            self.size = size
            self.eof = eof
        }
    }
}

/// `audit.list`: audit rows of the caller's tenant, newest first, in pages.
public enum AuditList: RPCMethod {
    public static let name = "audit.list"
    public static var isIdempotent: Bool { true }

    public struct Params: Codable, Sendable {
        public var sessionId: String?
        public var action: String?
        public var since: Date?
        public var until: Date?
        public var limit: Int?
        public var cursor: String?
        /// Admin only: read this tenant's log instead of the caller's (`""` holds failed logins).
        public var tenant: String?
        public init(
            sessionId: String? = nil, action: String? = nil, since: Date? = nil, until: Date? = nil, limit: Int? = nil,
            cursor: String? = nil, tenant: String? = nil
        ) {
            self.tenant = tenant
            self.sessionId = sessionId
            self.action = action
            self.since = since
            self.until = until
            self.limit = limit
            self.cursor = cursor
        }
    }

    public struct Result: Codable, Sendable, Equatable {
        public var entries: [AuditEntry]
        public var nextCursor: String?
        public init(entries: [AuditEntry], nextCursor: String?) {
            self.entries = entries
            self.nextCursor = nextCursor
        }
    }
}

/// `stats`: the caller's tenant in figures, from counters kept up to date by the store (no scans).
public enum RegistryStats: RPCMethod {
    public static let name = "stats"
    public static var isIdempotent: Bool { true }
    public typealias Params = Empty

    public struct Reason: Codable, Sendable, Equatable {
        public var reason: String
        public var count: Int
        public init(reason: String, count: Int) {
            self.reason = reason
            self.count = count
        }
    }

    public struct AgeBucket: Codable, Sendable, Equatable {
        /// Upper bound of the bucket's age: "1d", "7d", "30d", "90d" or "older".
        public var le: String
        public var count: Int
        public init(le: String, count: Int) {
            self.le = le
            self.count = count
        }
    }

    public struct Result: Codable, Sendable, Equatable {
        public var sessions: Int
        public var byStatus: [String: Int]
        public var turns: Int
        public var resumeAttempts: Int
        public var resumeSuccesses: Int
        public var resumeFailures: Int
        /// Successes over attempts; `null` before the first attempt.
        public var resumeSuccessRate: Double?
        public var freshStarts: Int
        public var topFailureReasons: [Reason]
        public var sessionAge: [AgeBucket]
        public var databaseBytes: Int
        public var walBytes: Int
        public init(
            sessions: Int, byStatus: [String: Int], turns: Int, resumeAttempts: Int, resumeSuccesses: Int,
            resumeFailures: Int, resumeSuccessRate: Double?, freshStarts: Int, topFailureReasons: [Reason],
            sessionAge: [AgeBucket], databaseBytes: Int, walBytes: Int
        ) {
            self.sessions = sessions
            self.byStatus = byStatus
            self.turns = turns
            self.resumeAttempts = resumeAttempts
            self.resumeSuccesses = resumeSuccesses
            self.resumeFailures = resumeFailures
            self.resumeSuccessRate = resumeSuccessRate
            self.freshStarts = freshStarts
            self.topFailureReasons = topFailureReasons
            self.sessionAge = sessionAge
            self.databaseBytes = databaseBytes
            self.walBytes = walBytes
        }
    }
}
