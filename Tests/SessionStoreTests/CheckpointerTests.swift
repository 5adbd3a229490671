import Foundation
import GRDB
import Testing

@testable import SessionStore

/// The background checkpointer's part in keeping the writer's own checkpoint short.
@Suite struct CheckpointerTests {
    private typealias CatchUp = Checkpointer.CatchUp

    /// Its answers after passes over WALs of these sizes, in order.
    private func decisions(_ frames: [Int]) -> [Bool] {
        var catchUp = CatchUp()
        return frames.map { catchUp.passAgain(frames: $0) }
    }

    /// It passes again while many frames arrived during its last pass, and asks the writer once few did.
    @Test func catchUpPassesAgainUntilFewFramesArrive() {
        let settled = CatchUp.settledFrames
        #expect(decisions([1_000, 1_000 + settled + 1, 1_000 + 2 * settled + 1]) == [true, true, false])
        // Asking the writer starts over: the next WAL counts from its beginning.
        #expect(decisions([1_000, 1_000 + settled, 900]) == [true, false, true])
    }

    /// Passes that keep gaining still hand the WAL to the writer after `maxPasses`.
    @Test func catchUpStopsAfterItsPasses() {
        // Each pass sees 10 frames fewer arrive than the one before, never few enough.
        var frames = 0
        let sizes = (0...CatchUp.maxPasses).map { pass in
            frames += CatchUp.settledFrames + 100 - pass * 10
            return frames
        }
        #expect(sizes.last! < CatchUp.maxFrames)
        #expect(decisions(sizes) == Array(repeating: true, count: CatchUp.maxPasses) + [false])
    }

    /// A write rate the passes do not gain on (as many frames arrive as during the pass before) goes to the
    /// writer at once.
    @Test func catchUpStopsWhenAPassGainsNothing() {
        #expect(decisions([1_000, 1_600, 2_200]) == [true, true, false])
        #expect(decisions([1_000, 1_800, 2_500, 3_200]) == [true, true, true, false])
    }

    /// A WAL at its size limit goes to the writer, however much the passes still gain.
    @Test func catchUpHandsALargeWALToTheWriter() {
        // Below the writer's own limit, every pass syncs what it copied.
        #expect(CatchUp.maxFrames < Checkpointer.writerLimitFrames)
        #expect(decisions([CatchUp.maxFrames]) == [false])
        let start = CatchUp.maxFrames - 1_000
        #expect(decisions([start, CatchUp.maxFrames - 1]) == [true, true])
        #expect(decisions([start, CatchUp.maxFrames]) == [true, false])
    }

    /// A WAL that started over between two passes (fewer frames than last time) counts from its beginning.
    @Test func catchUpCountsARestartedWALFromItsBeginning() {
        #expect(decisions([3_000, 1_200, 1_300]) == [true, true, false])
    }

    /// The sync goes through SQLite's own handles of the database file and its WAL, and says so when there is no file.
    @Test func theDatabaseAndWALAreSyncedThroughSQLitesHandles() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let onDisk = try DatabaseQueue(path: directory.appendingPathComponent("sync.sqlite").path)
        try onDisk.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA journal_mode = WAL") }
        try onDisk.write { db in try db.execute(sql: "CREATE TABLE t(x); INSERT INTO t VALUES (1)") }
        try Checkpointer.syncDatabaseAndWAL(onDisk)
        #expect(throws: DatabaseError.self) { try Checkpointer.syncDatabaseAndWAL(try DatabaseQueue()) }
    }
}
