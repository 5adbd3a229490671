import Foundation
import GRDB
import SessionProtocol

extension SessionDatabase {
    /// Appends messages to a session's history; a lease, when given, must be current.
    public func appendMessages(_ params: MessagesAppend.Params, caller: Caller) async throws -> MessagesAppend.Result {
        guard !params.messages.isEmpty else { throw SessionError.invalidParams("messages must not be empty") }
        try Validate.messages(params.messages, maxBytes: configuration.maxMessageBytes)
        return try await writeSession(params.sessionId, caller: caller, action: MessagesAppend.name) { db, row, now in
            if let lease = params.lease { try self.checkLease(row, lease, now: now) }
            try self.insertMessages(db, sessionPk: row.pk, after: row.messageCount, params.messages, now: now)
            try db.statement("UPDATE session SET messageCount = messageCount + ? WHERE pk = ?")
                .run(params.messages.count, row.pk)
            return MessagesAppend.Result(firstSeq: row.messageCount + 1, lastSeq: row.messageCount + params.messages.count)
        }
    }

    /// A page of history in sequence order: after `afterSeq`, or the last `tail` messages.
    public func listMessages(_ params: MessagesList.Params, caller: Caller) async throws -> MessagesList.Result {
        try Validate.range(params.limit, field: "limit", 1...1000)
        try Validate.range(params.tail, field: "tail", 1...1000)
        try Validate.range(params.afterSeq, field: "afterSeq", 0...Int(Int64.max / 2))
        let limit = params.limit ?? 100
        return try await readSession(params.sessionId, caller: caller, action: MessagesList.name) { db, row in
            let columns = "seq, role, content, inputTokens, outputTokens, at"
            func message(_ statement: SQLiteStatement) -> Message {
                func column<Value: SQLColumn>(_ index: CInt) -> Value? { sqlColumn(statement, index) }
                return Message(
                    seq: column(0) ?? 0, role: (column(1) as String?).flatMap(MessageRole.init(rawValue:)) ?? .user,
                    content: column(2) ?? "", inputTokens: column(3), outputTokens: column(4), at: Date(ms: column(5) ?? 0))
            }
            if let tail = params.tail {
                let messages = try db.cachedStatement(
                    sql: "SELECT \(columns) FROM message WHERE sessionPk = ? ORDER BY seq DESC LIMIT ?"
                ).all(row.pk, tail, read: message)
                return MessagesList.Result(messages: messages.reversed(), nextAfterSeq: nil)
            }
            let rows = try db.cachedStatement(
                sql: "SELECT \(columns) FROM message WHERE sessionPk = ? AND seq > ? ORDER BY seq LIMIT ?"
            ).all(row.pk, params.afterSeq ?? 0, limit + 1, read: message)
            let page = Array(rows.prefix(limit))
            return MessagesList.Result(messages: page, nextAfterSeq: rows.count > limit ? page.last?.seq : nil)
        }
    }

    /// Stores transcript bytes at `offset`. Bytes below the stored size are already there and skipped;
    /// an offset past the stored size is a `conflict` that reports the size.
    public func appendTranscript(
        _ params: TranscriptAppend.Params, caller: Caller
    ) async throws -> TranscriptAppend.Result {
        try Validate.name(params.cliSessionId, field: "cliSessionId", maxBytes: 256)
        try Validate.range(params.offset, field: "offset", 0...Int(Int64.max / 2))
        let cap = configuration.maxTranscriptBytesPerSession
        return try await writeSession(params.sessionId, caller: caller, action: TranscriptAppend.name) { db, row, now in
            try self.checkLease(row, params.lease, now: now)
            let size = try Int.fetchOne(
                db.statement("SELECT size FROM transcript WHERE sessionPk = ? AND cliSessionId = ?"),
                arguments: [row.pk, params.cliSessionId]) ?? 0
            guard params.offset <= size else {
                throw SessionError(
                    .conflict, "offset \(params.offset) is past the stored size \(size)",
                    detail: ["size": .number(Double(size))])
            }
            let alreadyStored = size - params.offset
            guard alreadyStored < params.data.count else {
                return TranscriptAppend.Result(size: size, appended: 0)
            }
            let fresh = params.data.dropFirst(alreadyStored)
            guard row.transcriptBytes + fresh.count <= cap else {
                throw SessionError(
                    .tooLarge,
                    "the session's transcripts would reach \(row.transcriptBytes + fresh.count) bytes; the cap is \(cap)",
                    detail: ["cap": .number(Double(cap)), "stored": .number(Double(row.transcriptBytes))])
            }
            try db.statement("""
                    INSERT INTO transcript(sessionPk, cliSessionId, size, updatedAt) VALUES (?, ?, ?, ?)
                    ON CONFLICT(sessionPk, cliSessionId) DO UPDATE SET size = excluded.size, updatedAt = excluded.updatedAt
                    """
            ).execute(arguments: [row.pk, params.cliSessionId, size + fresh.count, now])
            try db.statement("INSERT INTO transcriptChunk(sessionPk, cliSessionId, start, data) VALUES (?, ?, ?, ?)")
                .execute(arguments: [row.pk, params.cliSessionId, size, Data(fresh)])
            try db.statement("UPDATE session SET transcriptBytes = transcriptBytes + ? WHERE pk = ?")
                .execute(arguments: [fresh.count, row.pk])
            try self.audit(
                db, row, caller: caller, action: "transcript.append",
                detail: [
                    "cliSessionId": .string(params.cliSessionId), "bytes": .number(Double(fresh.count)),
                    "size": .number(Double(size + fresh.count)),
                ], at: now)
            return TranscriptAppend.Result(size: size + fresh.count, appended: fresh.count)
        }
    }

    /// Reads up to `limit` bytes (at most 4 MiB) of a stored transcript from `offset`.
    public func readTranscript(_ params: TranscriptRead.Params, caller: Caller) async throws -> TranscriptRead.Result {
        let maxChunk = 4 * 1024 * 1024
        try Validate.range(params.limit, field: "limit", 1...maxChunk)
        try Validate.range(params.offset, field: "offset", 0...Int(Int64.max / 2))
        return try await readSession(params.sessionId, caller: caller, action: TranscriptRead.name) { db, row in
            guard let cliSessionId = params.cliSessionId ?? row.cliSessionId,
                let size = try Int.fetchOne(
                    db.statement("SELECT size FROM transcript WHERE sessionPk = ? AND cliSessionId = ?"),
                    arguments: [row.pk, cliSessionId])
            else { throw SessionError.notFound("transcript") }
            let start = params.offset ?? 0
            guard start <= size else {
                throw SessionError.invalidParams("offset \(start) is past the transcript's size \(size)")
            }
            let end = min(size, start + (params.limit ?? maxChunk))
            var bytes = Data(capacity: end - start)
            let chunks = try Row.fetchCursor(
                db.statement("""
                        SELECT start, data FROM transcriptChunk
                        WHERE sessionPk = ? AND cliSessionId = ? AND start < ? AND start + length(data) > ?
                        ORDER BY start
                        """),
                arguments: [row.pk, cliSessionId, end, start])
            while let chunk = try chunks.next() {
                let chunkStart: Int = chunk[0]
                let data: Data = chunk[1]
                let from = max(start, chunkStart) - chunkStart
                let to = min(end, chunkStart + data.count) - chunkStart
                bytes.append(data[data.startIndex + from..<data.startIndex + to])
            }
            return TranscriptRead.Result(
                cliSessionId: cliSessionId, offset: start, data: bytes, size: size, eof: end >= size)
        }
    }

    /// Audit rows of the caller's tenant, newest first.
    public func listAudit(_ params: AuditList.Params, caller: Caller) async throws -> AuditList.Result {
        try Validate.range(params.limit, field: "limit", 1...1000)
        let limit = params.limit ?? 100
        let cursor = try params.cursor.map(Self.parseCursor) ?? Int64.max
        // The filters as one SQL condition: a WHERE term over the tenant's rows, a column along a session's chain.
        let filters = [
            params.action.map { ("action = ?", $0.databaseValue) },
            params.since.map { ("at >= ?", Int64($0.timeIntervalSince1970 * 1000).databaseValue) },
            params.until.map { ("at < ?", Int64($0.timeIntervalSince1970 * 1000).databaseValue) },
        ].compactMap { $0 }
        let filter = filters.isEmpty ? "1" : filters.map(\.0).joined(separator: " AND ")
        let filterArguments = StatementArguments(filters.map(\.1))
        let columns = "id, at, tenant, actor, sessionId, key, action, outcome, detail"
        return try await read { db in
            let rows: [Row]
            if let sessionId = params.sessionId {
                rows = try Self.sessionAudit(
                    db, tenant: caller.tenant, sessionId: sessionId, before: cursor, limit: limit + 1,
                    statement: db.cachedStatement(
                        sql: "SELECT \(columns), prevId, \(filter) FROM audit WHERE id = ? AND tenant = ? AND sessionId = ?"),
                    filterArguments: filterArguments)
            } else {
                rows = try Row.fetchAll(
                    db.cachedStatement(
                        sql: "SELECT \(columns) FROM audit WHERE tenant = ? AND id < ? AND \(filter) ORDER BY id DESC LIMIT ?"),
                    arguments: [caller.tenant, cursor] + filterArguments + [limit + 1])
            }
            let entries = rows.prefix(limit).map { row in
                AuditEntry(
                    id: row[0], at: Date(ms: row[1]), tenant: row[2], actor: row[3], sessionId: row[4], key: row[5],
                    action: row[6], outcome: row[7], detail: JSONText.decodeObject(row[8]))
            }
            return AuditList.Result(
                entries: entries, nextCursor: rows.count > limit ? entries.last.map { String($0.id) } : nil)
        }
    }

    /// Up to `limit` rows of one session's audit log below `cursor` that pass the filter, newest first.
    ///
    /// The walk follows `prevId` links (schema 0004) from the session's newest row, or from its deletion once
    /// the session is gone, and from the cursor's row when it is one of the session's. `statement` reads one
    /// row of the session by id, its link, and whether it passes the filter. The walk ends where the chain
    /// does: at the session's first row, or at a row that retention removed.
    private static func sessionAudit(
        _ db: Database, tenant: String, sessionId: String, before cursor: Int64, limit: Int, statement: Statement,
        filterArguments: StatementArguments
    ) throws -> [Row] {
        func link(_ id: Int64) throws -> Row? {
            try Row.fetchOne(statement, arguments: filterArguments + [id, tenant, sessionId])
        }
        var next: Int64?
        if cursor != Int64.max, let row = try link(cursor) {
            next = row[9]
        } else if let session = try Row.fetchOne(
            db.statement("SELECT lastAuditId FROM session WHERE id = ? AND tenant = ?"),
            arguments: [sessionId, tenant])
        {
            next = session[0]
        } else {
            next = try Int64.fetchOne(
                db.statement("""
                        SELECT max(id) FROM audit WHERE tenant = ? AND sessionId = ?
                        AND (action = 'session.delete' OR action = 'session.evict' OR action = 'session.purge')
                        """),
                arguments: [tenant, sessionId])
        }
        var rows: [Row] = []
        while let id = next, rows.count < limit, let row = try link(id) {
            // Links point to older rows; anything else (an id reused after the table emptied) ends the walk.
            next = (row[9] as Int64?).flatMap { $0 < id ? $0 : nil }
            if id < cursor, row[10] as Bool { rows.append(row) }
        }
        return rows
    }

    /// The tenant in figures, from counters that triggers and turns keep current: no query scans sessions.
    public func stats(caller: Caller) async throws -> RegistryStats.Result {
        let now = nowMs
        let path = self.path
        return try await read { db in
            var byStatus = Dictionary(uniqueKeysWithValues: SessionStatus.allCases.map { ($0.rawValue, 0) })
            for row in try Row.fetchAll(
                db.statement("SELECT status, count FROM tenantStatus WHERE tenant = ?"),
                arguments: [caller.tenant])
            {
                byStatus[row[0]] = row[1]
            }
            var counters: [String: Int] = [:]
            if let row = try Row.fetchOne(
                db.statement("""
                        SELECT turns, turnErrors, resumeAttempts, resumeSuccesses, resumeFailures, freshStarts
                        FROM tenantCounter WHERE tenant = ?
                        """),
                arguments: [caller.tenant])
            {
                for (index, name) in ["turns", "turnErrors", "resumeAttempts", "resumeSuccesses", "resumeFailures", "freshStarts"].enumerated() {
                    counters[name] = row[index]
                }
            }
            let reasons = try db.statement("SELECT reason, count FROM tenantFailureReason WHERE tenant = ? ORDER BY count DESC, reason LIMIT 5")
                .all(caller.tenant) { RegistryStats.Reason(reason: String($0, column: 0), count: Int($0, column: 1)) }

            // Ages by creation day; the newest day is split no finer than a day.
            let today = now / 86_400_000
            var buckets: [(label: String, maxDays: Int64, count: Int)] = [
                ("1d", 1, 0), ("7d", 7, 0), ("30d", 30, 0), ("90d", 90, 0), ("older", Int64.max, 0),
            ]
            for row in try Row.fetchAll(
                db.statement("SELECT day, count FROM tenantCreatedDay WHERE tenant = ? AND count > 0"),
                arguments: [caller.tenant])
            {
                let age = today - (row[0] as Int64)
                if let index = buckets.firstIndex(where: { age < $0.maxDays }) { buckets[index].count += row[1] as Int }
            }
            let attempts = counters["resumeAttempts"] ?? 0
            let successes = counters["resumeSuccesses"] ?? 0
            return RegistryStats.Result(
                sessions: byStatus.values.reduce(0, +), byStatus: byStatus, turns: counters["turns"] ?? 0,
                resumeAttempts: attempts, resumeSuccesses: successes, resumeFailures: counters["resumeFailures"] ?? 0,
                resumeSuccessRate: attempts > 0 ? Double(successes) / Double(attempts) : nil,
                freshStarts: counters["freshStarts"] ?? 0, topFailureReasons: reasons,
                sessionAge: buckets.map { RegistryStats.AgeBucket(le: $0.label, count: $0.count) },
                databaseBytes: path.map { Self.fileSize($0) } ?? 0,
                walBytes: path.map { Self.fileSize($0 + "-wal") } ?? 0)
        }
    }

    static func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
    }
}
