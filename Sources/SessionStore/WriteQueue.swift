import GRDB
import Synchronization

/// The single writer: every write goes through here, and the writes that arrive while a transaction
/// commits are coalesced into the next one (group commit).
///
/// Each operation runs in its own savepoint, so a failing operation rolls back alone. Callers resume
/// only after the shared transaction has committed: no write is acknowledged before it is durable.
final class WriteQueue: Sendable {
    private struct Pending: Sendable {
        let apply: @Sendable (Database) -> Void
        let finish: @Sendable ((any Error)?) -> Void
    }

    private struct State {
        var pending: [Pending] = []
        var draining = false
    }

    private let writer: any DatabaseWriter
    private let maxBatch: Int
    private let state = Mutex(State())

    init(writer: any DatabaseWriter, maxBatch: Int) {
        self.writer = writer
        self.maxBatch = max(1, maxBatch)
    }

    /// Runs `operation` in the next group-commit transaction and returns its result once committed.
    func write<T: Sendable>(_ operation: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let outcome = OutcomeBox<T>()
            let pending = Pending(
                apply: { db in
                    do {
                        var value: T?
                        try db.inSavepoint {
                            value = try operation(db)
                            return .commit
                        }
                        outcome.result = .success(value!)
                    } catch {
                        outcome.result = .failure(error)
                    }
                },
                finish: { commitError in
                    if let commitError {
                        continuation.resume(throwing: commitError)
                    } else {
                        continuation.resume(with: outcome.result ?? .failure(StoreFault.notApplied))
                    }
                })
            enqueue(pending)
        }
    }

    private func enqueue(_ pending: Pending) {
        let startDrain = state.withLock { state in
            state.pending.append(pending)
            guard !state.draining else { return false }
            state.draining = true
            return true
        }
        if startDrain {
            Task { await drain() }
        }
    }

    private func drain() async {
        while true {
            // Let the callers just resumed by the last commit queue their next writes, so that they
            // share the next transaction instead of each paying for a commit.
            await Task.yield()
            let batch: [Pending] = state.withLock { state in
                guard !state.pending.isEmpty else {
                    state.draining = false
                    return []
                }
                let count = min(state.pending.count, maxBatch)
                let batch = Array(state.pending.prefix(count))
                state.pending.removeFirst(count)
                return batch
            }
            if batch.isEmpty { return }
            do {
                try await writer.write { db in
                    for pending in batch {
                        pending.apply(db)
                        // SQLite rolls the whole transaction back on some errors (a full disk, for one).
                        // Then nothing of this batch is stored, and every operation must fail.
                        guard db.isInsideTransaction else { throw StoreFault.transactionAborted }
                    }
                }
                for pending in batch { pending.finish(nil) }
            } catch {
                let error = StoreFault.map(error)
                for pending in batch { pending.finish(error) }
            }
        }
    }
}

/// Holds one operation's outcome between the transaction that computes it and the commit that
/// publishes it. Only the writer touches it, strictly before `finish`, so no lock is needed.
private final class OutcomeBox<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
}
