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
        #expect(reopened.schemaVersion == SessionDatabase.migrationNames.last)
    }

    @Test func theWALIsCheckpointedWhileOpenAndStaysBoundedUnderSteadyWrites() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("registry.sqlite").path
        let store = try SessionDatabase.open(path: path)
        let (acquired, _) = try await store.turn("k", reporting: "a")
        func size(_ file: String) -> Int {
            ((try? FileManager.default.attributesOfItem(atPath: file)[.size]) as? Int) ?? 0
        }
        let before = size(path)
        // About 240 MB of history from 8 concurrent writers, so the writer commits back to back and the
        // background checkpoint never catches up on its own: the writer's restart keeps the WAL bounded.
        try await appendConcurrently(store, sessionId: acquired.session.id, writers: 8, appends: 500, bytes: 60_000)
        try await Task.sleep(for: .milliseconds(300))
        // The pages reached the database file while the store stayed open, and the WAL started over
        // instead of holding all of it. Past 32 MB after a commit the writer checkpoints without waiting to be
        // asked (`Checkpointer.writerLimitFrames`), and waits for a background pass that holds the checkpoint
        // off: 33 MB here in eight runs beside other test processes. When the writer gave up on a busy
        // checkpoint and went on committing, the WAL reached 33–74 MB in the same eight runs (and 80–89 MB in
        // full test runs); with only the thread's passes asking, 113–128 MB.
        #expect(size(path) > before + 120_000_000)
        #expect(size(path + "-wal") < 48_000_000)
        #expect(try await store.readValue(sql: "PRAGMA integrity_check") == "ok")
        #expect(try await store.get(.init(sessionId: acquired.session.id), caller: alice).messageCount == 4_000)
    }

    /// The final checkpoint may meet the background checkpointer's: SQLite refuses a second checkpoint at
    /// once with `SQLITE_BUSY`, and `checkpoint()` waits its turn instead of failing.
    @Test func anExplicitCheckpointWaitsForTheBackgroundOne() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try SessionDatabase.open(path: directory.appendingPathComponent("registry.sqlite").path)
        let (acquired, _) = try await store.turn("k", reporting: "a")
        // Writers keep the background checkpointer busy while checkpoints are asked for.
        async let writes: Void = appendConcurrently(
            store, sessionId: acquired.session.id, writers: 4, appends: 300, bytes: 20_000)
        var failures = 0
        for _ in 0..<600 {
            do { try store.checkpoint() } catch { failures += 1 }
            try await Task.sleep(for: .milliseconds(1))
        }
        try await writes
        #expect(failures == 0)
        #expect(try await store.get(.init(sessionId: acquired.session.id), caller: alice).messageCount == 1_200)
    }

    /// A database file migrated only through `migrations`, as an older sessiond left it.
    private func olderDatabase(path: String, through migrations: [String]) throws -> DatabaseQueue {
        let queue = try DatabaseQueue(path: path)
        var migrator = DatabaseMigrator()
        for name in migrations {
            let sql = try #require(SessionDatabase.embeddedSchema[name])
            migrator.registerMigration(name) { db in try db.execute(sql: sql) }
        }
        try migrator.migrate(queue)
        return queue
    }

    /// Migration 0004 links each session's audit rows instead of indexing them by session: on a database of
    /// version 3, every session's log (live or deleted) reads back as before, and the new rows extend it.
    @Test func auditRowsOfVersion3AreLinkedPerSession() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("registry.sqlite").path
        let version3 = try olderDatabase(path: path, through: ["0001_initial", "0002_turn_indexes", "0003_plain_checks"])
        // Session "live" exists; "gone" was deleted (its last row says so); rows of both and of no session
        // interleave, and "live" also has rows in another tenant that must stay out of its log.
        try await version3.write { db in
            try db.execute(
                sql: """
                    INSERT INTO session(id, tenant, key, tool, createdAt, lastUsedAt, expiresAt, ttlSeconds)
                    VALUES ('live', 'local', 'k', 'claude', 1, 1, 86400001, 86400)
                    """)
            let rows: [(tenant: String, sessionId: String?, action: String)] = [
                ("local", "gone", "session.create"), ("local", "live", "session.create"), ("local", nil, "auth.failed"),
                ("local", "gone", "lease.grant"), ("acme", "live", "access.denied"), ("local", "live", "lease.grant"),
                ("local", "gone", "session.delete"), ("local", "live", "turn.complete"),
            ]
            for (index, row) in rows.enumerated() {
                try db.execute(
                    sql: "INSERT INTO audit(at, tenant, actor, sessionId, action, outcome) VALUES (?, ?, 'a', ?, ?, 'ok')",
                    arguments: [index + 1, row.tenant, row.sessionId, row.action])
            }
        }
        try version3.close()

        let store = try SessionDatabase.open(path: path)
        #expect(store.schemaVersion == SessionDatabase.migrationNames.last)
        func log(_ sessionId: String) async throws -> [String] {
            try await store.listAudit(.init(sessionId: sessionId), caller: alice).entries.map(\.action)
        }
        #expect(try await log("live") == ["turn.complete", "lease.grant", "session.create"])
        #expect(try await log("gone") == ["session.delete", "lease.grant", "session.create"])
        // Migration 0005 starts every live session's expiry bound at its expiry.
        #expect(try await store.readValue(sql: "SELECT expiryBound = expiresAt FROM session WHERE id = 'live'") == true)
        // The next turn's rows (the session has expired by now: an expiry, a fresh start, a grant) extend the log.
        _ = try await store.acquire(.init(key: "k"), caller: alice)
        let extended = try await log("live")
        #expect(extended.first == "fresh_start" && extended.contains("lease.grant") && extended.count > 4, "\(extended)")
        #expect(extended.suffix(3) == ["turn.complete", "lease.grant", "session.create"])
        #expect(try await store.readValue(sql: "SELECT count(*) FROM sqlite_schema WHERE name = 'audit_tenant_session'") == 0)
        // A deleted session's log starts from its deletion, found through the partial index of deletions.
        let plan = try await DatabaseQueue(path: path).read { db in
            try Row.fetchAll(
                db,
                sql: """
                    EXPLAIN QUERY PLAN SELECT max(id) FROM audit WHERE tenant = 'local' AND sessionId = 'gone'
                    AND (action = 'session.delete' OR action = 'session.evict' OR action = 'session.purge')
                    """
            ).map { $0["detail"] as String? ?? "" }.joined(separator: "; ")
        }
        #expect(plan.contains("USING INDEX audit_session_end"), "\(plan)")
    }

    /// Migration 0006 links each session's chain instead of keying it by session: on a database of version 5,
    /// every chain reads back in order, the next turn extends it, and deleting a session takes its links only.
    @Test func chainLinksOfVersion5AreLinkedPerSession() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("registry.sqlite").path
        let version5 = try olderDatabase(path: path, through: Array(SessionDatabase.migrationNames.prefix(5)))
        try await version5.write { db in
            for (key, head) in [("one", "o3"), ("two", "t2"), ("none", nil)] {
                try db.execute(
                    sql: """
                        INSERT INTO session(id, tenant, key, tool, cliSessionId, createdAt, lastUsedAt, expiresAt, ttlSeconds)
                        VALUES (?, 'local', ?, 'claude', ?, 1, 1, 9000000000000, 86400)
                        """, arguments: [key, key, head])
            }
            // Written interleaved, as turns of two sessions would be.
            for (pk, seq, id, reason) in [
                (1, 1, "o1", "created"), (2, 1, "t1", "forked"), (1, 2, "o2", "changed_by_cli"),
                (2, 2, "t2", "fresh_after_failure"), (1, 3, "o3", "changed_by_cli"),
            ] {
                try db.execute(
                    sql: "INSERT INTO chainLink(sessionPk, seq, cliSessionId, reason, at) VALUES (?, ?, ?, ?, ?)",
                    arguments: [pk, seq, id, reason, seq])
            }
        }
        try version5.close()

        let store = try SessionDatabase.open(path: path)
        #expect(store.schemaVersion == SessionDatabase.migrationNames.last)
        func chain(_ sessionId: String) async throws -> [String] {
            try await store.history(.init(sessionId: sessionId), caller: alice).map { "\($0.seq):\($0.cliSessionId)" }
        }
        #expect(try await chain("one") == ["1:o1", "2:o2", "3:o3"])
        #expect(try await chain("two") == ["1:t1", "2:t2"])
        #expect(try await chain("none") == [])
        #expect(try await store.history(.init(sessionId: "two"), caller: alice).map(\.reason) == [.forked, .freshAfterFailure])
        #expect(try await store.readValue(sql: "SELECT count(*) FROM sqlite_schema WHERE name = 'linkedChainLink'") == 0)

        let (acquired, completed) = try await store.turn("one", reporting: "o4")
        #expect(acquired.decision == .resume("o3") && completed.chainExtended)
        #expect(try await chain("one") == ["1:o1", "2:o2", "3:o3", "4:o4"])
        #expect(try await store.delete(.init(sessionId: "two"), caller: alice))
        #expect(try await store.storedChainLinks() == ["o1", "o2", "o3", "o4"])
        #expect(try await store.readValue(sql: "PRAGMA integrity_check") == "ok")
    }

    /// Migration 0003 rewrites the `IN (…)` CHECK constraints as comparisons in place: a database of
    /// version 2 keeps its rows, every constraint still refuses what it refused, and no statement of a
    /// turn builds a temporary table for one any more.
    @Test func checkConstraintsKeepTheirMeaningWithoutTemporaryTables() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("registry.sqlite").path
        let version2 = try olderDatabase(path: path, through: ["0001_initial", "0002_turn_indexes"])
        try await version2.write { db in
            try db.execute(
                sql: """
                    INSERT INTO session(id, tenant, key, tool, status, createdAt, lastUsedAt, expiresAt, ttlSeconds)
                    VALUES ('old', 'local', 'k', 'claude', 'closed', 1, 1, 2, 86400);
                    INSERT INTO chainLink(sessionPk, seq, cliSessionId, reason, at) VALUES (1, 1, 'c', 'forked', 1);
                    INSERT INTO message(sessionPk, seq, role, content, at) VALUES (1, 1, 'tool', 'kept', 1);
                    """)
        }

        let store = try SessionDatabase.open(path: path)
        #expect(store.schemaVersion == SessionDatabase.migrationNames.last)
        #expect(try await store.readValue(sql: "PRAGMA integrity_check") == "ok")
        #expect(try await store.get(.init(key: "k"), caller: alice).messageCount == 0)
        #expect(try await store.history(.init(sessionId: "old"), caller: alice).map(\.reason) == [.forked])
        // The connection opened before the migration reloads the new definitions too.
        let schema = try await version2.read { db in
            try String.fetchAll(db, sql: "SELECT sql FROM sqlite_schema WHERE name IN ('session', 'chainLink', 'message')")
        }
        #expect(schema.count == 3 && schema.allSatisfy { !$0.contains(" IN (") })

        let statements = [
            "UPDATE session SET status = 'active', cliSessionId = 'x' WHERE pk = 1",
            "INSERT INTO chainLink(sessionPk, seq, cliSessionId, reason, at) VALUES (1, 2, 'x', 'created', 1)",
            "INSERT INTO message(sessionPk, seq, role, content, at) VALUES (1, 2, 'user', 'x', 1)",
        ]
        try await version2.write { db in
            for sql in statements {
                let opcodes = try Row.fetchAll(db, sql: "EXPLAIN " + sql).map { $0["opcode"] as String }
                #expect(opcodes.contains("Halt") && !opcodes.contains("OpenEphemeral"), "\(sql)")
            }
            let allowed: [(String, [String])] = [
                ("UPDATE session SET status = ? WHERE pk = 1", SessionStatus.allCases.map(\.rawValue)),
                ("INSERT OR REPLACE INTO chainLink(sessionPk, seq, cliSessionId, reason, at) VALUES (1, 9, 'x', ?, 1)",
                 ChainReason.allCases.map(\.rawValue)),
                ("INSERT OR REPLACE INTO message(sessionPk, seq, role, content, at) VALUES (1, 9, ?, 'x', 1)",
                 MessageRole.allCases.map(\.rawValue)),
            ]
            for (sql, values) in allowed {
                for value in values { try db.execute(sql: sql, arguments: [value]) }
                for refused in ["bogus", "Active", "user ", ""] {
                    #expect(throws: DatabaseError.self, "\(sql) with \(refused)") {
                        try db.execute(sql: sql, arguments: [refused])
                    }
                }
            }
        }
        try await version2.close()
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
    @Test func turnCountersFollowEveryOutcome() async throws {
        let store = try makeStore()
        let count = 400
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
        for index in 0..<10 {
            let id = try await store.get(.init(key: "bulk:\(index)"), caller: alice).id
            _ = try await store.update(.init(sessionId: id, status: .closed), caller: alice)
        }
        let stats = try await store.stats(caller: alice)
        #expect(stats.sessions == count)
        #expect(stats.byStatus["closed"] == 10)
        #expect(stats.byStatus["active"] == count - 10)
        #expect(stats.turns == count - count / 10)
        #expect(stats.resumeFailures == count / 10)
        #expect(stats.topFailureReasons.first == .init(reason: "gone", count: count / 20))
        #expect(stats.freshStarts == count)
    }

    /// 200,000 sessions written straight into the file (the triggers keep the counters), then `stats`
    /// must agree with full counts over the table, which it never runs itself.
    @Test func statsAgreeWithFullCountsOnALargeGeneratedDatabase() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("large.sqlite").path
        let clock = ManualClock()
        let store = try SessionDatabase.open(path: path, clock: clock.storeClock)
        let now = Int64(clock.now.timeIntervalSince1970 * 1000)
        let queue = try DatabaseQueue(path: path)
        try await queue.write { db in
            let insert = try db.makeStatement(
                sql: """
                    INSERT INTO session(id, tenant, key, tool, status, createdAt, lastUsedAt, expiresAt, ttlSeconds)
                    VALUES (?, ?, ?, 'claude', ?, ?, ?, ?, 86400)
                    """)
            let statuses = ["active", "active", "active", "expired", "closed", "non_resumable"]
            for index in 0..<200_000 {
                let created = now - Int64(index % 120) * 86_400_000 - 1000
                try insert.execute(arguments: [
                    "gen-\(index)", index % 7 == 0 ? "other" : "local", "key:\(index)", statuses[index % statuses.count],
                    created, created, created + 86_400_000,
                ])
            }
            // Some deletes and status changes, which the triggers must follow too.
            try db.execute(sql: "DELETE FROM session WHERE key LIKE 'key:1%' AND tenant = 'local' AND status = 'closed'")
            try db.execute(sql: "UPDATE session SET status = 'expired' WHERE key LIKE 'key:2%' AND status = 'active'")
        }
        let truth = try await queue.read { db in
            try Row.fetchAll(db, sql: "SELECT status, COUNT(*) FROM session WHERE tenant = 'local' GROUP BY status")
                .reduce(into: [String: Int]()) { $0[$1[0]] = $1[1] }
        }
        let ageTruth = try await queue.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM session WHERE tenant = 'local' AND createdAt / 86400000 > ? - 7", arguments: [now / 86_400_000])!
        }
        try await queue.close()
        let stats = try await store.stats(caller: alice)
        #expect(stats.sessions == truth.values.reduce(0, +))
        for status in SessionStatus.allCases {
            #expect(stats.byStatus[status.rawValue] == truth[status.rawValue] ?? 0)
        }
        let withinWeek = stats.sessionAge.filter { ["1d", "7d"].contains($0.le) }.map(\.count).reduce(0, +)
        #expect(withinWeek == ageTruth)
        #expect(stats.databaseBytes > 10_000_000)
    }
}

/// `writers` tasks that each append `appends` messages of `bytes` bytes to one session.
private func appendConcurrently(
    _ store: SessionDatabase, sessionId: String, writers: Int, appends: Int, bytes: Int
) async throws {
    let content = String(repeating: "x", count: bytes)
    try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<writers {
            group.addTask {
                for _ in 0..<appends {
                    _ = try await store.appendMessages(
                        .init(sessionId: sessionId, messages: [.init(role: .user, content: content)]), caller: alice)
                }
            }
        }
        try await group.waitForAll()
    }
}
