import Foundation
import SessionClient
import SessionProtocol
import SessionServer
import SessionStore
import SessionTesting
import Synchronization
import Testing

@Suite struct ServerTests {
    @Test func everyMethodWorksThroughTheClient() async throws {
        try await withTestServer { server in
            try await SessiondClient.withConnection(server.client().configuration) { client in
                #expect(try await client.health().status == "ok")
                #expect(client.server?.tenant == "local")
                let acquired = try await client.acquire(.init(key: "all:methods", cwd: "/w", labels: ["l1"]))
                let id = acquired.session.id
                let proof = acquired.lease.proof
                #expect(try await client.renew(.init(sessionId: id, lease: proof, leaseSeconds: 120)).fence == 1)
                let appended = try await client.appendMessages(.init(sessionId: id, lease: proof, messages: [.init(role: .user, content: "q")]))
                #expect(appended.firstSeq == 1)
                let size = try await client.uploadTranscript(sessionId: id, lease: proof, cliSessionId: "c1", data: Data("abc\n".utf8), from: 0)
                #expect(size == 4)
                let completed = try await client.complete(.init(sessionId: id, lease: proof, outcome: .ok, cliSessionId: "c1", cliTotalCostUsd: 0.3))
                #expect(completed.session.costUsd == 0.3)
                #expect(try await client.downloadTranscript(sessionId: id, cliSessionId: "c1") == Data("abc\n".utf8))
                #expect(try await client.messages(.init(sessionId: id)).messages.map(\.content) == ["q"])
                #expect(try await client.history(sessionId: id).map(\.cliSessionId) == ["c1"])
                #expect(try await client.touch(.init(sessionId: id, ttlSeconds: 60)).ttlSeconds == 60)
                #expect(try await client.session(key: "all:methods").id == id)
                #expect(try await client.list(.init(label: "l1")).sessions.map(\.id) == [id])
                #expect(try await client.update(.init(sessionId: id, metadata: ["team": "core"])).metadata["team"] == "core")
                let child = try await client.fork(sessionId: id, key: "all:methods:fork")
                #expect(child.parentId == id)
                let reacquired = try await client.acquire(.init(key: "all:methods"))
                #expect(try await client.release(sessionId: id, lease: reacquired.lease.proof))
                #expect(try await client.stats().sessions == 2)
                #expect(try await client.audit(.init(sessionId: id)).entries.count > 5)
                #expect(try await client.delete(sessionId: child.id))
                let token = try await client.createToken(tenant: "local", admin: true, label: "ci")
                #expect(token.token.hasPrefix("sdt_"))
                // The first token turns auth on; an admin token manages the rest.
                try await SessiondClient.withConnection(server.client("admin", token: token.token).configuration) { admin in
                    #expect(try await admin.tokens().map(\.id) == [token.info.id])
                    #expect(try await admin.session(id: id).id == id)
                    let second = try await admin.createToken(tenant: "t2")
                    #expect(try await admin.revokeToken(id: second.info.id))
                    #expect(try await admin.revokeToken(id: second.info.id) == false)
                }
            }
        }
    }

    @Test func pipelinedCallsOnOneConnectionAllGetTheirOwnAnswers() async throws {
        try await withTestServer { server in
            let client = server.client()
            defer { Task { await client.close() } }
            let keys = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for index in 0..<300 {
                    group.addTask {
                        let acquired = try await client.acquire(.init(key: "pipe:\(index)"))
                        return (index, acquired.session.key)
                    }
                }
                return try await group.reduce(into: [Int: String]()) { $0[$1.0] = $1.1 }
            }
            #expect(keys.count == 300)
            #expect(keys.allSatisfy { $0.value == "pipe:\($0.key)" })
            #expect(try await client.stats().sessions == 300)
        }
    }

    @Test func concurrentClientsRacingOneKeyCreateOneSessionAndOneHolder() async throws {
        try await withTestServer { server in
            let results = try await withThrowingTaskGroup(of: SessionError.Code?.self) { group in
                for index in 0..<20 {
                    group.addTask {
                        try await SessiondClient.withConnection(server.client("racer-\(index)").configuration) { client in
                            do {
                                _ = try await client.acquire(.init(key: "race:key"))
                                return nil
                            } catch let error as SessionError {
                                return error.code
                            }
                        }
                    }
                }
                return try await group.reduce(into: [SessionError.Code?]()) { $0.append($1) }
            }
            #expect(results.filter { $0 == nil }.count == 1)
            #expect(results.filter { $0 == .leaseHeld }.count == 19)
            let sessions = try await server.store.list(.init(), caller: Caller(tenant: "local", actor: "t"))
            #expect(sessions.sessions.count == 1)
        }
    }

    @Test func waitingForALeaseAcrossClientsHandsItOver() async throws {
        try await withTestServer { server in
            let holder = server.client("holder")
            let waiter = server.client("waiter")
            let held = try await holder.acquire(.init(key: "handover"))
            let waiting = Task { try await waiter.acquire(.init(key: "handover", waitMs: 15_000)) }
            try await Task.sleep(for: .milliseconds(100))
            _ = try await holder.complete(.init(sessionId: held.session.id, lease: held.lease.proof, outcome: .ok, cliSessionId: "x"))
            let granted = try await waiting.value
            #expect(granted.decision == .resume("x"))
            #expect(granted.lease.fence == 2)
            await holder.close()
            await waiter.close()
        }
    }

    @Test func authTenantsAndRevocation() async throws {
        try await withTestServer { server in
            let bootstrap = server.client("bootstrap")
            let admin = try await bootstrap.createToken(tenant: "ops", admin: true)
            // Auth is on now: the token-less connection is refused on its next request.
            let refused = await expectCode(.unauthenticated) { _ = try await bootstrap.stats() }
            #expect(refused)
            await bootstrap.close()
            let setup = server.client("setup", token: admin.token)
            let acmeToken = try await setup.createToken(tenant: "acme", admin: false)
            let globexToken = try await setup.createToken(tenant: "globex", admin: false)
            await setup.close()

            let acme = server.client("acme-tool", token: acmeToken.token)
            let globex = server.client("globex-tool", token: globexToken.token)
            let acquired = try await acme.acquire(.init(key: "shared-name"))
            #expect(acquired.session.tenant == "acme")
            // The same key in another tenant is another session; acme's id is invisible to globex.
            let other = try await globex.acquire(.init(key: "shared-name"))
            #expect(other.session.id != acquired.session.id)
            #expect(await expectCode(.notFound) { _ = try await globex.session(id: acquired.session.id) })
            #expect(await expectCode(.forbidden) { _ = try await acme.tokens() })
            #expect(try await globex.stats().sessions == 1)

            let wrong = server.client("intruder", token: "sdt_wrong")
            #expect(await expectCode(.unauthenticated) { _ = try await wrong.stats() })
            await wrong.close()

            let ops = server.client("ops", token: admin.token)
            #expect(try await ops.tokens().count == 3)
            #expect(try await ops.revokeToken(id: acmeToken.info.id))
            // Revoked on an open connection: the next request fails.
            #expect(await expectCode(.unauthenticated) { _ = try await acme.stats() })
            let audit = try await SessionDatabase.auditRows(server.store, tenant: "acme", action: "access.denied")
            #expect(audit >= 1)
            await acme.close()
            await globex.close()
            await ops.close()
        }
    }

    @Test func failedHellosAreRateLimitedPerPeer() async throws {
        var limit = Authenticator.RateLimit()
        limit.maxFailures = 3
        try await withTestServer(rateLimit: limit) { server in
            let setup = server.client("setup")
            let token = try await setup.createToken(tenant: "t", admin: true)
            await setup.close()
            for _ in 0..<3 {
                let bad = server.client("guesser", token: "sdt_guess")
                #expect(await expectCode(.unauthenticated) { try await bad.connect() })
                await bad.close()
            }
            let blocked = server.client("guesser", token: "sdt_guess")
            #expect(await expectCode(.rateLimited) { try await blocked.connect() })
            await blocked.close()
            // Even the right token waits out the block, so guessing cannot win by luck.
            let right = server.client("owner", token: token.token)
            #expect(await expectCode(.rateLimited) { try await right.connect() })
            await right.close()
            let failures = try await SessionDatabase.auditRows(server.store, tenant: "", action: "auth.failed")
            #expect(failures == 3)
        }
    }

    @Test func gracefulShutdownAnswersRequestsInFlightAndCommitsWhatItAcknowledged() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sessiond-drain-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("db.sqlite").path
        let start = ContinuousClock.now
        let (waiting, writes) = try await withTestServer(store: try SessionDatabase.open(path: path)) { server in
            let holder = server.client("holder")
            _ = try await holder.acquire(.init(key: "drain"))
            let waiter = server.client("waiter")
            try await waiter.connect()
            // In flight during shutdown: an acquire that waits for the held lease, and a stream of writes.
            let waiting = Task { try await waiter.acquire(.init(key: "drain", waitMs: 60_000)) }
            let writer = server.client("writer")
            let progress = Progress()
            let writes = Task {
                var acknowledged: [String] = []
                for index in 0..<10_000 {
                    do {
                        _ = try await writer.acquire(.init(key: "w\(index)"))
                        acknowledged.append("w\(index)")
                        progress.count.add(1, ordering: .relaxed)
                    } catch {
                        break
                    }
                }
                return acknowledged
            }
            // Shut down while writes are streaming in.
            while progress.count.load(ordering: .relaxed) < 20 { try await Task.sleep(for: .milliseconds(10)) }
            return (waiting, writes)
        }
        // The waiting acquire got an answer, not a dropped connection, and shutdown did not wait a minute for it.
        #expect(await expectCode(.shuttingDown) { _ = try await waiting.value })
        #expect(ContinuousClock.now - start < .seconds(30))
        // Every acknowledged write is in the database.
        let acknowledged = await writes.value
        #expect(!acknowledged.isEmpty)
        let store = try SessionDatabase.open(path: path)
        for key in acknowledged {
            #expect(try await store.get(.init(key: key), caller: Caller(tenant: "local", actor: "t")).key == key)
        }
    }

    @Test func theClientReconnectsAfterTheServerDroppedItsConnection() async throws {
        // Three seconds, not one: the tests share this process's two pool threads, and when other tests keep
        // them busy for a second, a client can be that late to send its `hello` on the new connection, which
        // the server then closes as idle too.
        try await withTestServer(configure: { $0.idleTimeout = .seconds(3) }) { server in
            let client = server.client()
            let acquired = try await client.acquire(.init(key: "reconnect"))
            // The server closes the idle connection; the next calls open a new one and say hello again.
            let deadline = ContinuousClock.now + .seconds(30)
            while server.server.connectionCount > 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(server.server.connectionCount == 0)
            #expect(try await client.session(id: acquired.session.id).key == "reconnect")
            #expect(try await client.release(sessionId: acquired.session.id, lease: acquired.lease.proof))
            #expect(client.server?.tenant == "local")
            await client.close()
        }
    }

    @Test func aRestartKeepsSessionsChainsAndLeases() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sessiond-restart-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("db.sqlite").path
        let (id, lease) = try await withTestServer(store: try SessionDatabase.open(path: path)) { server in
            let client = server.client()
            let first = try await client.acquire(.init(key: "durable"))
            _ = try await client.complete(.init(sessionId: first.session.id, lease: first.lease.proof, outcome: .ok, cliSessionId: "c1"))
            let second = try await client.acquire(.init(key: "durable"))
            await client.close()
            return (first.session.id, second.lease)
        }
        try await withTestServer(store: try SessionDatabase.open(path: path)) { server in
            let client = server.client()
            let session = try await client.session(id: id)
            #expect(session.cliSessionId == "c1")
            #expect(session.lease?.fence == lease.fence)
            #expect(try await client.history(sessionId: id).count == 1)
            #expect(await expectCode(.leaseHeld) { _ = try await client.acquire(.init(key: "durable")) })
            // The lease from before the restart still works.
            _ = try await client.complete(.init(sessionId: id, lease: lease.proof, outcome: .ok, cliSessionId: "c1"))
            await client.close()
        }
    }
}

func expectCode(_ code: SessionError.Code, _ body: () async throws -> Void) async -> Bool {
    do {
        try await body()
        return false
    } catch let error as SessionError {
        return error.code == code
    } catch {
        return false
    }
}

extension SessionDatabase {
    static func auditRows(_ store: SessionDatabase, tenant: String, action: String) async throws -> Int {
        try await Task.sleep(for: .milliseconds(100))
        return try await store.listAudit(.init(action: action, limit: 1000), caller: Caller(tenant: tenant, actor: "t")).entries.count
    }
}

final class Progress: Sendable {
    let count = Atomic<Int>(0)
}
