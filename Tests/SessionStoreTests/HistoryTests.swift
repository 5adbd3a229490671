import Foundation
import SessionProtocol
import SessionStore
import Testing

@Suite struct HistoryTests {
    @Test func messagesPageForwardAndTail() async throws {
        let store = try makeStore()
        let acquired = try await store.acquire(.init(key: "k"), caller: alice)
        let appended = try await store.appendMessages(
            .init(sessionId: acquired.session.id, messages: (1...25).map { .init(role: .user, content: "m\($0)") }),
            caller: alice)
        #expect(appended.firstSeq == 1)
        #expect(appended.lastSeq == 25)
        var seen: [String] = []
        var after = 0
        while true {
            let page = try await store.listMessages(.init(sessionId: acquired.session.id, afterSeq: after, limit: 10), caller: alice)
            seen += page.messages.map(\.content)
            guard let next = page.nextAfterSeq else { break }
            after = next
        }
        #expect(seen == (1...25).map { "m\($0)" })
        let tail = try await store.listMessages(.init(sessionId: acquired.session.id, tail: 3), caller: alice)
        #expect(tail.messages.map(\.seq) == [23, 24, 25])
    }

    @Test func transcriptAppendsStoreOnlyNewBytesAndReadBackInChunks() async throws {
        let store = try makeStore()
        let acquired = try await store.acquire(.init(key: "k"), caller: alice)
        let id = acquired.session.id
        let lease = acquired.lease.proof
        let body = Data((0..<10_000).map { UInt8($0 % 251) })
        let first = try await store.appendTranscript(
            .init(sessionId: id, lease: lease, cliSessionId: "c", offset: 0, data: body.prefix(4000)), caller: alice)
        #expect(first == .init(size: 4000, appended: 4000))
        // A retry that overlaps stored bytes adds only the new tail.
        let second = try await store.appendTranscript(
            .init(sessionId: id, lease: lease, cliSessionId: "c", offset: 3000, data: body.subdata(in: 3000..<10_000)),
            caller: alice)
        #expect(second == .init(size: 10_000, appended: 6000))
        let repeated = try await store.appendTranscript(
            .init(sessionId: id, lease: lease, cliSessionId: "c", offset: 0, data: body), caller: alice)
        #expect(repeated.appended == 0)
        let gap = await expectError(.conflict) {
            _ = try await store.appendTranscript(
                .init(sessionId: id, lease: lease, cliSessionId: "c", offset: 10_001, data: Data("x".utf8)), caller: alice)
        }
        #expect(gap?.detail["size"] == .number(10_000))

        var read = Data()
        while true {
            let chunk = try await store.readTranscript(
                .init(sessionId: id, cliSessionId: "c", offset: read.count, limit: 3333), caller: alice)
            read.append(chunk.data)
            if chunk.eof { break }
        }
        #expect(read == body)
        #expect(try await store.get(.init(sessionId: id), caller: alice).transcriptBytes == 10_000)
    }

    @Test func transcriptsAreCappedPerSessionWithAClearError() async throws {
        let store = try makeStore { $0.maxTranscriptBytesPerSession = 1000 }
        let acquired = try await store.acquire(.init(key: "k"), caller: alice)
        _ = try await store.appendTranscript(
            .init(sessionId: acquired.session.id, lease: acquired.lease.proof, cliSessionId: "a", offset: 0, data: Data(count: 800)),
            caller: alice)
        let error = await expectError(.tooLarge) {
            _ = try await store.appendTranscript(
                .init(sessionId: acquired.session.id, lease: acquired.lease.proof, cliSessionId: "b", offset: 0, data: Data(count: 201)),
                caller: alice)
        }
        #expect(error?.message.contains("cap is 1000") == true)
        #expect(try await store.get(.init(key: "k"), caller: alice).transcriptBytes == 800)
    }

    @Test func listFiltersAndPaginates() async throws {
        let store = try makeStore()
        for index in 0..<30 {
            let acquired = try await store.acquire(
                .init(key: index % 2 == 0 ? "even:\(index)" : "odd:\(index)", labels: index % 3 == 0 ? ["three"] : nil),
                caller: alice)
            _ = try await store.release(.init(sessionId: acquired.session.id, lease: acquired.lease.proof), caller: alice)
        }
        var keys: [String] = []
        var cursor: String?
        repeat {
            let page = try await store.list(.init(keyPrefix: "even:", limit: 4, cursor: cursor), caller: alice)
            keys += page.sessions.map(\.key)
            cursor = page.nextCursor
        } while cursor != nil
        #expect(keys.count == 15)
        #expect(Set(keys).count == 15)
        #expect(keys.allSatisfy { $0.hasPrefix("even:") })
        let labelled = try await store.list(.init(label: "three", limit: 100), caller: alice)
        #expect(labelled.sessions.count == 10)
        let relabelled = try await store.update(.init(sessionId: labelled.sessions[0].id, labels: ["four"]), caller: alice)
        #expect(relabelled.labels == ["four"])
        #expect(try await store.list(.init(label: "three", limit: 100), caller: alice).sessions.count == 9)
        #expect(await expectError(.invalidParams) { _ = try await store.list(.init(cursor: "garbage"), caller: alice) } != nil)
    }

    @Test func auditPagesNewestFirst() async throws {
        let store = try makeStore()
        for index in 0..<10 { try await store.turn("k\(index)", reporting: "c\(index)") }
        var all: [AuditEntry] = []
        var cursor: String?
        repeat {
            let page = try await store.listAudit(.init(limit: 7, cursor: cursor), caller: alice)
            all += page.entries
            cursor = page.nextCursor
        } while cursor != nil
        #expect(all.map(\.id) == all.map(\.id).sorted(by: >))
        #expect(all.filter { $0.action == "session.create" }.count == 10)
    }
    /// Every row of the tenant's log, newest first, through pages of `limit`.
    private func auditPages(_ store: SessionDatabase, _ params: AuditList.Params) async throws -> [AuditEntry] {
        var params = params
        var all: [AuditEntry] = []
        repeat {
            let page = try await store.listAudit(params, caller: alice)
            all += page.entries
            params.cursor = page.nextCursor
        } while params.cursor != nil
        return all
    }

    /// A session's log is read along the links between its rows (schema 0004). Whatever happened to the
    /// session (live, deleted, evicted, purged, its oldest rows dropped by retention), through every filter
    /// and page size, it must be exactly that session's rows of the tenant's whole log.
    @Test func aSessionsAuditIsExactlyItsRowsOfTheTenantsLog() async throws {
        let clock = ManualClock()
        let store = try makeStore(clock: clock) {
            $0.maxSessionsPerTenant = 5
            $0.auditRetention = .seconds(40 * 24 * 3600)
        }
        var ids: [String] = []
        for round in 0..<4 {
            for index in 0..<5 where round == 0 || index != 1 {
                let (acquired, _) = try await store.turn("k\(index)", reporting: "c\(index)-\(round)")
                if round == 0 { ids.append(acquired.session.id) }
                clock.advance(.seconds(3600))
            }
            if round == 0 {
                _ = try await store.delete(.init(sessionId: ids[1]), caller: alice)
            }
        }
        // Over the cap of five, the next session evicts the idle one closest to expiry (k0).
        _ = try await store.turn("k5", reporting: "c5")
        _ = try await store.turn("k6", reporting: "c6")
        ids += try await [store.get(.init(key: "k5"), caller: alice).id]
        #expect(await expectError(.notFound) { _ = try await store.get(.init(key: "k0"), caller: alice) } != nil)

        func check(_ label: String) async throws {
            let everything = try await auditPages(store, .init(limit: 1000))
            for id in ids + ["no-such-session"] {
                let expected = everything.filter { $0.sessionId == id }
                for limit in [1, 3, 1000] {
                    let walked = try await auditPages(store, .init(sessionId: id, limit: limit))
                    #expect(walked.map(\.id) == expected.map(\.id), "\(label): \(id), pages of \(limit)")
                }
                let grants = try await auditPages(store, .init(sessionId: id, action: "lease.grant", limit: 2))
                #expect(grants.map(\.id) == expected.filter { $0.action == "lease.grant" }.map(\.id), "\(label): \(id)")
                let since = clock.now.addingTimeInterval(-9 * 3600)
                let until = clock.now.addingTimeInterval(-3 * 3600)
                let window = try await auditPages(store, .init(sessionId: id, since: since, until: until, limit: 2))
                #expect(window.map(\.id) == expected.filter { $0.at >= since && $0.at < until }.map(\.id), "\(label): \(id)")
            }
        }
        try await check("live, deleted and evicted")
        #expect(try await auditPages(store, .init(sessionId: ids[1], limit: 5)).first?.action == "session.delete")
        #expect(try await auditPages(store, .init(sessionId: ids[0], limit: 5)).first?.action == "session.evict")

        // Idle past their TTL the sessions expire, then are purged; retention then drops the oldest rows.
        clock.advance(.seconds(24 * 3600 + 1))
        _ = try await store.turn("k2", reporting: "late")
        #expect(try await store.sweep().expired > 0)
        clock.advance(.seconds(31 * 24 * 3600))
        _ = try await store.turn("k3", reporting: "later")
        #expect(try await store.sweep().purged > 0)
        try await check("purged")
        clock.advance(.seconds(9 * 24 * 3600))
        #expect(try await store.sweep().auditPurged > 0)
        try await check("after retention")
        #expect(try await auditPages(store, .init(sessionId: ids[2], limit: 1000)).count > 0)
    }
}
