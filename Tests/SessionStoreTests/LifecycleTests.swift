import Foundation
import GRDB
import SessionProtocol
import SessionStore
import Testing

@Suite struct LifecycleTests {
    @Test func firstAcquireCreatesAndStartsFreshThenResumes() async throws {
        let store = try makeStore()
        let first = try await store.acquire(.init(key: "plan:42", cwd: "/work"), caller: alice)
        #expect(first.created)
        #expect(first.decision == .fresh(.new))
        #expect(first.lease.fence == 1)
        #expect(first.session.cwd == "/work")
        #expect(first.session.lease?.holder == "alice")

        let done = try await store.complete(
            .init(
                sessionId: first.session.id, lease: first.lease.proof, outcome: .ok, cliSessionId: "cli-1",
                costUsd: 0.25, inputTokens: 10, outputTokens: 20,
                messages: [.init(role: .user, content: "hi"), .init(role: .assistant, content: "hello")]),
            caller: alice)
        #expect(done.chainExtended)
        #expect(done.session.cliSessionId == "cli-1")
        #expect(done.session.turnCount == 1)
        #expect(done.session.messageCount == 2)
        #expect(done.session.costUsd == 0.25)
        #expect(done.session.lease == nil)

        let second = try await store.acquire(.init(key: "plan:42"), caller: alice)
        #expect(!second.created)
        #expect(second.session.id == first.session.id)
        #expect(second.decision == .resume("cli-1"))
        #expect(second.lease.fence == 2)

        let resumed = try await store.complete(
            .init(sessionId: second.session.id, lease: second.lease.proof, outcome: .ok, cliSessionId: "cli-1"),
            caller: alice)
        #expect(!resumed.chainExtended)
        #expect(resumed.session.resumeAttempts == 1)
        #expect(resumed.session.resumeSuccesses == 1)
        let chain = try await store.history(.init(sessionId: first.session.id), caller: alice)
        #expect(chain.map(\.cliSessionId) == ["cli-1"])
        #expect(chain.map(\.reason) == [.created])
    }

    @Test func aNewIdReportedOnResumeExtendsTheChain() async throws {
        let store = try makeStore()
        try await store.turn("k", reporting: "a")
        let (_, completed) = try await store.turn("k", reporting: "b")
        #expect(completed.chainExtended)
        let (acquired, _) = try await store.turn("k", reporting: "b")
        #expect(acquired.decision == .resume("b"))
        let chain = try await store.history(.init(sessionId: acquired.session.id), caller: alice)
        #expect(chain.map(\.cliSessionId) == ["a", "b"])
        #expect(chain.map(\.reason) == [.created, .changedByCLI])
        #expect(chain.map(\.seq) == [1, 2])
    }

    @Test func okWithoutCliSessionIdIsInvalid() async throws {
        let store = try makeStore()
        let acquired = try await store.acquire(.init(key: "k"), caller: alice)
        let error = await expectError(.invalidParams) {
            _ = try await store.complete(
                .init(sessionId: acquired.session.id, lease: acquired.lease.proof, outcome: .ok), caller: alice)
        }
        #expect(error != nil)
    }

    @Test func resumeFailuresCountAndMakeTheSessionNonResumableUntilAFreshStartSucceeds() async throws {
        let store = try makeStore()
        try await store.turn("k", reporting: "a")
        for attempt in 1...3 {
            let acquired = try await store.acquire(.init(key: "k"), caller: alice)
            if attempt < 4 { #expect(acquired.decision == .resume("a")) }
            let failed = try await store.complete(
                .init(
                    sessionId: acquired.session.id, lease: acquired.lease.proof, outcome: .resumeFailed,
                    reason: "no_conversation_found"), caller: alice)
            #expect(failed.session.consecutiveFailures == attempt)
            #expect(failed.session.status == (attempt == 3 ? .nonResumable : .active))
        }
        let next = try await store.acquire(.init(key: "k"), caller: alice)
        #expect(next.decision == .fresh(.nonResumable))
        #expect(next.session.status == .nonResumable)
        let recovered = try await store.complete(
            .init(sessionId: next.session.id, lease: next.lease.proof, outcome: .ok, cliSessionId: "b"), caller: alice)
        #expect(recovered.session.status == .active)
        #expect(recovered.session.consecutiveFailures == 0)
        #expect(recovered.session.totalFailures == 3)
        #expect(recovered.session.lastFailureReason == "no_conversation_found")
        let chain = try await store.history(.init(sessionId: next.session.id), caller: alice)
        #expect(chain.map(\.reason) == [.created, .freshAfterFailure])
        let after = try await store.acquire(.init(key: "k"), caller: alice)
        #expect(after.decision == .resume("b"))

        let audit = try await store.listAudit(.init(sessionId: next.session.id, action: "resume_failed"), caller: alice)
        #expect(audit.entries.count == 3)
        #expect(audit.entries.first?.detail["reason"] == "no_conversation_found")
    }

    @Test func keepLeaseAfterResumeFailureLetsTheCallerStartFreshAtOnce() async throws {
        let store = try makeStore()
        try await store.turn("k", reporting: "a")
        let acquired = try await store.acquire(.init(key: "k"), caller: alice)
        let failed = try await store.complete(
            .init(
                sessionId: acquired.session.id, lease: acquired.lease.proof, outcome: .resumeFailed,
                reason: "gone", keepLease: true), caller: alice)
        #expect(failed.decision == .fresh(.resumeFailed))
        let kept = try #require(failed.lease)
        #expect(kept.fence == acquired.lease.fence)
        let done = try await store.complete(
            .init(sessionId: acquired.session.id, lease: kept.proof, outcome: .ok, cliSessionId: "b"), caller: alice)
        #expect(done.session.cliSessionId == "b")
        let chain = try await store.history(.init(sessionId: acquired.session.id), caller: alice)
        #expect(chain.map(\.reason) == [.created, .freshAfterFailure])
        let fresh = try await store.listAudit(.init(sessionId: acquired.session.id, action: "resume_failed"), caller: alice)
        #expect(fresh.entries.count == 1)
    }

    @Test func idleSessionsExpireAndTheNextTurnStartsFreshOnTheSameKey() async throws {
        let clock = ManualClock()
        let store = try makeStore(clock: clock)
        let (first, _) = try await store.turn("k", reporting: "a")
        clock.advance(.seconds(24 * 3600 + 1))
        let report = try await store.sweep()
        #expect(report.expired == 1)
        #expect(try await store.get(.init(key: "k"), caller: alice).status == .expired)

        let next = try await store.acquire(.init(key: "k"), caller: alice)
        #expect(next.session.id == first.session.id)
        #expect(next.decision == .fresh(.expired))
        #expect(next.session.cliSessionId == nil)
        _ = try await store.complete(
            .init(sessionId: next.session.id, lease: next.lease.proof, outcome: .ok, cliSessionId: "b"), caller: alice)
        let chain = try await store.history(.init(sessionId: next.session.id), caller: alice)
        #expect(chain.map(\.reason) == [.created, .freshAfterExpiry])
        let audit = try await store.listAudit(.init(sessionId: next.session.id, action: "fresh_start"), caller: alice)
        #expect(audit.entries.first?.detail["cause"] == "expired")
    }

    @Test func expiryIsAppliedOnAcquireEvenBeforeTheSweeperRuns() async throws {
        let clock = ManualClock()
        let store = try makeStore(clock: clock)
        try await store.turn("k", reporting: "a")
        clock.advance(.seconds(24 * 3600 + 1))
        let next = try await store.acquire(.init(key: "k"), caller: alice)
        #expect(next.decision == .fresh(.expired))
        let audit = try await store.listAudit(.init(action: "session.expire"), caller: alice)
        #expect(audit.entries.count == 1)
    }

    @Test func touchExtendsTheTTL() async throws {
        let clock = ManualClock()
        let store = try makeStore(clock: clock)
        let (acquired, _) = try await store.turn("k", reporting: "a")
        clock.advance(.seconds(20 * 3600))
        _ = try await store.touch(.init(sessionId: acquired.session.id), caller: alice)
        clock.advance(.seconds(20 * 3600))
        #expect(try await store.sweep().expired == 0)
        #expect(try await store.acquire(.init(key: "k"), caller: alice).decision == .resume("a"))
    }

    @Test func closedSessionsStartANewConversation() async throws {
        let store = try makeStore()
        let (acquired, _) = try await store.turn("k", reporting: "a")
        let closed = try await store.update(.init(sessionId: acquired.session.id, status: .closed), caller: alice)
        #expect(closed.status == .closed)
        let next = try await store.acquire(.init(key: "k"), caller: alice)
        #expect(next.decision == .fresh(.stale))
        #expect(next.session.status == .active)
    }

    @Test func expiredAndClosedSessionsArePurgedAfterRetentionButAuditRowsStay() async throws {
        let clock = ManualClock()
        let store = try makeStore(clock: clock) { $0.retention = .seconds(3600) }
        let (acquired, _) = try await store.turn("k", reporting: "a", messages: [.init(role: .user, content: "x")])
        try await store.turn("k", reporting: "b")
        clock.advance(.seconds(24 * 3600 + 1))
        try await store.turn("kept", reporting: "x")
        #expect(try await store.sweep().expired == 1)
        clock.advance(.seconds(3601))
        #expect(try await store.sweep().purged == 1)
        #expect(try await store.storedChainLinks() == ["x"])
        #expect(await expectError(.notFound) { _ = try await store.get(.init(key: "k"), caller: alice) } != nil)
        let audit = try await store.listAudit(.init(sessionId: acquired.session.id), caller: alice)
        #expect(audit.entries.contains { $0.action == "session.purge" })
        #expect(audit.entries.contains { $0.action == "session.create" })
    }

    @Test func aLoweredCapIsAppliedInSmallDeleteBatchesUntilTheTenantFits() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("cap.sqlite").path
        let clock = ManualClock()
        do {
            let store = try SessionDatabase.open(path: path, clock: clock.storeClock)
            for index in 0..<12 {
                try await store.turn("k\(index)", reporting: "cli-\(index)", messages: [.init(role: .user, content: "m")])
                clock.advance(.seconds(10))
            }
        }
        // Reopened with a cap of 5: 7 sessions over, deleted 2 per transaction (a tenth of the batch size).
        let store = try SessionDatabase.open(path: path, configuration: {
            var configuration = StoreConfiguration()
            configuration.maxSessionsPerTenant = 5
            configuration.sweepBatchSize = 20
            return configuration
        }(), clock: clock.storeClock)
        let first = try await store.sweep(maxBatches: 2)
        #expect(first.evicted == 4)
        #expect(first.moreRemains)
        var reports = [first]
        while reports.last!.moreRemains, reports.count < 10 { reports.append(try await store.sweep(maxBatches: 2)) }
        #expect(reports.map(\.evicted) == [4, 3])
        #expect(!reports.last!.moreRemains)
        let keys = try await store.list(.init(), caller: alice).sessions.map(\.key).sorted()
        #expect(keys == ["k10", "k11", "k7", "k8", "k9"])
        #expect(try await store.stats(caller: alice).sessions == 5)
        #expect(try await store.storedChainLinks() == (7..<12).map { "cli-\($0)" })
    }

    @Test func theTenantCapEvictsTheLeastRecentlyUsedIdleSession() async throws {
        let clock = ManualClock()
        let store = try makeStore(clock: clock) { $0.maxSessionsPerTenant = 3 }
        for round in 1...2 {
            for key in ["a", "b", "c"] {
                try await store.turn(key, reporting: "\(key)\(round)")
                clock.advance(.seconds(10))
            }
        }
        _ = try await store.touch(.init(key: "a"), caller: alice)  // "b" is now the least recently used
        try await store.turn("d", reporting: "d1")
        let keys = try await store.list(.init(), caller: alice).sessions.map(\.key).sorted()
        #expect(keys == ["a", "c", "d"])
        #expect(try await store.storedChainLinks() == ["a1", "c1", "a2", "c2", "d1"])
        let evictions = try await store.listAudit(.init(action: "session.evict"), caller: alice)
        #expect(evictions.entries.map(\.key) == ["b"])
    }

    /// The live sessions' expiry index holds `expiryBound`, which trails `expiresAt` by at most 15 minutes
    /// and never passes it (schema 0005): turns within 15 minutes leave the index alone, and a session still
    /// expires exactly at its `expiresAt`.
    @Test func theExpiryIndexTrailsTheExpiryByAtMostFifteenMinutes() async throws {
        let clock = ManualClock()
        let store = try makeStore(clock: clock)
        let (acquired, _) = try await store.turn("k", reporting: "a")
        let id = acquired.session.id
        func expiry() async throws -> (bound: Int64, expiresAt: Int64) {
            let bound: Int64? = try await store.readValue(sql: "SELECT expiryBound FROM session WHERE id = '\(id)'")
            let expiresAt: Int64? = try await store.readValue(sql: "SELECT expiresAt FROM session WHERE id = '\(id)'")
            return (try #require(bound), try #require(expiresAt))
        }
        let first = try await expiry()
        #expect(first.bound == first.expiresAt)

        clock.advance(.seconds(14 * 60))
        try await store.turn("k", reporting: "b")
        let trailing = try await expiry()
        #expect(trailing.expiresAt == first.expiresAt + 14 * 60_000 && trailing.bound == first.bound)

        clock.advance(.seconds(2 * 60))
        _ = try await store.touch(.init(key: "k"), caller: alice)
        let moved = try await expiry()
        #expect(moved.expiresAt == first.expiresAt + 16 * 60_000 && moved.bound == moved.expiresAt)

        clock.advance(.seconds(10 * 60))
        try await store.turn("k", reporting: "c")
        #expect(try await expiry().bound == moved.bound)
        // A shorter TTL brings the expiry below the bound, which follows it down.
        _ = try await store.update(.init(sessionId: id, ttlSeconds: 3600), caller: alice)
        let shorter = try await expiry()
        #expect(shorter.expiresAt < moved.bound && shorter.bound == shorter.expiresAt)

        // Idle past the bound but not past the expiry: not expired, and the bound catches up.
        clock.advance(.seconds(5 * 60))
        try await store.turn("k", reporting: "d")
        let last = try await expiry()
        #expect(last.bound == shorter.bound && last.expiresAt == shorter.expiresAt + 5 * 60_000)
        clock.advance(.seconds(57 * 60))
        #expect(try await store.sweep().expired == 0)
        #expect(try await expiry().bound == last.expiresAt)
        #expect(try await store.get(.init(key: "k"), caller: alice).status == .active)
        clock.advance(.seconds(3 * 60))
        #expect(try await store.sweep().expired == 1)
        #expect(try await store.get(.init(key: "k"), caller: alice).status == .expired)
    }

    @Test func theCapNeverEvictsALeasedSession() async throws {
        let store = try makeStore { $0.maxSessionsPerTenant = 1 }
        _ = try await store.acquire(.init(key: "held"), caller: alice)
        let error = await expectError(.tooLarge) { _ = try await store.acquire(.init(key: "other"), caller: alice) }
        #expect(error != nil)
    }

    @Test func forkStartsAChildThatResumesTheParentHeadWithForkSession() async throws {
        let store = try makeStore()
        let (parent, _) = try await store.turn("parent", reporting: "p1")
        let lease = try await store.acquire(.init(key: "parent"), caller: alice)
        _ = try await store.appendTranscript(
            .init(sessionId: parent.session.id, lease: lease.lease.proof, cliSessionId: "p1", offset: 0, data: Data("line\n".utf8)),
            caller: alice)
        _ = try await store.release(.init(sessionId: parent.session.id, lease: lease.lease.proof), caller: alice)

        let child = try await store.fork(.init(sessionId: parent.session.id, key: "child"), caller: alice)
        #expect(child.parentId == parent.session.id)
        let acquired = try await store.acquire(.init(key: "child"), caller: alice)
        #expect(acquired.decision == .resume("p1", fork: true))
        #expect(acquired.transcript == TranscriptState(cliSessionId: "p1", size: 5))
        _ = try await store.complete(
            .init(sessionId: child.id, lease: acquired.lease.proof, outcome: .ok, cliSessionId: "c1"), caller: alice)
        let chain = try await store.history(.init(sessionId: child.id), caller: alice)
        #expect(chain.map(\.reason) == [.forked])
        #expect(try await store.acquire(.init(key: "child"), caller: alice).decision == .resume("c1"))
        let conflict = await expectError(.conflict) {
            _ = try await store.fork(.init(sessionId: parent.session.id, key: "child"), caller: alice)
        }
        #expect(conflict != nil)
    }

    @Test func cumulativeCliCostsAreAddedAsDifferences() async throws {
        let store = try makeStore()
        for (total, expected) in [(0.10, 0.10), (0.25, 0.25), (0.40, 0.40)] {
            let acquired = try await store.acquire(.init(key: "k"), caller: alice)
            let done = try await store.complete(
                .init(
                    sessionId: acquired.session.id, lease: acquired.lease.proof, outcome: .ok, cliSessionId: "a",
                    cliTotalCostUsd: total), caller: alice)
            #expect(abs(done.session.costUsd - expected) < 1e-9)
        }
    }

    @Test func deleteRemovesEverythingAndRefusesWhileLeased() async throws {
        let store = try makeStore()
        // The two sessions' chain links interleave, and only the deleted session's go.
        try await store.turn("k", reporting: "a")
        try await store.turn("other", reporting: "x")
        try await store.turn("k", reporting: "b")
        try await store.turn("other", reporting: "y")
        let acquired = try await store.acquire(.init(key: "k"), caller: alice)
        let held = await expectError(.leaseHeld) { _ = try await store.delete(.init(sessionId: acquired.session.id), caller: bob) }
        #expect(held != nil)
        #expect(try await store.delete(.init(sessionId: acquired.session.id, force: true), caller: bob))
        #expect(await expectError(.notFound) { _ = try await store.get(.init(sessionId: acquired.session.id), caller: alice) } != nil)
        #expect(try await store.storedChainLinks() == ["x", "y"])
        let kept = try await store.get(.init(key: "other"), caller: alice)
        #expect(try await store.history(.init(sessionId: kept.id), caller: alice).map(\.cliSessionId) == ["x", "y"])
        let again = try await store.acquire(.init(key: "k"), caller: alice)
        #expect(again.created)
    }

    /// A chain's walk only ever moves to an older link, so a damaged link (here one naming a newer link, which
    /// would close a loop) ends it: `session.history` answers and `session.delete` deletes what it reached.
    @Test func aDamagedChainLinkEndsTheWalkInsteadOfLooping() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("chain.sqlite").path
        let store = try SessionDatabase.open(path: path)
        let (first, _) = try await store.turn("k", reporting: "a")
        try await store.turn("k", reporting: "b")
        try await DatabaseQueue(path: path).write { db in
            try db.execute(sql: "UPDATE chainLink SET prevId = (SELECT max(id) FROM chainLink) WHERE seq = 1")
        }
        let chain = try await store.history(.init(sessionId: first.session.id), caller: alice)
        #expect(chain.map(\.cliSessionId) == ["a", "b"])
        #expect(try await store.delete(.init(sessionId: first.session.id), caller: alice))
        #expect(try await store.storedChainLinks() == [])
    }

    @Test func auditDetailsKeepAnyTextExactly() async throws {
        let store = try makeStore()
        try await store.turn("k", reporting: "a")
        let acquired = try await store.acquire(.init(key: "k"), caller: alice)
        let reason = "quote \" backslash \\ newline \n tab \t bell \u{7} é 😀 </script>"
        _ = try await store.complete(
            .init(sessionId: acquired.session.id, lease: acquired.lease.proof, outcome: .resumeFailed, reason: reason),
            caller: alice)
        let entry = try #require(try await store.listAudit(.init(action: "resume_failed"), caller: alice).entries.first)
        #expect(entry.detail["reason"] == .string(reason))
        #expect(entry.detail["consecutiveFailures"] == .number(1))
        #expect(entry.detail["nonResumable"] == .bool(false))
    }

    @Test func invalidInputIsRefusedWithTheFieldNamed() async throws {
        let store = try makeStore()
        let control = await expectError(.invalidParams) { _ = try await store.acquire(.init(key: "a\u{0}b"), caller: alice) }
        #expect(control?.message.contains("key") == true)
        let empty = await expectError(.invalidParams) { _ = try await store.acquire(.init(key: ""), caller: alice) }
        #expect(empty != nil)
        let huge = await expectError(.tooLarge) {
            _ = try await store.acquire(.init(key: String(repeating: "k", count: 1_000_000)), caller: alice)
        }
        #expect(huge != nil)
        let ttl = await expectError(.invalidParams) { _ = try await store.acquire(.init(key: "k", ttlSeconds: -5), caller: alice) }
        #expect(ttl?.message.contains("ttlSeconds") == true)
        // SQL metacharacters are data, never SQL.
        let tricky = "k'; DROP TABLE session; --"
        let acquired = try await store.acquire(.init(key: tricky, cwd: "\"); DELETE FROM audit; --"), caller: alice)
        #expect(try await store.get(.init(key: tricky), caller: alice).id == acquired.session.id)
    }
}
