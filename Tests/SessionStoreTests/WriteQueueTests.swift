import Foundation
import GRDB
import Synchronization
import Testing

@testable import SessionStore

/// Group commit: operations queued while the writer is busy share one transaction, and a failing one rolls
/// back alone, whether it failed before or after it changed rows.
@Suite struct WriteQueueTests {
    private struct Refused: Error {}

    /// How many times each operation ran.
    private final class RunCounts: Sendable {
        let counts = Mutex<[String: Int]>([:])
    }

    /// Runs `operations` in one batch, in the order they happen to queue: a first write holds the writer
    /// until all of them are queued.
    private func runInOneBatch(
        _ operations: [(name: String, body: @Sendable (Database) throws -> Void)]
    ) async throws -> (queue: DatabaseQueue, outcomes: [String: String], runs: [String: Int]) {
        let queue = try DatabaseQueue()
        try await queue.write { db in 
            try db.execute(sql: "CREATE TABLE t(name TEXT PRIMARY KEY, n INTEGER); INSERT INTO t VALUES ('seed', 0)")
        }
        let writes = WriteQueue(writer: queue, maxBatch: 100, checkpointer: nil)
        let gate = DispatchSemaphore(value: 0)
        let runs = RunCounts()
        async let holder: Void = writes.write { _ in gate.wait() }
        // The holder is on the writer once its thread waits; then the others queue behind it.
        try await Task.sleep(for: .milliseconds(50))
        // Each operation's outcome: "ok", "refused", "constraint", or another error.
        let outcomes = await withTaskGroup(of: (String, String).self) { group in
            for (name, body) in operations {
                group.addTask {
                    do {
                        try await writes.write { db in
                            runs.counts.withLock { $0[name, default: 0] += 1 }
                            try body(db)
                        }
                        return (name, "ok")
                    } catch is Refused {
                        return (name, "refused")
                    } catch let error as DatabaseError {
                        return (name, error.resultCode == .SQLITE_CONSTRAINT ? "constraint" : "\(error)")
                    } catch {
                        return (name, "\(error)")
                    }
                }
            }
            try? await Task.sleep(for: .milliseconds(100))
            gate.signal()
            var outcomes: [String: String] = [:]
            for await (name, outcome) in group { outcomes[name] = outcome }
            return outcomes
        }
        try await holder
        return (queue, outcomes, runs.counts.withLock { $0 })
    }

    private func insert(_ name: String) -> @Sendable (Database) throws -> Void {
        { db in try db.execute(sql: "INSERT INTO t(name, n) VALUES (?, 1)", arguments: [name]) }
    }

    @Test func anOperationThatFailsBeforeWritingLeavesTheBatchAloneAndRunsOnce() async throws {
        let (queue, outcomes, runs) = try await runInOneBatch([
            ("a", insert("a")),
            ("refused", { _ in throw Refused() }),
            // A statement that fails is undone by SQLite: the operation changed nothing.
            ("duplicate", { db in
                try db.execute(sql: "INSERT INTO t(name, n) VALUES ('seed', 2)")
            }),
            ("b", insert("b")),
        ])
        #expect(outcomes == ["a": "ok", "refused": "refused", "duplicate": "constraint", "b": "ok"])
        let rows = try queue.read { db in try Row.fetchAll(db, sql: "SELECT name, n FROM t ORDER BY name") }
        #expect(rows == [["name": "a", "n": 1], ["name": "b", "n": 1], ["name": "seed", "n": 0]])
        // No savepoint pass was needed: every operation ran exactly once.
        #expect(runs == ["a": 1, "refused": 1, "duplicate": 1, "b": 1])
    }

    @Test func anOperationThatFailsAfterWritingRollsBackAloneAndTheOthersCommit() async throws {
        let (queue, outcomes, runs) = try await runInOneBatch([
            ("a", insert("a")),
            ("halfway", { db in
                try db.execute(sql: "INSERT INTO t(name, n) VALUES ('halfway', 1)")
                try db.execute(sql: "UPDATE t SET n = n + 10 WHERE name = 'seed'")
                throw Refused()
            }),
            ("b", insert("b")),
        ])
        #expect(outcomes == ["a": "ok", "halfway": "refused", "b": "ok"])
        let rows = try queue.read { db in try Row.fetchAll(db, sql: "SELECT name, n FROM t ORDER BY name") }
        #expect(rows == [["name": "a", "n": 1], ["name": "b", "n": 1], ["name": "seed", "n": 0]])
        // The batch ran again with savepoints (the operations queued before the failing one ran twice), and
        // only that run's writes were committed.
        #expect(runs["halfway"] == 2)
        #expect(runs.values.allSatisfy { (1...2).contains($0) })
    }
}
