import CSQLiteConfig
import Foundation
import GRDB

/// The single writer: every write goes through here, and the writes that arrive while a transaction
/// commits are coalesced into the next one (group commit).
///
/// A failing operation rolls back alone. Operations first run one after another without savepoints, since
/// nearly every failure happens before an operation has changed a row (a stale lease, a missing session),
/// and then there is nothing to undo. When one fails after it changed rows, the batch is rolled back and
/// run again with a savepoint around each operation. Callers resume only after the shared transaction has
/// committed: no write is acknowledged before it is durable.
final class WriteQueue: Sendable {
    private struct Pending: Sendable {
        /// Runs the operation, in a savepoint of its own when asked; returns the error it failed with, if any.
        /// It may run twice (see ``WriteQueue``): only the last run's outcome is kept.
        let apply: @Sendable (Database, _ savepoint: Bool) -> (any Error)?
        let finish: @Sendable ((any Error)?) -> Void
    }

    /// What the writer thread and the callers share. It does not refer to the queue, so the queue can go away
    /// and tell the thread to stop.
    private final class Shared: @unchecked Sendable {
        let condition = NSCondition()
        var pending: [Pending] = []
        var stopped = false
        /// Signalled when the writer thread has let go of the database.
        let exited = DispatchSemaphore(value: 0)
        var thread: Thread?
    }

    private let shared = Shared()
    private let checkpointer: Checkpointer?

    /// Starts the writer: a thread of its own that runs batches with GRDB's synchronous API, so that a write
    /// costs no hop through a dispatch queue or the cooperative pool on its way to SQLite. With a
    /// `checkpointer`, the WAL is copied back by that instead of by the writer's commits.
    init(writer: any DatabaseWriter, maxBatch: Int, checkpointer: Checkpointer?) {
        let shared = self.shared
        let maxBatch = max(1, maxBatch)
        self.checkpointer = checkpointer
        let thread = Thread {
            // Named from inside: on Linux only the running thread's own name reaches `top -H` and perf.
            Thread.current.name = "sessiond-writer"
            Self.run(writer: writer, shared: shared, maxBatch: maxBatch, checkpointer: checkpointer)
        }
        shared.thread = thread
        thread.start()
    }

    /// Stops the writer and, unless this runs on the writer itself, waits until it has released the
    /// database, so that the file is closed when the store is gone.
    deinit {
        shared.condition.lock()
        shared.stopped = true
        shared.condition.signal()
        let onWriter = Thread.current === shared.thread
        shared.condition.unlock()
        if !onWriter { shared.exited.wait() }
        checkpointer?.stop()
    }

    /// Runs `operation` in the next group-commit transaction and returns its result once committed.
    func write<T: Sendable>(_ operation: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let outcome = OutcomeBox<T>()
            let pending = Pending(
                apply: { db, savepoint in
                    let result = Result { try savepoint ? Self.inSavepoint(db) { try operation(db) } : operation(db) }
                    outcome.result = result
                    if case .failure(let error) = result { return error }
                    return nil
                },
                finish: { commitError in
                    if let commitError {
                        continuation.resume(throwing: commitError)
                    } else {
                        continuation.resume(with: outcome.result ?? .failure(StoreFault.notApplied))
                    }
                })
            shared.condition.lock()
            shared.pending.append(pending)
            shared.condition.signal()
            shared.condition.unlock()
        }
    }

    /// Runs `operation` in a savepoint of the batch's transaction, rolled back alone if it throws. The
    /// statements are cached: GRDB's `inSavepoint` would compile them again for every operation.
    private static func inSavepoint<T>(_ db: Database, _ operation: () throws -> T) throws -> T {
        try db.statement("SAVEPOINT operation").execute()
        do {
            let value = try operation()
            try db.statement("RELEASE SAVEPOINT operation").execute()
            return value
        } catch {
            // After SQLite aborted the whole transaction there is no savepoint left to roll back to.
            if db.isInsideTransaction {
                try db.statement("ROLLBACK TO SAVEPOINT operation").execute()
                try db.statement("RELEASE SAVEPOINT operation").execute()
            }
            throw error
        }
    }

    /// An operation failed after it changed rows, which only a savepoint around it could undo alone.
    private struct FailedAfterChanges: Error {}

    /// Runs a batch's operations in the open transaction. Without savepoints, an operation that fails must
    /// not have changed anything: SQLite counts every row that a completed statement (or its triggers)
    /// inserted, updated or deleted, and undoes a failed statement itself.
    private static func apply(_ batch: [Pending], to db: Database, savepoints: Bool) throws {
        for pending in batch {
            let changesBefore = db.totalChangesCount
            let failure = pending.apply(db, savepoints)
            // SQLite rolls the whole transaction back on some errors (a full disk, for one). Then nothing of
            // this batch is stored, and every operation fails with that cause.
            guard db.isInsideTransaction else { throw failure ?? StoreFault.transactionAborted }
            if failure != nil, !savepoints, db.totalChangesCount != changesBefore { throw FailedAfterChanges() }
        }
    }

    /// The writer thread: waits for work, then commits everything that queued up meanwhile in one transaction.
    private static func run(writer: any DatabaseWriter, shared: Shared, maxBatch: Int, checkpointer: Checkpointer?) {
        // Released before `exited` is signalled, so the file is closed by the time deinit returns.
        var writer: (any DatabaseWriter)? = writer
        // The WAL's length after the last commit, kept by SQLite's WAL hook on this thread. Only with a
        // checkpointer: without one, that hook is SQLite's automatic checkpoint.
        let walFrames = UnsafeMutablePointer<CInt>.allocate(capacity: 1)
        walFrames.pointee = 0
        func countWALFrames(into counter: UnsafeMutablePointer<CInt>?) {
            guard checkpointer != nil else { return }
            writer!.writeWithoutTransaction { db in
                sessiond_count_wal_frames(UnsafeMutableRawPointer(db.sqliteConnection), counter)
            }
        }
        countWALFrames(into: walFrames)
        do {
            // This thread's statements, released at the end of this block: before the connection is.
            let statements = writer!.writeWithoutTransaction { db in WriterStatements(db) }
            WriterStatements.$current.withValue(statements) {
                serve(writer!, shared: shared, maxBatch: maxBatch, checkpointer: checkpointer, walFrames: walFrames)
            }
        }
        countWALFrames(into: nil)
        walFrames.deallocate()
        writer = nil
        shared.exited.signal()
    }

    /// The writer's checkpoint between two batches, when the checkpointer asked for it or the WAL is past
    /// `Checkpointer.writerLimitFrames`. When asked, a checkpoint that the thread's pass holds off fails with
    /// `SQLITE_BUSY`, and the next batch tries again. Past the limit, the writer waits for that pass instead:
    /// commits that went on meanwhile would grow the WAL for as long as the passes kept it busy.
    private static func checkpointIfDue(
        _ writer: any DatabaseWriter, checkpointer: Checkpointer, walFrames: UnsafeMutablePointer<CInt>
    ) {
        let pastLimit = walFrames.pointee >= Checkpointer.writerLimitFrames
        guard pastLimit || checkpointer.writerShouldCheckpoint else { return }
        let checkpoint = { try writer.writeWithoutTransaction { db in try db.checkpoint(.passive) } }
        guard (try? pastLimit ? checkpointer.excluding(checkpoint) : checkpoint()) != nil else { return }
        walFrames.pointee = 0
        checkpointer.writerDidCheckpoint()
    }

    /// Runs batches until the queue is stopped and empty.
    private static func serve(
        _ writer: any DatabaseWriter, shared: Shared, maxBatch: Int, checkpointer: Checkpointer?,
        walFrames: UnsafeMutablePointer<CInt>
    ) {
        while true {
            shared.condition.lock()
            while shared.pending.isEmpty, !shared.stopped { shared.condition.wait() }
            if shared.pending.isEmpty, shared.stopped {
                shared.condition.unlock()
                return
            }
            let count = min(shared.pending.count, maxBatch)
            let batch = Array(shared.pending.prefix(count))
            shared.pending.removeFirst(count)
            shared.condition.unlock()
            if let checkpointer { checkpointIfDue(writer, checkpointer: checkpointer, walFrames: walFrames) }
            do {
                do {
                    try writer.write { db in try apply(batch, to: db, savepoints: false) }
                } catch is FailedAfterChanges {
                    try writer.write { db in try apply(batch, to: db, savepoints: true) }
                }
                checkpointer?.didCommit()
                for pending in batch { pending.finish(nil) }
            } catch {
                // `SessionDatabase.write` maps the error to what it means for the caller.
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
