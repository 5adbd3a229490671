import Foundation
import GRDB
import SessionProtocol

/// A lookup by id found the session in another tenant. Callers see `not_found`; the owner's audit log
/// records the attempt.
struct CrossTenantAccess: Error {
    var ownerTenant: String
    var sessionId: String
}

extension SessionDatabase {
    /// Runs a write on the caller's session `id`, answering `not_found` for a missing id and for another
    /// tenant's id alike.
    func writeSession<T: Sendable>(
        _ id: String, caller: Caller, action: String,
        _ body: @escaping @Sendable (Database, SessionRow, Int64) throws -> T
    ) async throws -> T {
        try await scoped(caller: caller, action: action) {
            try await self.write { db in
                let now = self.nowMs
                return try body(db, try db.requireSession(id: id, caller: caller), now)
            }
        }
    }

    /// Runs a read on the caller's session `id`, with the same scoping as ``writeSession``.
    func readSession<T: Sendable>(
        _ id: String, caller: Caller, action: String,
        _ body: @escaping @Sendable (Database, SessionRow) throws -> T
    ) async throws -> T {
        try await scoped(caller: caller, action: action) {
            try await self.read { db in try body(db, try db.requireSession(id: id, caller: caller)) }
        }
    }

    /// Turns a cross-tenant lookup into `not_found` and audits it in the owner's tenant, off the
    /// response path so that the answer takes as long as for an id that does not exist.
    func scoped<T>(caller: Caller, action: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let denied as CrossTenantAccess {
            Task {
                try? await self.write { db in
                    try self.audit(
                        db, tenant: denied.ownerTenant, actor: caller.actor, sessionId: denied.sessionId, key: nil,
                        action: "access.denied", outcome: "refused",
                        detail: ["callerTenant": .string(caller.tenant), "method": .string(action)], at: self.nowMs)
                }
            }
            throw SessionError.notFound("session")
        }
    }

    /// Appends one audit row. A row about a session links to the session's previous row, and becomes the
    /// session's newest (schema 0004): so it is written while the session exists, before any deletion.
    func audit(
        _ db: Database, tenant: String, actor: String, sessionId: String?, key: String?, action: String,
        outcome: String = "ok", detail: [String: JSONValue] = [:], at: Int64
    ) throws {
        let sessionPk = try sessionId.flatMap { id in
            try Int64.fetchOne(
                db.statement("SELECT pk FROM session WHERE id = ? AND tenant = ?"), arguments: [id, tenant])
        }
        try appendAudit(
            db, sessionPk: sessionPk, tenant: tenant, actor: actor, sessionId: sessionId, key: key, action: action,
            outcome: outcome, detail: detail, at: at)
    }

    func audit(
        _ db: Database, _ row: SessionRow, caller: Caller, action: String, outcome: String = "ok",
        detail: [String: JSONValue] = [:], at: Int64
    ) throws {
        try appendAudit(
            db, sessionPk: row.pk, tenant: row.tenant, actor: caller.actor, sessionId: row.id, key: row.key,
            action: action, outcome: outcome, detail: detail, at: at)
    }

    /// Appends an audit row about `row`'s session like ``audit(_:_:caller:action:outcome:detail:at:)``, but
    /// leaves making it the session's newest to the caller's own `UPDATE session`, which must set
    /// `lastAuditId` to `row.lastAuditId`: a turn's acquire and complete each save a statement this way.
    /// `row.lastAuditId` must be current: nothing but this may have audited the session since `row` was read.
    func auditLinkedByCaller(
        _ db: Database, _ row: inout SessionRow, caller: Caller, action: String, outcome: String = "ok",
        detail: [String: JSONValue] = [:], at: Int64
    ) throws {
        row.lastAuditId = try appendAudit(
            db, sessionPk: row.pk, previous: row.lastAuditId, linkNow: false, tenant: row.tenant, actor: caller.actor,
            sessionId: row.id, key: row.key, action: action, outcome: outcome, detail: detail, at: at)
    }

    /// Inserts the row and returns its id. Its `prevId` is `previous`, else the session's `lastAuditId` as
    /// stored (SQLite's `COALESCE` evaluates the subquery only when `previous` is `NULL`, and then it is also
    /// `NULL` when `previous` was current).
    @discardableResult
    private func appendAudit(
        _ db: Database, sessionPk: Int64?, previous: Int64? = nil, linkNow: Bool = true, tenant: String,
        actor: String, sessionId: String?, key: String?, action: String, outcome: String,
        detail: [String: JSONValue], at: Int64
    ) throws -> Int64 {
        try db.statement("""
                INSERT INTO audit(at, tenant, actor, sessionId, key, action, outcome, detail, prevId)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, COALESCE(?, (SELECT lastAuditId FROM session WHERE pk = ?)))
                """
        ).run(
            at, tenant, actor, sessionId, key, action, outcome, detail.isEmpty ? "{}" : JSONText.encode(detail),
            previous, sessionPk)
        let id = db.lastInsertedRowID
        if let sessionPk, linkNow {
            try db.statement("UPDATE session SET lastAuditId = ? WHERE pk = ?").run(id, sessionPk)
        }
        return id
    }

    /// Deletes a session and its chain. The chain's links are linked, not keyed by session (schema 0006), so
    /// they go first, by following the links (``ChainWalk``); the foreign keys cascade to the rest (messages,
    /// transcripts, labels).
    func deleteSession(_ db: Database, pk: Int64) throws {
        try db.statement(ChainWalk.delete).run(pk)
        try db.statement("DELETE FROM session WHERE pk = ?").run(pk)
    }

    /// Adds a turn's changes to the tenant's counters shown by `stats`, in one statement.
    func count(_ db: Database, tenant: String, _ delta: CounterDelta) throws {
        try db.statement("""
                INSERT INTO tenantCounter(tenant, turns, turnErrors, resumeAttempts, resumeSuccesses, resumeFailures,
                                          freshStarts)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(tenant) DO UPDATE SET
                    turns = turns + excluded.turns, turnErrors = turnErrors + excluded.turnErrors,
                    resumeAttempts = resumeAttempts + excluded.resumeAttempts,
                    resumeSuccesses = resumeSuccesses + excluded.resumeSuccesses,
                    resumeFailures = resumeFailures + excluded.resumeFailures,
                    freshStarts = freshStarts + excluded.freshStarts
                """
        ).run(
            tenant, delta.turns, delta.turnErrors, delta.resumeAttempts, delta.resumeSuccesses, delta.resumeFailures,
            delta.freshStarts)
    }

    /// The name lease waiters of a tenant's key wait on.
    static func waitName(tenant: String, key: String) -> String { tenant + "\u{0}" + key }

    /// A random token of `bytes` bytes (128 bits by default), in lowercase hex. Eight bytes per draw from
    /// the system generator: each draw is a `getrandom` call.
    static func randomToken(bytes: Int = 16) -> String {
        var generator = SystemRandomNumberGenerator()
        return String(unsafeUninitializedCapacity: bytes * 2) { text in
            var written = 0
            var word: UInt64 = 0
            for index in 0..<bytes {
                if index % 8 == 0 { word = generator.next() }
                let byte = UInt8(truncatingIfNeeded: word >> (8 * UInt64(index % 8)))
                text[written] = hexDigit(byte >> 4)
                text[written + 1] = hexDigit(byte & 0x0f)
                written += 2
            }
            return written
        }
    }

    private static func hexDigit(_ value: UInt8) -> UInt8 { value < 10 ? 0x30 + value : 0x57 + value }
}

extension Database {
    /// The caller's session with this id; another tenant's session throws ``CrossTenantAccess``.
    func requireSession(id: String, caller: Caller) throws -> SessionRow {
        guard let row = try sessionRow(id: id) else { throw SessionError.notFound("session") }
        guard row.tenant == caller.tenant else {
            throw CrossTenantAccess(ownerTenant: row.tenant, sessionId: row.id)
        }
        return row
    }
}

/// Compares secrets in time that depends only on their lengths.
func constantTimeEquals(_ lhs: String, _ rhs: String) -> Bool {
    let a = Array(lhs.utf8)
    let b = Array(rhs.utf8)
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for index in a.indices { difference |= a[index] ^ b[index] }
    return difference == 0
}

/// Changes to a tenant's counters made by one operation.
struct CounterDelta {
    var turns = 0
    var turnErrors = 0
    var resumeAttempts = 0
    var resumeSuccesses = 0
    var resumeFailures = 0
    var freshStarts = 0
}

/// A session's chain, walked by its links (schema 0006) from the newest, which the session row names; `?1` is
/// the session's pk. Each step moves to an older link, so a damaged link ends the walk instead of looping.
enum ChainWalk {
    private static let links = """
        WITH RECURSIVE link(id) AS (
            SELECT lastChainLinkId FROM session WHERE pk = ?1
            UNION ALL
            SELECT chainLink.prevId FROM chainLink JOIN link ON chainLink.id = link.id
            WHERE chainLink.sessionPk = ?1 AND chainLink.prevId < chainLink.id)
        """
    /// The chain, oldest first.
    static let select = BuiltSQL(
        links + "\nSELECT seq, cliSessionId, reason, at FROM chainLink WHERE id IN link AND sessionPk = ?1 ORDER BY seq")
    /// Deletes the chain.
    static let delete = BuiltSQL(links + "\nDELETE FROM chainLink WHERE id IN link AND sessionPk = ?1")
}
