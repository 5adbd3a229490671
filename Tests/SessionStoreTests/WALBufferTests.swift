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
            try database.writer.write { db in
                for _ in 0..<300 { try db.execute(sql: "INSERT INTO t(v) VALUES (hex(randomblob(500)))") }
            }
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
        try database.writer.write { db in
            for _ in 0..<900 { try db.execute(sql: "INSERT INTO t(v) VALUES (hex(randomblob(500)))") }
        }
        let before = try database.counts()
        try database.writer.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA cache_size = 5")
            try db.inTransaction {
                for _ in 0..<20 { try db.execute(sql: "UPDATE t SET v = hex(randomblob(500)) WHERE k % 3 = 0") }
                try db.execute(sql: "UPDATE t SET v = 'last' WHERE k = 7")
                return .commit
            }
        }
        #expect(try database.counts().rewrites > before.rewrites, "the transaction rewrote no frame in place")
        let query = "SELECT count(*) FROM t WHERE v = 'last'"
        #expect(try database.reader.read { db in try Int.fetchOne(db, sql: query) } == 1)
        let image = try database.crashImage()
        #expect(try image.read { db in try Int.fetchOne(db, sql: query) } == 1)
        #expect(try image.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") } == "ok")
    }
}
