import Foundation
import GRDB
import SessionProtocol

extension SessionDatabase {
    private enum AcquireAttempt: Sendable {
        case granted(SessionAcquire.Result)
        case held(holder: String, expiresAt: Int64, sessionId: String)
    }

    /// Gets or creates the session for a key and grants its lease, in one transaction, and says whether the
    /// turn resumes or starts fresh. While another holder has the lease it waits up to `waitMs`, then
    /// answers `lease_held` with the holder and its expiry.
    public func acquire(_ params: SessionAcquire.Params, caller: Caller) async throws -> SessionAcquire.Result {
        let config = configuration
        try Validate.name(params.key, field: "key", maxBytes: config.maxKeyBytes)
        try Validate.name(params.tool ?? "claude", field: "tool", maxBytes: 64)
        try Validate.optionalText(params.cwd, field: "cwd", maxBytes: 4096)
        try Validate.optionalText(params.holder, field: "holder", maxBytes: 256)
        try Validate.range(params.waitMs, field: "waitMs", 0...86_400_000)
        try Validate.labels(params.labels)
        let ttlMs = try Validate.duration(
            params.ttlSeconds, field: "ttlSeconds", default: config.defaultTTL, max: config.maxTTL)
        let leaseMs = try Validate.duration(
            params.leaseSeconds, field: "leaseSeconds", default: config.defaultLease, max: config.maxLease)
        let metadata = try Validate.metadata(params.metadata, maxBytes: config.maxMetadataBytes)

        let waitName = Self.waitName(tenant: caller.tenant, key: params.key)
        let deadline = ContinuousClock.now + .milliseconds(params.waitMs ?? 0)
        // Drawn here, off the single writer: at most one attempt grants it.
        let token = Self.randomToken()
        while true {
            let attempt = try await write { db in
                try self.acquireOnce(
                    db, params, caller: caller, token: token, ttlMs: ttlMs, leaseMs: leaseMs, metadata: metadata)
            }
            switch attempt {
            case .granted(let result):
                return result
            case .held(let holder, let expiresAt, let sessionId):
                let remaining = deadline - ContinuousClock.now
                guard remaining > .zero else {
                    try? await write { db in
                        try self.audit(
                            db, tenant: caller.tenant, actor: caller.actor, sessionId: sessionId, key: params.key,
                            action: "lease.conflict", outcome: "refused",
                            detail: ["holder": .string(holder)], at: self.nowMs)
                    }
                    throw SessionError(
                        .leaseHeld, "the session is in use by \(holder) until \(WireJSON.formatDate(Date(ms: expiresAt)))",
                        detail: [
                            "holder": .string(holder), "expiresAt": .string(WireJSON.formatDate(Date(ms: expiresAt))),
                            "sessionId": .string(sessionId),
                        ])
                }
                // Wake on release, or when the lease runs out and can be taken over.
                let untilExpiry = Duration.milliseconds(max(expiresAt - nowMs, 0) + 5)
                await leaseWaiters.wait(for: waitName, timeout: min(remaining, untilExpiry, .seconds(1)))
                try Task.checkCancellation()
                if leaseWaiters.isStopped {
                    throw SessionError(.shuttingDown, "the server is shutting down; retry the acquire later")
                }
            }
        }
    }

    private func acquireOnce(
        _ db: Database, _ params: SessionAcquire.Params, caller: Caller, token: String, ttlMs: Int64, leaseMs: Int64,
        metadata: String?
    ) throws -> AcquireAttempt {
        let now = nowMs
        var created = false
        var row: SessionRow
        if let existing = try db.sessionRow(tenant: caller.tenant, key: params.key) {
            row = existing
        } else {
            try evictIfAtCap(db, caller: caller, now: now)
            try db.statement("""
                    INSERT INTO session(id, tenant, key, tool, cwd, createdAt, lastUsedAt, expiresAt, ttlSeconds,
                                        metadata, labels)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            ).run(
                UUID().uuidString.lowercased(), caller.tenant, params.key, params.tool ?? "claude", params.cwd, now,
                now, now + ttlMs, ttlMs / 1000, metadata ?? "{}", params.labels.map(JSONText.encode) ?? "[]")
            row = try db.sessionRow(pk: db.lastInsertedRowID)!
            try auditLinkedByCaller(db, &row, caller: caller, action: "session.create", at: now)
            created = true
        }

        if row.hasLiveLease(now: now) {
            return .held(holder: row.leaseHolder ?? "", expiresAt: row.leaseExpiresAt ?? now, sessionId: row.id)
        }
        // Every audit row from here on becomes the session's newest through the UPDATE below.
        if row.leaseToken != nil {
            try auditLinkedByCaller(
                db, &row, caller: caller, action: "lease.takeover",
                detail: ["previousHolder": .string(row.leaseHolder ?? ""), "previousFence": .number(Double(row.leaseFence))],
                at: now)
        }

        // Start over after expiry or closing: forget the head so no later turn resumes it.
        var status = row.status
        var head = row.cliSessionId
        var pendingFresh = row.pendingFresh
        if status == .closed {
            (status, head, pendingFresh) = (.active, nil, .stale)
            try auditLinkedByCaller(db, &row, caller: caller, action: "session.update", detail: ["status": "active", "cause": "reopened"], at: now)
        } else if status == .expired || (status == .active && row.expiresAt <= now) {
            if status == .active {
                try auditLinkedByCaller(db, &row, caller: caller, action: "session.expire", detail: ["idleSince": .string(WireJSON.formatDate(Date(ms: row.lastUsedAt)))], at: now)
            }
            (status, head, pendingFresh) = (.active, nil, .expired)
        }

        let decision: ResumeDecision
        let mode: TurnMode
        if status == .nonResumable {
            (decision, mode) = (.fresh(.nonResumable), .fresh(.nonResumable))
        } else if let pendingFresh {
            (decision, mode) = (.fresh(pendingFresh), .fresh(pendingFresh))
        } else if let head {
            (decision, mode) = row.forkPending ? (.resume(head, fork: true), .fork) : (.resume(head), .resume)
        } else {
            (decision, mode) = (.fresh(.new), .fresh(.new))
        }

        let lease = Lease(
            token: token, fence: row.leaseFence + 1, holder: params.holder ?? caller.actor,
            expiresAt: Date(ms: now + leaseMs))
        var grantDetail: [String: JSONValue] = [
            "fence": .number(Double(lease.fence)), "holder": .string(lease.holder),
            "decision": .string(decision.action.rawValue),
        ]
        if let id = decision.cliSessionId { grantDetail["cliSessionId"] = .string(id) }
        try auditLinkedByCaller(db, &row, caller: caller, action: "lease.grant", detail: grantDetail, at: now)
        if let reason = decision.reason {
            try auditLinkedByCaller(db, &row, caller: caller, action: "fresh_start", detail: ["cause": .string(reason.rawValue)], at: now)
            try count(db, tenant: caller.tenant, CounterDelta(freshStarts: 1))
        }

        let ttl = created ? ttlMs : Int64(row.ttlSeconds) * 1000
        try setStatus(db, row, status)
        try db.statement("""
                UPDATE session SET cliSessionId = ?, pendingFresh = ?, turnMode = ?, leaseToken = ?,
                    leaseHolder = ?, leaseFence = ?, leaseExpiresAt = ?, lastUsedAt = ?, expiresAt = ?,
                    cwd = COALESCE(?, cwd), lastAuditId = ?
                WHERE pk = ?
                """
        ).run(
            head, pendingFresh?.rawValue, mode.rawValue, lease.token, lease.holder, lease.fence,
            now + leaseMs, now, now + ttl, params.cwd, row.lastAuditId, row.pk)

        var transcript: TranscriptState?
        if let id = decision.cliSessionId,
            let size = try db.statement("SELECT size FROM transcript WHERE sessionPk = ? AND cliSessionId = ?")
                .first(row.pk, id, read: { Int($0, column: 0) }), size > 0
        {
            transcript = TranscriptState(cliSessionId: id, size: size)
        }
        (row.status, row.cliSessionId, row.pendingFresh, row.turnMode) = (status, head, pendingFresh, mode)
        (row.leaseToken, row.leaseHolder, row.leaseFence, row.leaseExpiresAt) = (lease.token, lease.holder, lease.fence, now + leaseMs)
        (row.lastUsedAt, row.expiresAt) = (now, now + ttl)
        if let cwd = params.cwd { row.cwd = cwd }
        return .granted(
            SessionAcquire.Result(
                session: row.info(now: now), created: created, lease: lease, decision: decision,
                transcript: transcript))
    }

    /// Makes room for one more session when the tenant is at its cap, by evicting the idle session that is
    /// closest to expiry (dormant ones first).
    private func evictIfAtCap(_ db: Database, caller: Caller, now: Int64) throws {
        let count = try Int.fetchOne(
            db.statement("SELECT COALESCE(SUM(count), 0) FROM tenantStatus WHERE tenant = ?"),
            arguments: [caller.tenant]) ?? 0
        guard count >= configuration.maxSessionsPerTenant else { return }
        guard let victim = try evictionCandidates(db, tenant: caller.tenant, now: now, limit: 1).first else {
            throw SessionError(
                .tooLarge,
                "the tenant has \(count) sessions, its cap, and every one is in use; delete some or raise the cap")
        }
        try audit(
            db, victim, caller: caller, action: "session.evict",
            detail: ["cause": "tenant_cap", "cap": .number(Double(configuration.maxSessionsPerTenant))], at: now)
        try deleteSession(db, pk: victim.pk)
    }

    /// Sets a session's status in a statement of its own, only when it changes: the turn's own updates leave
    /// `status` out, since any update that names it rewrites the entries of the partial indexes it selects
    /// (`session_live_expiry`, `session_dormant_expiry`), a random page each, even when its value stays.
    func setStatus(_ db: Database, _ row: SessionRow, _ status: SessionStatus) throws {
        guard status != row.status else { return }
        try db.statement("UPDATE session SET status = ? WHERE pk = ?").run(status.rawValue, row.pk)
    }

    /// The sessions a tenant over its cap gives up first: no live lease, expired and closed ones before live
    /// ones, each in order of expiry (for equal TTLs, least recently used first). Both scans are index ranges.
    ///
    /// Live sessions are indexed by `expiryBound`, which trails `expiresAt` by at most 15 minutes (schema
    /// 0005), so their scan reads `evictionLookahead` more in that order and keeps those closest to expiry:
    /// exact unless that many sessions' bounds fall in the 15 minutes before the true closest one's expiry,
    /// and then off by less than 15 minutes.
    func evictionCandidates(_ db: Database, tenant: String, now: Int64, limit: Int) throws -> [SessionRow] {
        let dormant = try db.sessionRows(
            db.cachedStatement(
                sql: """
                    SELECT \(SessionRow.columns) FROM session
                    WHERE tenant = ? AND status IN ('expired', 'closed') AND (leaseExpiresAt IS NULL OR leaseExpiresAt <= ?)
                    ORDER BY expiresAt LIMIT ?
                    """),
            [tenant, now, limit])
        guard dormant.count < limit else { return dormant }
        let live = try db.sessionRows(
            db.cachedStatement(
                sql: """
                    SELECT \(SessionRow.columns) FROM session
                    WHERE tenant = ? AND status IN ('active', 'non_resumable')
                    AND (leaseExpiresAt IS NULL OR leaseExpiresAt <= ?)
                    ORDER BY expiryBound LIMIT ?
                    """),
            [tenant, now, limit - dormant.count + Self.evictionLookahead])
        return dormant + live.sorted { ($0.expiresAt, $0.pk) < ($1.expiresAt, $1.pk) }.prefix(limit - dormant.count)
    }

    /// Live sessions read beyond those evicted, to find the ones closest to expiry among them.
    static let evictionLookahead = 64

    /// Records a turn's outcome, updates counters and the chain, and releases the lease unless `keepLease`.
    public func complete(_ params: SessionComplete.Params, caller: Caller) async throws -> SessionComplete.Result {
        if params.outcome == .ok {
            guard let id = params.cliSessionId else {
                throw SessionError.invalidParams("cliSessionId is required with outcome ok")
            }
            try Validate.name(id, field: "cliSessionId", maxBytes: 256)
        }
        try Validate.optionalText(params.reason, field: "reason", maxBytes: 1024)
        try Validate.nonNegative(params.costUsd, field: "costUsd")
        try Validate.nonNegative(params.cliTotalCostUsd, field: "cliTotalCostUsd")
        try Validate.range(params.inputTokens, field: "inputTokens", 0...Int(Int32.max))
        try Validate.range(params.outputTokens, field: "outputTokens", 0...Int(Int32.max))
        try Validate.messages(params.messages ?? [], maxBytes: configuration.maxMessageBytes)
        let maxFailures = configuration.maxConsecutiveFailures
        let leaseMs = configuration.defaultLease.milliseconds

        let result = try await writeSession(params.sessionId, caller: caller, action: SessionComplete.name) {
            db, row, now in
            var row = row
            try self.checkLease(row, params.lease, now: now)
            var status = row.status
            var head = row.cliSessionId
            var mode = row.turnMode ?? (head == nil ? .fresh(.new) : .resume)
            var consecutive = row.consecutiveFailures
            var attempts = row.resumeAttempts
            var successes = row.resumeSuccesses
            var totalFailures = row.totalFailures
            var lastFailure = row.lastFailureReason
            var pendingFresh = row.pendingFresh
            var forkPending = row.forkPending
            var turns = row.turnCount
            var cliCost = row.cliCostUsd
            var addedCost = params.costUsd ?? 0
            var chainExtended = false
            var followUp: ResumeDecision?
            var delta = CounterDelta()
            var auditAction = "turn.complete"
            var auditOutcome = "ok"
            var auditDetail: [String: JSONValue] = [:]

            switch params.outcome {
            case .ok:
                let reported = params.cliSessionId!
                var chainReason: ChainReason?
                switch mode {
                case .resume:
                    attempts += 1
                    successes += 1
                    if reported != head { chainReason = .changedByCLI }
                case .fork:
                    attempts += 1
                    successes += 1
                    if reported != head { chainReason = .forked }
                case .fresh(let reason):
                    if reported != head { chainReason = reason.chainReason }
                    status = .active
                }
                if let chainReason {
                    try db.statement("""
                            INSERT INTO chainLink(sessionPk, seq, prevId, cliSessionId, reason, at)
                            VALUES (?1, COALESCE((SELECT seq FROM chainLink WHERE id = ?2), 0) + 1, ?2, ?3, ?4, ?5)
                            """
                    ).run(row.pk, row.lastChainLinkId, reported, chainReason.rawValue, now)
                    row.lastChainLinkId = db.lastInsertedRowID
                    head = reported
                    chainExtended = true
                }
                if let total = params.cliTotalCostUsd {
                    // Same id (or a fork, which inherits its parent's total): add what is new since the last report.
                    let previous = (reported == row.cliSessionId || mode == .fork) ? row.cliCostUsd : 0
                    addedCost += max(0, total - previous)
                    cliCost = total
                }
                consecutive = 0
                pendingFresh = nil
                forkPending = false
                turns += 1
                var detail: [String: JSONValue] = ["cliSessionId": .string(reported)]
                if let chainReason { detail["chainReason"] = .string(chainReason.rawValue) }
                if mode == .resume || mode == .fork {
                    auditAction = "resume_ok"
                    delta.resumeAttempts = 1
                    delta.resumeSuccesses = 1
                } else {
                    auditAction = "turn.complete"
                }
                auditDetail = detail
                delta.turns = 1
            case .resumeFailed:
                let reason = String((params.reason ?? "unknown").prefix(200))
                attempts += 1
                consecutive += 1
                totalFailures += 1
                lastFailure = reason
                let nowNonResumable = consecutive >= maxFailures && status != .nonResumable
                if nowNonResumable { status = .nonResumable }
                mode = .fresh(.resumeFailed)
                followUp = .fresh(.resumeFailed)
                (auditAction, auditOutcome) = ("resume_failed", "failed")
                auditDetail = [
                    "reason": .string(reason), "cliSessionId": head.map(JSONValue.string) ?? .null,
                    "consecutiveFailures": .number(Double(consecutive)), "nonResumable": .bool(status == .nonResumable),
                ]
                delta.resumeAttempts = 1
                delta.resumeFailures = 1
                try db.statement("""
                        INSERT INTO tenantFailureReason(tenant, reason, count) VALUES (?, ?, 1)
                        ON CONFLICT(tenant, reason) DO UPDATE SET count = count + 1
                        """
                ).run(row.tenant, reason)
            case .error:
                (auditAction, auditOutcome) = ("turn.complete", "failed")
                auditDetail = ["reason": .string(params.reason ?? "unknown")]
                delta.turnErrors = 1
            }

            var messageCount = row.messageCount
            if let messages = params.messages, !messages.isEmpty {
                try self.insertMessages(db, sessionPk: row.pk, after: messageCount, messages, now: now)
                messageCount += messages.count
            }
            let keep = params.keepLease ?? false
            // One audit row for the turn; the lease's release is part of it.
            auditDetail["leaseReleased"] = .bool(!keep)
            try self.auditLinkedByCaller(
                db, &row, caller: caller, action: auditAction, outcome: auditOutcome, detail: auditDetail, at: now)
            try self.count(db, tenant: row.tenant, delta)
            try self.setStatus(db, row, status)
            try db.statement("""
                    UPDATE session SET cliSessionId = ?, turnMode = ?, consecutiveFailures = ?,
                        resumeAttempts = ?, resumeSuccesses = ?, totalFailures = ?, lastFailureReason = ?,
                        pendingFresh = ?, forkPending = ?, turnCount = ?, costUsd = costUsd + ?, cliCostUsd = ?,
                        messageCount = ?,
                        inputTokens = inputTokens + ?, outputTokens = outputTokens + ?, lastUsedAt = ?,
                        expiresAt = ? + ttlSeconds * 1000,
                        leaseToken = CASE WHEN ? THEN leaseToken END,
                        leaseHolder = CASE WHEN ? THEN leaseHolder END,
                        leaseExpiresAt = CASE WHEN ? THEN ? END,
                        lastAuditId = ?, lastChainLinkId = ?
                    WHERE pk = ?
                    """
            ).run(
                head, keep ? mode.rawValue : nil, consecutive, attempts, successes, totalFailures,
                lastFailure, pendingFresh?.rawValue, forkPending, turns, addedCost, cliCost, messageCount,
                params.inputTokens ?? 0, params.outputTokens ?? 0, now, now, keep, keep, keep, now + leaseMs,
                row.lastAuditId, row.lastChainLinkId, row.pk)
            // The row as just written, without reading it back.
            var updated = row
            (updated.status, updated.cliSessionId, updated.turnMode) = (status, head, keep ? mode : nil)
            (updated.consecutiveFailures, updated.resumeAttempts, updated.resumeSuccesses) = (consecutive, attempts, successes)
            (updated.totalFailures, updated.lastFailureReason) = (totalFailures, lastFailure)
            (updated.pendingFresh, updated.forkPending, updated.turnCount) = (pendingFresh, forkPending, turns)
            updated.costUsd += addedCost
            updated.cliCostUsd = cliCost
            updated.inputTokens += params.inputTokens ?? 0
            updated.outputTokens += params.outputTokens ?? 0
            updated.messageCount = messageCount
            updated.lastUsedAt = now
            updated.expiresAt = now + Int64(row.ttlSeconds) * 1000
            if keep {
                updated.leaseExpiresAt = now + leaseMs
            } else {
                (updated.leaseToken, updated.leaseHolder, updated.leaseExpiresAt) = (nil, nil, nil)
            }
            let lease =
                keep
                ? Lease(
                    token: params.lease.token, fence: row.leaseFence, holder: row.leaseHolder ?? caller.actor,
                    expiresAt: Date(ms: now + leaseMs)) : nil
            return (
                SessionComplete.Result(
                    session: updated.info(now: now), chainExtended: chainExtended, lease: lease,
                    decision: keep ? (followUp ?? self.decision(for: updated)) : nil),
                Self.waitName(tenant: row.tenant, key: row.key), keep
            )
        }
        if !result.2 { leaseWaiters.notify(result.1) }
        return result.0
    }

    /// What a follow-up turn under a kept lease does.
    private func decision(for row: SessionRow) -> ResumeDecision {
        if row.status == .nonResumable { return .fresh(.nonResumable) }
        if let head = row.cliSessionId { return .resume(head) }
        return .fresh(.new)
    }

    /// Refuses a write whose lease is not the current, unexpired grant.
    func checkLease(_ row: SessionRow, _ proof: LeaseProof, now: Int64) throws {
        guard let token = row.leaseToken, row.leaseFence == proof.fence, constantTimeEquals(token, proof.token)
        else {
            throw SessionError(
                .staleLease,
                "the lease is not current: it was released, or expired and was taken over (current fence \(row.leaseFence))",
                detail: ["currentFence": .number(Double(row.leaseFence))])
        }
        guard let expiresAt = row.leaseExpiresAt, expiresAt > now else {
            throw SessionError(
                .staleLease, "the lease expired at \(WireJSON.formatDate(Date(ms: row.leaseExpiresAt ?? 0)))",
                detail: ["currentFence": .number(Double(row.leaseFence))])
        }
    }

    /// Extends a held lease.
    public func renew(_ params: SessionRenew.Params, caller: Caller) async throws -> SessionRenew.Result {
        let leaseMs = try Validate.duration(
            params.leaseSeconds, field: "leaseSeconds", default: configuration.defaultLease,
            max: configuration.maxLease)
        return try await writeSession(params.sessionId, caller: caller, action: SessionRenew.name) { db, row, now in
            try self.checkLease(row, params.lease, now: now)
            try db.statement("UPDATE session SET leaseExpiresAt = ?, lastUsedAt = ? WHERE pk = ?")
                .run(now + leaseMs, now, row.pk)
            return SessionRenew.Result(
                lease: Lease(
                    token: params.lease.token, fence: row.leaseFence, holder: row.leaseHolder ?? caller.actor,
                    expiresAt: Date(ms: now + leaseMs)))
        }
    }

    /// Gives a lease back without recording a turn. Releasing a lease that is already released is not an error.
    public func release(_ params: SessionRelease.Params, caller: Caller) async throws -> SessionRelease.Result {
        let (released, waitName) = try await writeSession(params.sessionId, caller: caller, action: SessionRelease.name) {
            db, row, now -> (Bool, String) in
            let name = Self.waitName(tenant: row.tenant, key: row.key)
            if row.leaseToken == nil, row.leaseFence == params.lease.fence { return (false, name) }
            guard let token = row.leaseToken, row.leaseFence == params.lease.fence,
                constantTimeEquals(token, params.lease.token)
            else {
                try self.checkLease(row, params.lease, now: now)
                return (false, name)
            }
            try db.statement("UPDATE session SET leaseToken = NULL, leaseHolder = NULL, leaseExpiresAt = NULL, turnMode = NULL WHERE pk = ?")
                .run(row.pk)
            try self.audit(db, row, caller: caller, action: "lease.release", detail: ["fence": .number(Double(row.leaseFence))], at: now)
            return (true, name)
        }
        if released { leaseWaiters.notify(waitName) }
        return SessionRelease.Result(released: released)
    }

    /// Inserts messages numbered after `last`; the caller updates `session.messageCount`.
    func insertMessages(_ db: Database, sessionPk: Int64, after last: Int, _ messages: [NewMessage], now: Int64) throws {
        let insert = try db.statement("""
                INSERT INTO message(sessionPk, seq, role, content, inputTokens, outputTokens, at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """)
        for (offset, message) in messages.enumerated() {
            try insert.run(
                sessionPk, last + offset + 1, message.role.rawValue, message.content, message.inputTokens,
                message.outputTokens, now)
        }
    }
}

extension FreshReason {
    /// The chain reason of the first id a fresh start of this kind produces.
    var chainReason: ChainReason {
        switch self {
        case .new, .stale: .created
        case .expired: .freshAfterExpiry
        case .nonResumable, .resumeFailed: .freshAfterFailure
        }
    }
}
