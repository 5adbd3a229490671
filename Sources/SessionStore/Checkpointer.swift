import CSQLiteConfig
import Foundation
import GRDB
import Logging

/// Copies the WAL back into the database file on a thread and a connection of its own, so that the writer's
/// commits never wait for a checkpoint's page writes and fsyncs (the writer's automatic checkpoint is off).
///
/// A checkpoint that runs beside the writer can copy every frame but the newest, and SQLite only starts the
/// WAL over once all of it is copied. So when the WAL has grown past `restartFrames`, the writer is asked to
/// run one passive checkpoint itself between two batches: it copies the little that is left, and the next
/// transaction starts the WAL from the beginning again. That bounds the WAL under a steady load.
///
/// Every commit waits while the writer's checkpoint runs, so this thread leaves it as little as it can:
/// - SQLite syncs the database file only in a checkpoint that copies the whole WAL, which a pass beside the
///   writer never does, and syncs the WAL only at a pass's start. Left alone, the writer's checkpoint flushed
///   every page the passes had copied since the last restart and the frames committed since the last pass
///   (measured: 23–32 ms for the database file, in stalls of about 45 ms, six times a second, 30 % of the
///   writer's time). This thread syncs both files after each pass instead.
/// - Before asking the writer, it passes again at once while many frames arrived during its last pass
///   (see ``CatchUp``).
final class Checkpointer: Sendable {
    private final class Shared: @unchecked Sendable {
        let condition = NSCondition()
        /// A commit happened since the last checkpoint.
        var committed = false
        var stopped = false
        var writerShouldCheckpoint = false
        let exited = DispatchSemaphore(value: 0)
        /// Held while this thread's checkpoint runs.
        let checkpointing = NSLock()
    }

    private let shared = Shared()
    /// The most a checkpoint may lag behind a commit, in seconds.
    static let interval: TimeInterval = 0.1
    /// WAL frames (pages) past which the writer finishes a checkpoint itself: about 4 MB of 4 KiB pages.
    /// Measured on 1,000,000 sessions at 64 connections, turn p99 fell from 62–70 ms to 47–62 ms against
    /// 4000 frames (five pairs, same throughput), and rose to 85–101 ms with 16000; 10,000 sessions
    /// did not change.
    static let restartFrames = 1000
    /// WAL frames past which the writer runs its checkpoint after a commit without being asked: 32 MB. The
    /// thread looks at the WAL once per pass, and a flood of large writes (about 250 MB/s of 60 KB messages
    /// here) grew it by 30–60 MB between two passes, to 111 MB before the writer was asked. Past it, the
    /// writer waits for a pass that is running (``excluding(_:)``) rather than commit on beside it.
    static let writerLimitFrames = 8_000

    /// Whether the thread passes again at once instead of asking the writer to finish the checkpoint: while
    /// more than `settledFrames` arrived during the last pass, and fewer than during the one before. Passes
    /// that stop gaining, a WAL of `maxFrames` or more, and `maxPasses` passes in a row go to the writer, so
    /// that a write rate the passes cannot keep up with still starts the WAL over about as often as before
    /// (the flood of `theWALIsCheckpointedWhileOpenAndStaysBoundedUnderSteadyWrites`, doubled to 240 MB,
    /// grew the WAL to 120–180 MB in three runs of four with a 32 MB limit). Catching up closer (150 frames,
    /// 12 passes, 24 MB) cut the writer's stops by a quarter in all, but ran fewer turns/s in six traced
    /// pairs of seven, with no clear gain in p99, and left the scale run's ratio where it was (Benchmarks/HISTORY.md,
    /// eighteenth and twenty-third sessions).
    struct CatchUp {
        /// Frames arrived during the last pass at or below which the writer is asked: about 2 MB to copy.
        static let settledFrames = 500
        static let maxPasses = 6
        /// 16 MB of 4 KiB pages.
        static let maxFrames = 4_000

        private var framesAtLastPass: Int?
        private var arrivedDuringLastPass: Int?
        private var passes = 0

        /// Called after each pass over a WAL of `frames` (`restartFrames` or more); resets when it says no.
        mutating func passAgain(frames: Int) -> Bool {
            // A WAL that started over since (frames < the last count) counts from the beginning.
            let arrived = framesAtLastPass.flatMap { frames >= $0 ? frames - $0 : nil } ?? frames
            let gaining = arrivedDuringLastPass.map { arrived < $0 } ?? true
            if arrived > Self.settledFrames, gaining, passes < Self.maxPasses, frames < Self.maxFrames {
                passes += 1
                framesAtLastPass = frames
                arrivedDuringLastPass = arrived
                return true
            }
            self = CatchUp()
            return false
        }
    }

    /// Opens the checkpointer's connection; throws when the file cannot be opened for writing.
    init(path: String, busyTimeout: TimeInterval, logger: Logger) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(busyTimeout)
        let connection = try DatabaseQueue(path: path, configuration: configuration)
        let shared = self.shared
        let thread = Thread {
            Thread.current.name = "sessiond-ckpt"  // at most 15 bytes on Linux
            Self.run(connection: connection, shared: shared, logger: logger)
        }
        thread.start()
    }

    deinit { stop() }

    /// Stops the thread and waits until it has closed its connection. Later calls return at once.
    func stop() {
        shared.condition.lock()
        let running = !shared.stopped
        shared.stopped = true
        shared.condition.signal()
        shared.condition.unlock()
        if running { shared.exited.wait() }
    }

    /// Runs `body` while no background checkpoint runs. SQLite runs one checkpoint at a time and answers a
    /// second one with `SQLITE_BUSY` at once, without its busy handler, so an explicit checkpoint waits here.
    func excluding<T>(_ body: () throws -> T) rethrows -> T {
        shared.checkpointing.lock()
        defer { shared.checkpointing.unlock() }
        return try body()
    }

    /// Called by the writer after each commit.
    func didCommit() {
        shared.condition.lock()
        shared.committed = true
        shared.condition.signal()
        shared.condition.unlock()
    }

    /// Whether the writer should run a passive checkpoint before its next batch.
    var writerShouldCheckpoint: Bool {
        shared.condition.lock()
        defer { shared.condition.unlock() }
        return shared.writerShouldCheckpoint
    }

    /// Called by the writer once its checkpoint went through. One that found this thread's checkpoint
    /// running fails with `SQLITE_BUSY`, and the writer tries again before its next batch.
    func writerDidCheckpoint() {
        shared.condition.lock()
        shared.writerShouldCheckpoint = false
        shared.condition.unlock()
    }

    /// Flushes the database file and then the WAL to disk.
    static func syncDatabaseAndWAL(_ connection: DatabaseQueue) throws {
        try connection.writeWithoutTransaction { db in
            let code = ResultCode(rawValue: sessiond_sync_database_and_wal(UnsafeMutableRawPointer(db.sqliteConnection)))
            if code != .SQLITE_OK { throw DatabaseError(resultCode: code, message: "sync of the database and WAL failed") }
        }
    }

    /// One passive checkpoint and the sync after it; asks the writer to finish when the WAL is due to start
    /// over. Returns whether to pass again at once.
    private static func pass(_ connection: DatabaseQueue, shared: Shared, catchUp: inout CatchUp) throws -> Bool {
        // Columns: busy, frames in the WAL, frames copied into the database.
        let row = try shared.checkpointing.withLock {
            try connection.writeWithoutTransaction { db in try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(PASSIVE)") }
        }
        let frames: Int = row?[1] ?? 0
        let copied: Int = row?[2] ?? 0
        // Synced also when the writer is asked next: what this pass leaves unsynced, the writer's checkpoint
        // syncs while every commit waits. Not past `writerLimitFrames`, where the writer checkpoints anyway.
        if copied > 0, frames < writerLimitFrames { try syncDatabaseAndWAL(connection) }
        guard frames >= restartFrames else { return false }
        if catchUp.passAgain(frames: frames) { return true }
        shared.condition.lock()
        shared.writerShouldCheckpoint = true
        shared.condition.unlock()
        return false
    }

    private static func run(connection: DatabaseQueue, shared: Shared, logger: Logger) {
        var connection: DatabaseQueue? = connection
        var lastWarning: Date?
        var catchUp = CatchUp()
        while true {
            shared.condition.lock()
            while !shared.committed, !shared.stopped { shared.condition.wait() }
            if shared.stopped {
                shared.condition.unlock()
                try? connection?.close()
                connection = nil
                shared.exited.signal()
                return
            }
            shared.committed = false
            // Once the writer has been asked, a pass here would only make its checkpoint fail with
            // `SQLITE_BUSY` (SQLite runs one checkpoint at a time), and put the WAL's restart off.
            let writerWillCheckpoint = shared.writerShouldCheckpoint
            shared.condition.unlock()
            if !writerWillCheckpoint {
                do {
                    if try pass(connection!, shared: shared, catchUp: &catchUp) { continue }
                } catch {
                    // A full disk or a busy lock: a later commit tries again, and the WAL keeps every commit
                    // meanwhile.
                    if lastWarning.map({ Date().timeIntervalSince($0) > 60 }) ?? true {
                        logger.warning("background checkpoint failed", metadata: ["error": "\(error)"])
                        lastWarning = Date()
                    }
                }
            }
            // Let commits accumulate for a while, unless stopped meanwhile.
            let deadline = Date().addingTimeInterval(interval)
            shared.condition.lock()
            while !shared.stopped, Date() < deadline { _ = shared.condition.wait(until: deadline) }
            shared.condition.unlock()
        }
    }
}
