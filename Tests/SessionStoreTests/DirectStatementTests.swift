import Foundation
import GRDB
import GRDBSQLite
import Testing

@testable import SessionStore

@Suite struct DirectStatementTests {
    private func makeQueue() throws -> DatabaseQueue {
        let queue = try DatabaseQueue()
        try queue.write { db in
            try db.execute(sql: "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, score REAL, flag INTEGER, note TEXT)")
        }
        return queue
    }

    @Test func valuesOfEveryKindBindAndReadBack() throws {
        let queue = try makeQueue()
        try queue.write { db in
            let insert = try db.cachedStatement(sql: "INSERT INTO t(id, name, score, flag, note) VALUES (?, ?, ?, ?, ?)")
            try insert.run(Int64(1), "ünï\u{0}code", 2.5, true, String?.none)
            try insert.run(2, "b", Double?.none, false, "n")
            // The statement lets go of its values once it ran: a cached one keeps no copy of the last text.
            let expanded = try #require(sqlite3_expanded_sql(insert.sqliteStatement))
            defer { sqlite3_free(expanded) }
            #expect(String(cString: expanded) == "INSERT INTO t(id, name, score, flag, note) VALUES (NULL, NULL, NULL, NULL, NULL)")
            let select = try db.cachedStatement(sql: "SELECT name, score, flag, note FROM t WHERE id = ?")
            let first = try select.first(Int64(1)) { statement in
                (sqlColumn(statement, 0) as String?, sqlColumn(statement, 1) as Double?, sqlColumn(statement, 2) as Bool?,
                 sqlColumn(statement, 3) as String?)
            }
            #expect(first?.0 == "ünï\u{0}code" && first?.1 == 2.5 && first?.2 == true && first?.3 == nil)
            // The text keeps its NUL in the file, not only on the way back.
            #expect(try Int.fetchOne(db, sql: "SELECT length(CAST(name AS BLOB)) FROM t WHERE id = 1") == "ünï\u{0}code".utf8.count)
            #expect(try select.first(Int64(3)) { _ in 1 } == nil)
            let names = try db.cachedStatement(sql: "SELECT name FROM t WHERE id >= ? ORDER BY id")
                .all(1) { String($0, column: 0) }
            #expect(names == ["ünï\u{0}code", "b"])
            #expect(try String.fetchAll(db, sql: "SELECT name FROM t WHERE id = 2") == ["b"])
            try insert.run(3, "", 0.0, false, "")
            #expect(try Row.fetchOne(db, sql: "SELECT name, note FROM t WHERE id = 3") == ["name": "", "note": ""])
            #expect(try Row.fetchOne(db, sql: "SELECT * FROM t WHERE id = 2") == ["id": 2, "name": "b", "score": nil, "flag": 0, "note": "n"])
        }
    }

    @Test func failuresAreDatabaseErrorsAndTheStatementStaysUsable() throws {
        let queue = try makeQueue()
        try queue.write { db in
            let insert = try db.cachedStatement(sql: "INSERT INTO t(name) VALUES (?)")
            try insert.run("a")
            #expect {
                try insert.run("a")
            } throws: { error in
                (error as? DatabaseError)?.resultCode == .SQLITE_CONSTRAINT
                    && (error as? DatabaseError)?.message?.contains("UNIQUE") == true
                    && (error as? DatabaseError)?.sql == "INSERT INTO t(name) VALUES (?)"
            }
            try insert.run("b")
            #expect {
                try insert.run("c", "d")
            } throws: { error in
                (error as? DatabaseError)?.resultCode == .SQLITE_RANGE
            }
            #expect {
                try insert.run()
            } throws: { error in
                (error as? DatabaseError)?.resultCode == .SQLITE_MISUSE
                    && (error as? DatabaseError)?.message == "0 values for 1 parameters"
            }
            #expect(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t") == 2)
            #expect(db.isInsideTransaction)
        }
    }
    /// The writer's statements are its connection's own, found again by their literal; any other connection
    /// gets statements of its own from GRDB's cache, even on the writer's thread.
    @Test func writerStatementsServeOnlyTheirConnection() throws {
        let byName = BuiltSQL("SELECT id FROM t WHERE name = ?")
        let writer = try makeQueue()
        let other = try makeQueue()
        let statements = writer.writeWithoutTransaction { db in WriterStatements(db) }
        try WriterStatements.$current.withValue(statements) {
            try writer.write { db in
                let first = try db.statement("SELECT name FROM t WHERE id = ?")
                #expect(try db.statement("SELECT name FROM t WHERE id = ?") === first)
                #expect(sqlite3_db_handle(first.sqliteStatement) == db.sqliteConnection)
                try db.statement("INSERT INTO t(id, name) VALUES (?, ?)").run(Int64(1), "w")
                // Built SQL is found by its object, which the cache keeps alive: no later object can take
                // its address and be served its statement.
                let built = try db.statement(byName)
                #expect(try db.statement(byName) === built)
                #expect(try built.first("w") { sqlColumn($0, 0) as Int64? } == 1)
                weak var dropped: BuiltSQL?
                do {
                    let temporary = BuiltSQL("SELECT name FROM t WHERE id = ?")
                    dropped = temporary
                    #expect(try db.statement(temporary) === first)
                }
                #expect(dropped != nil)
            }
            try other.write { db in
                let statement = try db.statement("SELECT name FROM t WHERE id = ?")
                #expect(sqlite3_db_handle(statement.sqliteStatement) == db.sqliteConnection)
                #expect(try statement.first(Int64(1)) { sqlColumn($0, 0) as String? } == nil)
                let built = try db.statement(byName)
                #expect(sqlite3_db_handle(built.sqliteStatement) == db.sqliteConnection)
                #expect(try built.first("w") { sqlColumn($0, 0) as Int64? } == nil)
            }
        }
        #expect(try writer.read { db in try String.fetchOne(db, sql: "SELECT name FROM t WHERE id = 1") } == "w")
    }
}

@Suite struct TextIntegrityTests {
    /// A NUL character is valid JSON text; the fields that take free text store and return it whole.
    @Test func freeTextWithNULCharactersSurvivesATurn() async throws {
        let store = try makeStore()
        let content = "before\u{0}after ünïcode"
        let acquired = try await store.acquire(.init(key: "k", cwd: "/tmp/a\u{0}b", holder: "h\u{0}1"), caller: alice)
        #expect(acquired.session.cwd == "/tmp/a\u{0}b")
        #expect(acquired.lease.holder == "h\u{0}1")
        _ = try await store.complete(
            .init(
                sessionId: acquired.session.id, lease: acquired.lease.proof, outcome: .resumeFailed,
                reason: "gone\u{0}away", messages: [.init(role: .user, content: content), .init(role: .assistant, content: "")]),
            caller: alice)
        let session = try await store.get(.init(sessionId: acquired.session.id), caller: alice)
        #expect(session.cwd == "/tmp/a\u{0}b")
        #expect(session.lastFailureReason == "gone\u{0}away")
        #expect(try await store.stats(caller: alice).topFailureReasons.map(\.reason) == ["gone\u{0}away"])
        let messages = try await store.listMessages(.init(sessionId: acquired.session.id, tail: 5), caller: alice)
        #expect(messages.messages.map(\.content) == [content, ""])
        let page = try await store.listMessages(.init(sessionId: acquired.session.id), caller: alice)
        #expect(page.messages.map(\.content) == [content, ""])
    }

}
