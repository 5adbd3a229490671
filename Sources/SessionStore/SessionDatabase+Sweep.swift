import Foundation
import GRDB
import SessionProtocol

/// What one sweep did.
public struct SweepReport: Sendable, Equatable {
    public var expired = 0
    public var leasesExpired = 0
    public var purged = 0
    public var evicted = 0
    public var auditPurged = 0
    /// Whether a step stopped at its batch budget with work left, so the next sweep should come soon.
    public var moreRemains = false

    public init() {}

    public var total: Int { expired + leasesExpired + purged + evicted + auditPurged }
}

extension SessionDatabase {
    private static let sweeper = Caller(tenant: "", actor: "sweeper")

    /// Applies the policies: expires idle sessions, ends expired leases, purges expired and closed sessions
    /// past retention, evicts idle sessions over a tenant's cap (closest to expiry first), and drops old audit rows.
    ///
    /// Each batch of at most `sweepBatchSize` rows (a tenth of that for deletes, which cascade to messages,
    /// chains and transcripts) is its own short transaction, so the sweeper never holds the writer for long
    /// and turns interleave with it. At most `maxBatches` batches run per step; `moreRemains` says one
    /// stopped there.
    public func sweep(maxBatches: Int = 20) async throws -> SweepReport {
        var report = SweepReport()
        report.leasesExpired = try await repeatBatches(maxBatches, into: &report) { db, now, limit in
            try self.expireLeases(db, now: now, limit: limit)
        }
        report.expired = try await repeatBatches(maxBatches, into: &report) { db, now, limit in
            try self.expireSessions(db, now: now, limit: limit)
        }
        report.purged = try await repeatBatches(maxBatches, size: deleteBatchSize, into: &report) { db, now, limit in
            try self.purgeSessions(db, now: now, limit: limit)
        }
        report.evicted = try await repeatBatches(maxBatches, size: deleteBatchSize, into: &report) { db, now, limit in
            try self.evictOverCap(db, now: now, limit: limit)
        }
        report.auditPurged = try await repeatBatches(maxBatches, into: &report) { db, now, limit in
            let cutoff = now - self.configuration.auditRetention.milliseconds
            try db.execute(
                sql: "DELETE FROM audit WHERE id IN (SELECT id FROM audit ORDER BY id LIMIT ?) AND at < ?",
                arguments: [limit, cutoff])
            return db.changesCount
        }
        return report
    }

    /// Runs `batch` with at most `size` rows (default `sweepBatchSize`) in separate transactions until it
    /// handles fewer than that, and notes in `report` when the budget ran out first.
    private func repeatBatches(
        _ maxBatches: Int, size: Int? = nil, into report: inout SweepReport,
        _ batch: @escaping @Sendable (Database, Int64, Int) throws -> Int
    ) async throws -> Int {
        let limit = size ?? configuration.sweepBatchSize
        var total = 0
        for _ in 0..<maxBatches {
            let count = try await write { db in try batch(db, self.nowMs, limit) }
            total += count
            if count < limit { return total }
        }
        report.moreRemains = true
        return total
    }

    /// Sessions deleted per transaction: each cascades to its messages, chain and transcripts.
    private var deleteBatchSize: Int { max(1, configuration.sweepBatchSize / 10) }

    private func sessions(_ db: Database, sql: String, _ arguments: StatementArguments) throws -> [SessionRow] {
        try db.sessionRows(db.makeStatement(sql: "SELECT \(SessionRow.columns) FROM session WHERE \(sql)"), arguments)
    }

    private func expireLeases(_ db: Database, now: Int64, limit: Int) throws -> Int {
        let rows = try sessions(
            db, sql: "leaseExpiresAt IS NOT NULL AND leaseExpiresAt <= ? LIMIT ?", [now, limit])
        for row in rows {
            try db.execute(
                sql: "UPDATE session SET leaseToken = NULL, leaseHolder = NULL, leaseExpiresAt = NULL, turnMode = NULL WHERE pk = ?",
                arguments: [row.pk])
            try audit(
                db, row, caller: Self.sweeper, action: "lease.expire",
                detail: ["holder": .string(row.leaseHolder ?? ""), "fence": .number(Double(row.leaseFence))], at: now)
        }
        for row in rows { leaseWaiters.notify(Self.waitName(tenant: row.tenant, key: row.key)) }
        return rows.count
    }

    /// The tenants that have sessions: the expiry indexes are per tenant.
    private func tenants(_ db: Database) throws -> [String] {
        try String.fetchAll(db.statement("SELECT DISTINCT tenant FROM tenantStatus WHERE count > 0"))
    }

    private func expireSessions(_ db: Database, now: Int64, limit: Int) throws -> Int {
        var rows: [SessionRow] = []
        for tenant in try tenants(db) where rows.count < limit {
            // The status terms `IN (…)` match the partial index `session_live_expiry`, so both scans are ranges
            // of its `expiryBound`, which trails `expiresAt` by at most 15 minutes (schema 0005). A session whose
            // bound has come due but which has not expired gets its bound raised, so later scans pass it by.
            try db.execute(
                sql: """
                    UPDATE session SET expiryBound = expiresAt WHERE pk IN (
                        SELECT pk FROM session WHERE tenant = ? AND status IN ('active', 'non_resumable')
                        AND expiryBound <= ? AND expiresAt > ? LIMIT ?)
                    """, arguments: [tenant, now, now, limit])
            rows += try sessions(
                db,
                sql: """
                    tenant = ? AND status IN ('active', 'non_resumable') AND status = 'active' AND expiryBound <= ?
                    AND expiresAt <= ? AND (leaseExpiresAt IS NULL OR leaseExpiresAt <= ?) LIMIT ?
                    """, [tenant, now, now, now, limit - rows.count])
        }
        for row in rows {
            try db.execute(sql: "UPDATE session SET status = 'expired' WHERE pk = ?", arguments: [row.pk])
            try audit(
                db, row, caller: Self.sweeper, action: "session.expire",
                detail: ["idleSince": .string(WireJSON.formatDate(Date(ms: row.lastUsedAt)))], at: now)
        }
        return rows.count
    }

    private func purgeSessions(_ db: Database, now: Int64, limit: Int) throws -> Int {
        let cutoff = now - configuration.retention.milliseconds
        var rows: [SessionRow] = []
        for tenant in try tenants(db) where rows.count < limit {
            rows += try sessions(
                db,
                sql: """
                    tenant = ? AND status IN ('expired', 'closed') AND expiresAt < ?
                    AND (leaseExpiresAt IS NULL OR leaseExpiresAt <= ?) LIMIT ?
                    """, [tenant, cutoff, now, limit - rows.count])
        }
        for row in rows {
            try audit(
                db, row, caller: Self.sweeper, action: "session.purge",
                detail: ["status": .string(row.status.rawValue), "messages": .number(Double(row.messageCount))], at: now)
            try deleteSession(db, pk: row.pk)
        }
        return rows.count
    }

    /// Evicts up to `limit` idle sessions of tenants over their cap.
    private func evictOverCap(_ db: Database, now: Int64, limit: Int) throws -> Int {
        let cap = configuration.maxSessionsPerTenant
        let over = try Row.fetchAll(
            db, sql: "SELECT tenant, SUM(count) - ? FROM tenantStatus GROUP BY tenant HAVING SUM(count) > ?",
            arguments: [cap, cap])
        var evicted = 0
        for tenantRow in over {
            let tenant: String = tenantRow[0]
            let excess: Int = tenantRow[1]
            let rows = try evictionCandidates(db, tenant: tenant, now: now, limit: min(excess, limit - evicted))
            for row in rows {
                try audit(
                    db, row, caller: Self.sweeper, action: "session.evict",
                    detail: ["cause": "tenant_cap", "cap": .number(Double(cap))], at: now)
                try deleteSession(db, pk: row.pk)
            }
            evicted += rows.count
            if evicted >= limit { break }
        }
        return evicted
    }
}
