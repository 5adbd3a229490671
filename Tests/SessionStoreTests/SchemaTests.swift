import Foundation
import GRDB
import SessionProtocol
import SessionStore
import Testing

@Suite struct SchemaTests {
    private var schemaDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("schema")
    }

    @Test func everySchemaFileIsRegisteredInOrderAndEmbeddedVerbatim() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: schemaDirectory.path)
            .filter { $0.hasSuffix(".sql") }.sorted()
        #expect(!files.isEmpty)
        #expect(files.map { String($0.dropLast(4)) } == SessionDatabase.migrationNames)
        for file in files {
            let onDisk = try String(contentsOf: schemaDirectory.appendingPathComponent(file), encoding: .utf8)
            #expect(SessionDatabase.embeddedSchema[String(file.dropLast(4))] == onDisk)
            #expect(file.range(of: #"^\d{4}_[a-z0-9_]+\.sql$"#, options: .regularExpression) != nil)
        }
    }

    @Test func migratesFromEmptyIntoWALAndRestartKeepsEverything() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("registry.sqlite").path
        var sessionId = ""
        do {
            let store = try SessionDatabase.open(path: path)
            #expect(try await store.readValue(sql: "PRAGMA journal_mode") == "wal")
            let (acquired, _) = try await store.turn("k", reporting: "a", messages: [.init(role: .user, content: "kept")])
            sessionId = acquired.session.id
            let held = try await store.acquire(.init(key: "k", holder: "holder"), caller: alice)
            _ = try await store.appendTranscript(
                .init(sessionId: sessionId, lease: held.lease.proof, cliSessionId: "a", offset: 0, data: Data("t".utf8)),
                caller: alice)
            try store.checkpoint()
        }
        let reopened = try SessionDatabase.open(path: path)
        let session = try await reopened.get(.init(sessionId: sessionId), caller: alice)
        #expect(session.cliSessionId == "a")
        #expect(session.messageCount == 1)
        #expect(session.lease?.holder == "holder")
        #expect(session.lease?.fence == 2)
        #expect(try await reopened.history(.init(sessionId: sessionId), caller: alice).count == 1)
        #expect(try await reopened.readTranscript(.init(sessionId: sessionId), caller: alice).data == Data("t".utf8))
        #expect(try await reopened.readValue(sql: "PRAGMA integrity_check") == "ok")
        #expect(try await reopened.schemaVersion() == SessionDatabase.migrationNames.last)
    }

    @Test func aDatabaseWithANewerSchemaIsRefused() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("registry.sqlite").path
        _ = try SessionDatabase.open(path: path)
        let queue = try DatabaseQueue(path: path)
        try await queue.write { db in
            try db.execute(sql: "INSERT INTO grdb_migrations(identifier) VALUES ('9999_from_the_future')")
        }
        try queue.close()
        #expect {
            _ = try SessionDatabase.open(path: path)
        } throws: { error in
            "\(error)".contains("newer schema") && "\(error)".contains("9999_from_the_future")
        }
    }

    @Test func aFileThatIsNotADatabaseIsRefusedAndLeftAlone() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("notes.sqlite").path
        let junk = Data(repeating: 0x41, count: 8192)
        try junk.write(to: URL(fileURLWithPath: path))
        #expect {
            _ = try SessionDatabase.open(path: path)
        } throws: { error in
            "\(error)".contains("not a sessiond database")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == junk)
    }

    @Test func synchronousFullIsAppliedToTheWriter() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var configuration = StoreConfiguration()
        configuration.synchronous = .full
        let store = try SessionDatabase.open(path: directory.appendingPathComponent("db.sqlite").path, configuration: configuration)
        try await store.turn("k", reporting: "a")
        #expect(try await store.get(.init(key: "k"), caller: alice).turnCount == 1)
    }
}

@Suite struct StatsTests {
    @Test func statsComeFromCountersAndMatchALargeGeneratedDatabase() async throws {
        let store = try makeStore()
        let count = 20_000
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    for index in stride(from: worker, to: count, by: 8) {
                        let acquired = try await store.acquire(.init(key: "bulk:\(index)"), caller: alice)
                        _ = try await store.complete(
                            .init(
                                sessionId: acquired.session.id, lease: acquired.lease.proof,
                                outcome: index % 10 == 0 ? .resumeFailed : .ok, cliSessionId: "c\(index)",
                                reason: index % 20 == 0 ? "gone" : "other"), caller: alice)
                    }
                }
            }
            try await group.waitForAll()
        }
        for index in 0..<50 {
            _ = try await store.update(.init(sessionId: try await store.get(.init(key: "bulk:\(index)"), caller: alice).id, status: .closed), caller: alice)
        }
        let stats = try await store.stats(caller: alice)
        #expect(stats.sessions == count)
        #expect(stats.byStatus["closed"] == 50)
        #expect(stats.byStatus["active"] == count - 50)
        #expect(stats.turns == count - count / 10)
        #expect(stats.resumeFailures == count / 10)
        #expect(stats.topFailureReasons.first == .init(reason: "gone", count: count / 20))
        #expect(stats.sessionAge.first?.count == count)
        #expect(stats.freshStarts == count)
    }
}
