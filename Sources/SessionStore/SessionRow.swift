import Foundation
import GRDB
import SessionProtocol

/// A `session` row as stored. It never leaves the store: ``info(now:)`` converts it to the wire type.
struct SessionRow: Sendable {
    static let columns = """
        pk, id, tenant, key, tool, cwd, cliSessionId, status, createdAt, lastUsedAt, expiresAt, ttlSeconds, \
        turnCount, resumeAttempts, resumeSuccesses, consecutiveFailures, totalFailures, lastFailureReason, \
        costUsd, cliCostUsd, inputTokens, outputTokens, messageCount, transcriptBytes, metadata, labels, parentId, \
        forkPending, pendingFresh, turnMode, leaseToken, leaseHolder, leaseFence, leaseExpiresAt, lastAuditId, \
        lastChainLinkId
        """

    var pk: Int64
    var id: String
    var tenant: String
    var key: String
    var tool: String
    var cwd: String?
    var cliSessionId: String?
    var status: SessionStatus
    var createdAt: Int64
    var lastUsedAt: Int64
    var expiresAt: Int64
    var ttlSeconds: Int
    var turnCount: Int
    var resumeAttempts: Int
    var resumeSuccesses: Int
    var consecutiveFailures: Int
    var totalFailures: Int
    var lastFailureReason: String?
    var costUsd: Double
    var cliCostUsd: Double
    var inputTokens: Int
    var outputTokens: Int
    var messageCount: Int
    var transcriptBytes: Int
    var metadata: String
    var labels: String
    var parentId: String?
    var forkPending: Bool
    var pendingFresh: FreshReason?
    var turnMode: TurnMode?
    var leaseToken: String?
    var leaseHolder: String?
    var leaseFence: Int64
    var leaseExpiresAt: Int64?
    /// The session's newest audit row (schema 0004).
    var lastAuditId: Int64?
    /// The session's newest chain link (schema 0006).
    var lastChainLinkId: Int64?

    /// The lookups of one row, built once: they run in every turn.
    static let byID = BuiltSQL("SELECT \(columns) FROM session WHERE id = ?")
    static let byKey = BuiltSQL("SELECT \(columns) FROM session WHERE tenant = ? AND key = ?")
    static let byPk = BuiltSQL("SELECT \(columns) FROM session WHERE pk = ?")

    /// The row the statement is on, read column by column in the order of ``columns``.
    /// A NULL in a NOT NULL column (which the schema rules out) reads as the column's default.
    init(_ statement: SQLiteStatement) {
        func column<Value: SQLColumn>(_ index: CInt) -> Value? { sqlColumn(statement, index) }
        pk = column(0) ?? 0
        id = column(1) ?? ""
        tenant = column(2) ?? ""
        key = column(3) ?? ""
        tool = column(4) ?? ""
        cwd = column(5)
        cliSessionId = column(6)
        status = (column(7) as String?).flatMap(SessionStatus.init(rawValue:)) ?? .active
        createdAt = column(8) ?? 0
        lastUsedAt = column(9) ?? 0
        expiresAt = column(10) ?? 0
        ttlSeconds = column(11) ?? 86_400
        turnCount = column(12) ?? 0
        resumeAttempts = column(13) ?? 0
        resumeSuccesses = column(14) ?? 0
        consecutiveFailures = column(15) ?? 0
        totalFailures = column(16) ?? 0
        lastFailureReason = column(17)
        costUsd = column(18) ?? 0
        cliCostUsd = column(19) ?? 0
        inputTokens = column(20) ?? 0
        outputTokens = column(21) ?? 0
        messageCount = column(22) ?? 0
        transcriptBytes = column(23) ?? 0
        metadata = column(24) ?? "{}"
        labels = column(25) ?? "[]"
        parentId = column(26)
        forkPending = column(27) ?? false
        pendingFresh = (column(28) as String?).flatMap(FreshReason.init(rawValue:))
        turnMode = (column(29) as String?).flatMap(TurnMode.init(rawValue:))
        leaseToken = column(30)
        leaseHolder = column(31)
        leaseFence = column(32) ?? 0
        leaseExpiresAt = column(33)
        lastAuditId = column(34)
        lastChainLinkId = column(35)
    }

    /// Whether a lease is held and unexpired at `now`.
    func hasLiveLease(now: Int64) -> Bool {
        leaseToken != nil && (leaseExpiresAt ?? 0) > now
    }

    func info(now: Int64) -> SessionInfo {
        SessionInfo(
            id: id, tenant: tenant, key: key, tool: tool, cwd: cwd, cliSessionId: cliSessionId,
            status: status, createdAt: Date(ms: createdAt), lastUsedAt: Date(ms: lastUsedAt),
            expiresAt: Date(ms: expiresAt), ttlSeconds: ttlSeconds, turnCount: turnCount,
            resumeAttempts: resumeAttempts, resumeSuccesses: resumeSuccesses,
            consecutiveFailures: consecutiveFailures, totalFailures: totalFailures,
            lastFailureReason: lastFailureReason, costUsd: costUsd, inputTokens: inputTokens,
            outputTokens: outputTokens, messageCount: messageCount, transcriptBytes: transcriptBytes,
            metadata: JSONText.decodeObject(metadata), labels: JSONText.decodeStrings(labels), parentId: parentId,
            lease: hasLiveLease(now: now)
                ? LeaseState(holder: leaseHolder ?? "", fence: leaseFence, expiresAt: Date(ms: leaseExpiresAt ?? 0))
                : nil)
    }
}

/// What the turn under the current lease does, as stored in `session.turnMode`.
enum TurnMode: Sendable, Equatable, RawRepresentable {
    case resume
    case fork
    case fresh(FreshReason)

    init?(rawValue: String) {
        switch rawValue {
        case "resume": self = .resume
        case "fork": self = .fork
        default:
            guard rawValue.hasPrefix("fresh:"),
                let reason = FreshReason(rawValue: String(rawValue.dropFirst("fresh:".count)))
            else { return nil }
            self = .fresh(reason)
        }
    }

    var rawValue: String {
        switch self {
        case .resume: "resume"
        case .fork: "fork"
        case .fresh(let reason): "fresh:\(reason.rawValue)"
        }
    }
}

/// JSON text columns (metadata, labels, audit detail) to and from wire values.
enum JSONText {
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static func encode(_ value: some Encodable) -> String {
        (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "{}"
    }

    /// The audit detail as JSON text, written directly: it is on every write's path.
    static func encode(_ object: [String: JSONValue]) -> String {
        WireWriter.text(.object(object))
    }

    static func decodeObject(_ text: String) -> [String: JSONValue] {
        if text == "{}" { return [:] }
        return (try? JSONDecoder().decode([String: JSONValue].self, from: Data(text.utf8))) ?? [:]
    }

    static func decodeStrings(_ text: String) -> [String] {
        if text == "[]" { return [] }
        return (try? JSONDecoder().decode([String].self, from: Data(text.utf8))) ?? []
    }
}

extension Database {
    /// The session row with this public id in any tenant.
    func sessionRow(id: String) throws -> SessionRow? {
        try statement(SessionRow.byID).first(id, read: SessionRow.init)
    }

    /// The session row for a tenant's key.
    func sessionRow(tenant: String, key: String) throws -> SessionRow? {
        try statement(SessionRow.byKey).first(tenant, key, read: SessionRow.init)
    }

    func sessionRow(pk: Int64) throws -> SessionRow? {
        try statement(SessionRow.byPk).first(pk, read: SessionRow.init)
    }

    /// The session rows of a `SELECT \(SessionRow.columns) …` statement. A one-column cursor steps the
    /// statement and the other columns are read from it directly: a `Row` cursor would build a dictionary of
    /// the 34 column names for every query, and these lookups run inside every turn's write.
    func sessionRows(_ statement: Statement, _ arguments: StatementArguments) throws -> [SessionRow] {
        let cursor = try Int64.fetchCursor(statement, arguments: arguments)
        var rows: [SessionRow] = []
        while try cursor.next() != nil {
            rows.append(SessionRow(statement.sqliteStatement))
        }
        return rows
    }
}
