import Foundation
import GRDB
import SessionProtocol

extension SessionDatabase {
    /// One session by id or key.
    public func get(_ selector: SessionSelector, caller: Caller) async throws -> SessionInfo {
        let now = nowMs
        if let id = selector.sessionId {
            return try await readSession(id, caller: caller, action: SessionGet.name) { _, row in row.info(now: now) }
        }
        guard let key = selector.key else { throw SessionError.invalidParams("give sessionId or key") }
        try Validate.name(key, field: "key", maxBytes: configuration.maxKeyBytes)
        return try await read { db in
            guard let row = try db.sessionRow(tenant: caller.tenant, key: key) else {
                throw SessionError.notFound("session")
            }
            return row.info(now: now)
        }
    }

    /// A page of the caller's sessions, newest first, with optional filters.
    public func list(_ params: SessionList.Params, caller: Caller) async throws -> SessionList.Result {
        try Validate.range(params.limit, field: "limit", 1...1000)
        let limit = params.limit ?? 50
        let cursorPk = try params.cursor.map(Self.parseCursor) ?? Int64.max
        let now = nowMs
        return try await read { db in
            var sql = "SELECT \(SessionRow.columns) FROM session WHERE tenant = ? AND pk < ?"
            var arguments: StatementArguments = [caller.tenant, cursorPk]
            if let status = params.status {
                sql += " AND status = ?"
                _ = arguments.append(contentsOf: [status.rawValue])
            }
            if let tool = params.tool {
                sql += " AND tool = ?"
                _ = arguments.append(contentsOf: [tool])
            }
            if let prefix = params.keyPrefix {
                sql += " AND substr(key, 1, ?) = ?"
                _ = arguments.append(contentsOf: [prefix.count, prefix])
            }
            if let label = params.label {
                sql += " AND pk IN (SELECT sessionPk FROM sessionLabel WHERE tenant = ? AND label = ?)"
                _ = arguments.append(contentsOf: [caller.tenant, label])
            }
            sql += " ORDER BY pk DESC LIMIT ?"
            _ = arguments.append(contentsOf: [limit + 1])
            let rows = try db.sessionRows(db.cachedStatement(sql: sql), arguments)
            let page = rows.prefix(limit)
            return SessionList.Result(
                sessions: page.map { $0.info(now: now) },
                nextCursor: rows.count > limit ? page.last.map { String($0.pk) } : nil)
        }
    }

    /// Marks a session used now, optionally with a new TTL; an expired session stays expired.
    public func touch(_ params: SessionTouch.Params, caller: Caller) async throws -> SessionInfo {
        let ttlMs: Int64? =
            try params.ttlSeconds.map { _ in
                try Validate.duration(
                    params.ttlSeconds, field: "ttlSeconds", default: configuration.defaultTTL,
                    max: configuration.maxTTL)
            }
        let id = try await resolveID(params.selector, caller: caller)
        return try await writeSession(id, caller: caller, action: SessionTouch.name) { db, row, now in
            let ttl = ttlMs ?? Int64(row.ttlSeconds) * 1000
            try db.statement("UPDATE session SET lastUsedAt = ?, ttlSeconds = ?, expiresAt = ? WHERE pk = ?")
                .execute(arguments: [now, ttl / 1000, now + ttl, row.pk])
            return try db.sessionRow(pk: row.pk)!.info(now: now)
        }
    }

    /// Changes metadata, labels, TTL or status.
    public func update(_ params: SessionUpdate.Params, caller: Caller) async throws -> SessionInfo {
        try Validate.labels(params.labels)
        let metadata = try Validate.metadata(params.metadata, maxBytes: configuration.maxMetadataBytes)
        let ttlMs: Int64? =
            try params.ttlSeconds.map { _ in
                try Validate.duration(
                    params.ttlSeconds, field: "ttlSeconds", default: configuration.defaultTTL,
                    max: configuration.maxTTL)
            }
        if let status = params.status, status != .closed, status != .active {
            throw SessionError.invalidParams("status can be set to closed or active only")
        }
        return try await writeSession(params.sessionId, caller: caller, action: SessionUpdate.name) { db, row, now in
            var detail: [String: JSONValue] = [:]
            if let metadata {
                try db.execute(sql: "UPDATE session SET metadata = ? WHERE pk = ?", arguments: [metadata, row.pk])
                detail["metadata"] = true
            }
            if let labels = params.labels {
                try db.execute(
                    sql: "UPDATE session SET labels = ? WHERE pk = ?", arguments: [JSONText.encode(labels), row.pk])
                detail["labels"] = .array(labels.map(JSONValue.string))
            }
            if let ttlMs {
                try db.execute(
                    sql: "UPDATE session SET ttlSeconds = ?, expiresAt = lastUsedAt + ? WHERE pk = ?",
                    arguments: [ttlMs / 1000, ttlMs, row.pk])
                detail["ttlSeconds"] = .number(Double(ttlMs / 1000))
            }
            if let status = params.status, status != row.status {
                if status == .closed {
                    try db.execute(sql: "UPDATE session SET status = 'closed' WHERE pk = ?", arguments: [row.pk])
                } else {
                    // Reopening: the old head is not resumed; the next turn starts fresh.
                    let cause: FreshReason = row.status == .expired ? .expired : row.status == .closed ? .stale : .nonResumable
                    try db.execute(
                        sql: """
                            UPDATE session SET status = 'active', pendingFresh = ?, consecutiveFailures = 0,
                                lastUsedAt = ?, expiresAt = ? + ttlSeconds * 1000
                            WHERE pk = ?
                            """,
                        arguments: [cause.rawValue, now, now, row.pk])
                }
                detail["status"] = .string(status.rawValue)
                detail["previousStatus"] = .string(row.status.rawValue)
            }
            try self.audit(db, row, caller: caller, action: "session.update", detail: detail, at: now)
            return try db.sessionRow(pk: row.pk)!.info(now: now)
        }
    }

    /// Deletes a session with its chain, messages and transcripts. A held lease blocks it unless `force`.
    public func delete(_ params: SessionDelete.Params, caller: Caller) async throws -> Bool {
        let waitName = try await writeSession(params.sessionId, caller: caller, action: SessionDelete.name) {
            db, row, now in
            if row.hasLiveLease(now: now), params.force != true {
                throw SessionError(
                    .leaseHeld, "the session is in use by \(row.leaseHolder ?? "another client"); pass force to delete it",
                    detail: ["holder": .string(row.leaseHolder ?? "")])
            }
            try self.audit(
                db, row, caller: caller, action: "session.delete",
                detail: ["force": .bool(params.force == true), "messages": .number(Double(row.messageCount))], at: now)
            try self.deleteSession(db, pk: row.pk)
            return Self.waitName(tenant: row.tenant, key: row.key)
        }
        leaseWaiters.notify(waitName)
        return true
    }

    /// Creates a session under a new key whose parent is this one. Its first turn resumes the parent's head
    /// with `--fork-session`, and the id that turn reports starts the child's chain as `forked`.
    public func fork(_ params: SessionFork.Params, caller: Caller) async throws -> SessionInfo {
        try Validate.name(params.key, field: "key", maxBytes: configuration.maxKeyBytes)
        return try await writeSession(params.sessionId, caller: caller, action: SessionFork.name) { db, parent, now in
            if try db.sessionRow(tenant: caller.tenant, key: params.key) != nil {
                throw SessionError(.conflict, "a session with key \(params.key) already exists")
            }
            let ttlMs = Int64(parent.ttlSeconds) * 1000
            try db.execute(
                sql: """
                    INSERT INTO session(id, tenant, key, tool, cwd, cliSessionId, createdAt, lastUsedAt, expiresAt,
                                        ttlSeconds, metadata, labels, parentId, forkPending, cliCostUsd)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    UUID().uuidString.lowercased(), caller.tenant, params.key, parent.tool, parent.cwd,
                    parent.cliSessionId, now, now, now + ttlMs, parent.ttlSeconds, parent.metadata, parent.labels,
                    parent.id, parent.cliSessionId != nil, parent.cliCostUsd,
                ])
            let child = try db.sessionRow(pk: db.lastInsertedRowID)!
            // The child carries the parent's transcript for the head it will fork from.
            if let head = parent.cliSessionId {
                try db.execute(
                    sql: """
                        INSERT INTO transcript(sessionPk, cliSessionId, size, updatedAt)
                            SELECT ?, cliSessionId, size, ? FROM transcript WHERE sessionPk = ? AND cliSessionId = ?;
                        INSERT INTO transcriptChunk(sessionPk, cliSessionId, start, data)
                            SELECT ?, cliSessionId, start, data FROM transcriptChunk WHERE sessionPk = ? AND cliSessionId = ?;
                        UPDATE session SET transcriptBytes =
                            (SELECT COALESCE(SUM(size), 0) FROM transcript WHERE sessionPk = ?) WHERE pk = ?;
                        """,
                    arguments: [child.pk, now, parent.pk, head, child.pk, parent.pk, head, child.pk, child.pk])
            }
            try self.audit(
                db, child, caller: caller, action: "session.fork",
                detail: ["parentId": .string(parent.id), "parentKey": .string(parent.key)], at: now)
            return try db.sessionRow(pk: child.pk)!.info(now: now)
        }
    }

    /// The chain of CLI session ids, oldest first.
    public func history(_ params: SessionHistory.Params, caller: Caller) async throws -> [ChainLink] {
        try await readSession(params.sessionId, caller: caller, action: SessionHistory.name) { db, row in
            try Row.fetchAll(db.statement(ChainWalk.select), arguments: [row.pk]).map { row in
                ChainLink(
                    seq: row[0], cliSessionId: row[1], reason: ChainReason(rawValue: row[2]) ?? .created,
                    at: Date(ms: row[3]))
            }
        }
    }

    /// A page cursor: the opaque position after which the next page starts.
    static func parseCursor(_ cursor: String) throws -> Int64 {
        guard let value = Int64(cursor), value > 0 else { throw SessionError.invalidParams("cursor is not valid") }
        return value
    }

    /// The id of the session a selector names.
    func resolveID(_ selector: SessionSelector, caller: Caller) async throws -> String {
        if let id = selector.sessionId { return id }
        guard let key = selector.key else { throw SessionError.invalidParams("give sessionId or key") }
        try Validate.name(key, field: "key", maxBytes: configuration.maxKeyBytes)
        return try await read { db in
            guard let id = try String.fetchOne(
                db.statement("SELECT id FROM session WHERE tenant = ? AND key = ?"),
                arguments: [caller.tenant, key])
            else { throw SessionError.notFound("session") }
            return id
        }
    }
}
