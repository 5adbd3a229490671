import Foundation
import SessionProtocol
import SessionStore
import Synchronization
import Testing

@Suite struct LeaseTests {
    @Test func manyTasksRacingOneNewKeyCreateOneSessionAndGetOneLease() async throws {
        let store = try makeStore()
        let outcomes = try await withThrowingTaskGroup(of: (String?, Bool).self) { group in
            for index in 0..<64 {
                group.addTask {
                    do {
                        let result = try await store.acquire(
                            .init(key: "race", holder: "worker-\(index)"), caller: alice)
                        return (result.session.id, result.created)
                    } catch let error as SessionError where error.code == .leaseHeld {
                        return (nil, false)
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let winners = outcomes.compactMap(\.0)
        #expect(winners.count == 1)
        #expect(outcomes.filter(\.1).count == 1)
        #expect(try await store.list(.init(), caller: alice).sessions.count == 1)
    }

    @Test func waitingAcquirersTakeTurnsAndNeverOverlap() async throws {
        let store = try makeStore()
        let holders = Locked(0)
        let maxHolders = Locked(0)
        let fences = Locked([Int64]())
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<12 {
                group.addTask {
                    let acquired = try await store.acquire(
                        .init(key: "shared", holder: "w\(index)", waitMs: 30_000), caller: alice)
                    let now = holders.withLock { $0 += 1; return $0 }
                    maxHolders.withLock { $0 = max($0, now) }
                    fences.withLock { $0.append(acquired.lease.fence) }
                    try await Task.sleep(for: .milliseconds(5))
                    holders.withLock { $0 -= 1 }
                    _ = try await store.complete(
                        .init(
                            sessionId: acquired.session.id, lease: acquired.lease.proof, outcome: .ok,
                            cliSessionId: "cli"), caller: alice)
                }
            }
            try await group.waitForAll()
        }
        #expect(maxHolders.withLock { $0 } == 1)
        #expect(fences.withLock { $0.sorted() } == Array(1...12).map(Int64.init))
        #expect(try await store.get(.init(key: "shared"), caller: alice).turnCount == 12)
    }

    @Test func aHeldLeaseAnswersLeaseHeldWithHolderAndExpiry() async throws {
        let store = try makeStore()
        _ = try await store.acquire(.init(key: "k", holder: "first"), caller: alice)
        let error = await expectError(.leaseHeld) { _ = try await store.acquire(.init(key: "k"), caller: bob) }
        #expect(error?.detail["holder"] == "first")
        #expect(error?.detail["expiresAt"]?.stringValue != nil)
        let conflicts = try await store.listAudit(.init(action: "lease.conflict"), caller: alice)
        #expect(conflicts.entries.count == 1)
    }

    @Test func staleTokensAndFencesAreRefused() async throws {
        let clock = ManualClock()
        let store = try makeStore(clock: clock)
        let first = try await store.acquire(.init(key: "k", leaseSeconds: 60), caller: alice)
        clock.advance(.seconds(61))
        // The expired lease is taken over, and the takeover is audited.
        let second = try await store.acquire(.init(key: "k"), caller: bob)
        #expect(second.lease.fence == first.lease.fence + 1)
        let takeovers = try await store.listAudit(.init(action: "lease.takeover"), caller: alice)
        #expect(takeovers.entries.first?.detail["previousHolder"] == "alice")

        for proof in [first.lease.proof, LeaseProof(token: second.lease.token, fence: first.lease.fence),
                      LeaseProof(token: first.lease.token, fence: second.lease.fence)] {
            let complete = await expectError(.staleLease) {
                _ = try await store.complete(
                    .init(sessionId: first.session.id, lease: proof, outcome: .ok, cliSessionId: "x"), caller: alice)
            }
            #expect(complete != nil)
            let append = await expectError(.staleLease) {
                _ = try await store.appendTranscript(
                    .init(sessionId: first.session.id, lease: proof, cliSessionId: "x", offset: 0, data: Data("a".utf8)),
                    caller: alice)
            }
            #expect(append != nil)
            let messages = await expectError(.staleLease) {
                _ = try await store.appendMessages(
                    .init(sessionId: first.session.id, lease: proof, messages: [.init(role: .user, content: "x")]),
                    caller: alice)
            }
            #expect(messages != nil)
        }
        // Nothing of the refused writes is stored.
        let session = try await store.get(.init(key: "k"), caller: alice)
        #expect(session.turnCount == 0)
        #expect(session.messageCount == 0)
        #expect(session.transcriptBytes == 0)
    }

    @Test func anExpiredLeaseCannotWriteEvenBeforeATakeover() async throws {
        let clock = ManualClock()
        let store = try makeStore(clock: clock)
        let acquired = try await store.acquire(.init(key: "k", leaseSeconds: 30), caller: alice)
        clock.advance(.seconds(31))
        let error = await expectError(.staleLease) {
            _ = try await store.complete(
                .init(sessionId: acquired.session.id, lease: acquired.lease.proof, outcome: .ok, cliSessionId: "a"),
                caller: alice)
        }
        #expect(error?.message.contains("expired") == true)
    }

    @Test func renewExtendsAndReleaseFreesTheLease() async throws {
        let clock = ManualClock()
        let store = try makeStore(clock: clock)
        let acquired = try await store.acquire(.init(key: "k", leaseSeconds: 30), caller: alice)
        clock.advance(.seconds(20))
        let renewed = try await store.renew(
            .init(sessionId: acquired.session.id, lease: acquired.lease.proof, leaseSeconds: 30), caller: alice)
        #expect(renewed.lease.expiresAt > acquired.lease.expiresAt)
        clock.advance(.seconds(20))
        #expect(await expectError(.leaseHeld) { _ = try await store.acquire(.init(key: "k"), caller: bob) } != nil)
        #expect(try await store.release(.init(sessionId: acquired.session.id, lease: acquired.lease.proof), caller: alice).released)
        // Releasing twice is harmless.
        #expect(try await store.release(.init(sessionId: acquired.session.id, lease: acquired.lease.proof), caller: alice).released == false)
        #expect(try await store.acquire(.init(key: "k"), caller: bob).lease.fence == 2)
    }

    @Test func theSweeperEndsExpiredLeasesAndAuditsIt() async throws {
        let clock = ManualClock()
        let store = try makeStore(clock: clock)
        _ = try await store.acquire(.init(key: "k", leaseSeconds: 30), caller: alice)
        clock.advance(.seconds(31))
        #expect(try await store.sweep().leasesExpired == 1)
        #expect(try await store.get(.init(key: "k"), caller: alice).lease == nil)
        let audit = try await store.listAudit(.init(action: "lease.expire"), caller: alice)
        #expect(audit.entries.count == 1)
    }

    @Test func aWaiterIsWokenByRelease() async throws {
        let store = try makeStore()
        let held = try await store.acquire(.init(key: "k"), caller: alice)
        let waiter = Task { try await store.acquire(.init(key: "k", waitMs: 20_000), caller: bob) }
        try await Task.sleep(for: .milliseconds(50))
        _ = try await store.release(.init(sessionId: held.session.id, lease: held.lease.proof), caller: alice)
        let start = ContinuousClock.now
        let granted = try await waiter.value
        #expect(granted.lease.holder == "bob")
        #expect(ContinuousClock.now - start < .seconds(15))
    }
}

@Suite struct TenantIsolationTests {
    @Test func anotherTenantsSessionAnswersNotFoundAndTheAttemptIsAudited() async throws {
        let store = try makeStore()
        let (mine, _) = try await store.turn("secret", reporting: "cli")
        let held = try await store.acquire(.init(key: "secret"), caller: alice)
        let id = mine.session.id
        let probes: [(String, () async throws -> Void)] = [
            ("get", { _ = try await store.get(.init(sessionId: id), caller: otherTenant) }),
            ("complete", { _ = try await store.complete(.init(sessionId: id, lease: held.lease.proof, outcome: .error), caller: otherTenant) }),
            ("renew", { _ = try await store.renew(.init(sessionId: id, lease: held.lease.proof), caller: otherTenant) }),
            ("release", { _ = try await store.release(.init(sessionId: id, lease: held.lease.proof), caller: otherTenant) }),
            ("touch", { _ = try await store.touch(.init(sessionId: id), caller: otherTenant) }),
            ("update", { _ = try await store.update(.init(sessionId: id, labels: ["x"]), caller: otherTenant) }),
            ("delete", { _ = try await store.delete(.init(sessionId: id, force: true), caller: otherTenant) }),
            ("fork", { _ = try await store.fork(.init(sessionId: id, key: "stolen"), caller: otherTenant) }),
            ("history", { _ = try await store.history(.init(sessionId: id), caller: otherTenant) }),
            ("messages.append", { _ = try await store.appendMessages(.init(sessionId: id, messages: [.init(role: .user, content: "x")]), caller: otherTenant) }),
            ("messages.list", { _ = try await store.listMessages(.init(sessionId: id), caller: otherTenant) }),
            ("transcript.append", { _ = try await store.appendTranscript(.init(sessionId: id, lease: held.lease.proof, cliSessionId: "cli", offset: 0, data: Data("x".utf8)), caller: otherTenant) }),
            ("transcript.read", { _ = try await store.readTranscript(.init(sessionId: id), caller: otherTenant) }),
        ]
        let missing = try await expectErrorMessage { _ = try await store.get(.init(sessionId: UUID().uuidString.lowercased()), caller: otherTenant) }
        for (name, probe) in probes {
            let message = try await expectErrorMessage(probe)
            #expect(message == missing, "\(name) must answer exactly like a missing id")
        }
        // The other tenant sees nothing of the session anywhere.
        #expect(try await store.list(.init(), caller: otherTenant).sessions.isEmpty)
        #expect(try await store.stats(caller: otherTenant).sessions == 0)
        #expect(try await store.listAudit(.init(), caller: otherTenant).entries.isEmpty)
        let sameKey = try await store.acquire(.init(key: "secret"), caller: otherTenant)
        #expect(sameKey.created)
        #expect(sameKey.session.id != id)
        // The owner still has everything, and its audit log records every probe.
        let session = try await store.get(.init(sessionId: id), caller: alice)
        #expect(session.labels.isEmpty)
        #expect(session.messageCount == 0)
        try await Task.sleep(for: .milliseconds(200))  // denials are audited off the response path
        let denied = try await store.listAudit(.init(action: "access.denied", limit: 100), caller: alice)
        #expect(denied.entries.count == probes.count)
        #expect(denied.entries.allSatisfy { $0.detail["callerTenant"] == "acme" })
    }

    private func expectErrorMessage(_ body: () async throws -> Void) async throws -> String {
        do {
            try await body()
            Issue.record("expected not_found")
            return ""
        } catch let error as SessionError {
            #expect(error.code == .notFound)
            return "\(error.code): \(error.message)"
        }
    }
}
