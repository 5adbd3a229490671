import CSQLiteConfig
import Foundation
import GRDB
import Testing

/// The VFS of CSQLiteConfig writes a commit's WAL frames in one call, and before another connection or a
/// crash image can see the commit.
@Suite struct WALBufferTests {
    /// A WAL-mode database file in a fresh directory, with table `t`, and a second connection to read it.
    private struct Database {
        let directory: URL
        let writer: DatabaseQueue
        let reader: DatabaseQueue

        init() throws {
            directory = try makeTemporaryDirectory()
            let path = directory.appendingPathComponent("db.sqlite").path
            var configuration = Configuration()
            configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
            writer = try DatabaseQueue(path: path, configuration: configuration)
            try writer.writeWithoutTransaction { db in
                _ = try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL")
                // Only this test's commits write the WAL.
                try db.execute(sql: "PRAGMA wal_autocheckpoint = 0")
                try db.execute(sql: "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            }
            reader = try DatabaseQueue(path: path, configuration: configuration)
        }

        func counts() throws -> sessiond_wal_buffer_counts {
            try writer.writeWithoutTransaction { db in
                var counts = sessiond_wal_buffer_counts()
                try #require(sessiond_wal_buffer_counts_of(UnsafeMutableRawPointer(db.sqliteConnection), &counts) == 1)
                return counts
            }
        }

        /// Inserts `count` rows of 1 KB in one transaction.
        func insertRows(_ count: Int) throws {
            try writer.write { db in
                for _ in 0..<count { try db.execute(sql: "INSERT INTO t(v) VALUES (hex(randomblob(500)))") }
            }
        }

        /// Runs `body` in one transaction with a page cache of 5 pages, so that it writes pages into the WAL
        /// before it ends, and ends it with `completion`.
        func spilling(
            _ completion: GRDB.Database.TransactionCompletion, _ body: (GRDB.Database) throws -> Void
        ) throws {
            try writer.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA cache_size = 5")
                defer { try? db.execute(sql: "PRAGMA cache_size = -2000") }
                try db.inTransaction {
                    try body(db)
                    return completion
                }
            }
        }

        /// Makes the writer's WAL writes fail with `SQLITE_FULL` once `afterWrites` more have been made; `nil`
        /// ends the failures.
        func failWrites(after afterWrites: Int?) throws {
            try writer.writeWithoutTransaction { db in
                let handle = UnsafeMutableRawPointer(db.sqliteConnection)
                try #require(sessiond_wal_buffer_fail_writes(handle, Int64(afterWrites ?? -1)) == 1)
            }
        }

        func count(_ queue: DatabaseQueue, where condition: String = "1") throws -> Int? {
            try queue.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM t WHERE \(condition)") }
        }

        /// Opens a copy of the database file and its WAL, without the shared memory: what a crash would leave.
        func crashImage() throws -> DatabaseQueue {
            let image = directory.appendingPathComponent("image.sqlite").path
            try FileManager.default.copyItem(atPath: directory.appendingPathComponent("db.sqlite").path, toPath: image)
            try FileManager.default.copyItem(
                atPath: directory.appendingPathComponent("db.sqlite-wal").path, toPath: image + "-wal")
            return try DatabaseQueue(path: image)
        }
    }

    @Test func aCommitsFramesGoOutInAFewWritesAndAnotherConnectionReadsThemAtOnce() throws {
        let database = try Database()
        defer { try? FileManager.default.removeItem(at: database.directory) }
        var before = try database.counts()
        for round in 1...3 {
            // 300 rows of 1 KB: about 80 pages, and so 80 frames of 4 KiB.
            try database.insertRows(300)
            let after = try database.counts()
            let asked = after.writesAsked - before.writesAsked
            let made = after.writesMade - before.writesMade
            // SQLite asks for two writes per frame; about 330 KB go out in parts of at most 30 frames.
            #expect(asked >= 150)
            #expect(made >= 1 && made <= 4, "round \(round): \(made) writes for \(asked) asked")
            #expect(try database.reader.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM t") } == 300 * round)
            before = after
        }
        #expect(try database.crashImage().read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM t") } == 900)
    }

    /// A transaction larger than its page cache writes frames before it commits, then rewrites some of them
    /// in place and rewrites the checksums of the frames after the first rewritten one at its commit: the
    /// commit frame's header is then the last write, with no page after it.
    @Test func aTransactionThatSpillsPagesIsWholeForReadersAndInACrashImage() throws {
        let database = try Database()
        defer { try? FileManager.default.removeItem(at: database.directory) }
        try database.insertRows(900)
        let before = try database.counts()
        try database.spilling(.commit) { db in
            for _ in 0..<20 { try db.execute(sql: "UPDATE t SET v = hex(randomblob(500)) WHERE k % 3 = 0") }
            try db.execute(sql: "UPDATE t SET v = 'last' WHERE k = 7")
        }
        #expect(try database.counts().rewrites > before.rewrites, "the transaction rewrote no frame in place")
        let query = "SELECT count(*) FROM t WHERE v = 'last'"
        #expect(try database.reader.read { db in try Int.fetchOne(db, sql: query) } == 1)
        let image = try database.crashImage()
        #expect(try image.read { db in try Int.fetchOne(db, sql: query) } == 1)
        #expect(try image.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") } == "ok")
    }

    /// A full disk in the middle of writing a commit's frames out: the commit fails with `SQLITE_FULL`, no
    /// connection sees any of it, and the next commit after the disk has room again is whole, live and in
    /// a crash image.
    @Test(arguments: [0, 1, 2])
    func aWriteThatFailsFailsItsCommitAndTheNextOneIsWhole(afterWrites: Int) throws {
        let database = try Database()
        defer { try? FileManager.default.removeItem(at: database.directory) }
        // 300 rows of 1 KB: about 330 KB, which go out in three parts.
        func insertRows() throws { try database.insertRows(300) }
        try insertRows()
        try database.failWrites(after: afterWrites)
        let failure = #expect(throws: DatabaseError.self) { try insertRows() }
        #expect(failure?.resultCode == .SQLITE_FULL)
        #expect(try database.count(database.reader) == 300)
        #expect(try database.count(database.writer) == 300)

        try database.failWrites(after: nil)
        try insertRows()
        #expect(try database.count(database.reader) == 600)
        let image = try database.crashImage()
        #expect(try database.count(image) == 600)
        #expect(try image.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") } == "ok")
    }

    /// A full disk while a transaction spills pages before its commit: the transaction fails and leaves the
    /// table as it was; run again with room on the disk, it commits whole.
    @Test func aTransactionThatSpillsIntoAFullDiskFailsWholeAndCommitsWholeLater() throws {
        let database = try Database()
        defer { try? FileManager.default.removeItem(at: database.directory) }
        try database.insertRows(900)
        func updateEverything() throws {
            try database.spilling(.commit) { db in
                for _ in 0..<20 { try db.execute(sql: "UPDATE t SET v = hex(randomblob(500)) WHERE k % 3 = 0") }
                try db.execute(sql: "UPDATE t SET v = 'last' WHERE k = 7")
            }
        }
        let before = try database.counts()
        try database.failWrites(after: 3)
        #expect(throws: DatabaseError.self) { try updateEverything() }
        #expect(try database.counts().writesMade - before.writesMade == 3, "the failure came before the spill")
        #expect(try database.count(database.reader, where: "v = 'last'") == 0)
        #expect(try database.count(database.writer, where: "v = 'last'") == 0)

        try database.failWrites(after: nil)
        try updateEverything()
        #expect(try database.count(database.reader, where: "v = 'last'") == 1)
        let image = try database.crashImage()
        #expect(try database.count(image, where: "v = 'last'") == 1)
        #expect(try database.count(image) == 900)
        #expect(try image.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") } == "ok")
    }

    /// A transaction that spilled pages and rolled back leaves frames past the WAL's end; the next commit
    /// writes over them, and must still be on disk before other connections or a crash image look.
    @Test func aCommitOverFramesOfARolledBackTransactionIsWholeForReadersAndInACrashImage() throws {
        let database = try Database()
        defer { try? FileManager.default.removeItem(at: database.directory) }
        try database.insertRows(900)
        let before = try database.counts()
        try database.spilling(.rollback) { db in
            for _ in 0..<5 { try db.execute(sql: "UPDATE t SET v = hex(randomblob(500))") }
        }
        #expect(try database.counts().writesMade > before.writesMade, "the rolled-back transaction wrote no frame")
        for round in 1...3 {
            try database.writer.write { db in try db.execute(sql: "UPDATE t SET v = 'round \(round)' WHERE k = 7") }
            #expect(try database.count(database.reader, where: "v = 'round \(round)'") == 1)
        }
        let image = try database.crashImage()
        #expect(try database.count(image, where: "v = 'round 3'") == 1)
        #expect(try image.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") } == "ok")
    }

    /// Another connection started the WAL over and wrote less than this handle had written: this handle's
    /// next commit lands on bytes it wrote before the restart, and must be on disk before anyone looks.
    @Test func aCommitAfterAnotherConnectionRestartedTheWALIsWholeForReadersAndInACrashImage() throws {
        let database = try Database()
        defer { try? FileManager.default.removeItem(at: database.directory) }
        try database.insertRows(300)
        try database.reader.writeWithoutTransaction { db in
            let checkpoint = try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(RESTART)")
            try #require(checkpoint?[0] as Int? == 0, "the checkpoint was busy")
            try db.execute(sql: "INSERT INTO t(v) VALUES ('from the other connection')")
        }
        for round in 1...3 {
            try database.writer.write { db in try db.execute(sql: "UPDATE t SET v = 'round \(round)' WHERE k = 7") }
            #expect(try database.count(database.reader, where: "v = 'round \(round)'") == 1)
        }
        let image = try database.crashImage()
        #expect(try database.count(image, where: "v = 'round 3'") == 1)
        #expect(try database.count(image) == 301)
        #expect(try image.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") } == "ok")
    }
}
