import GRDB

/// The writer connection's prepared statements, found by the address of their SQL: a literal's, or a
/// ``BuiltSQL``'s.
///
/// GRDB's `cachedStatement(sql:)` hashes the whole SQL text on every lookup: about 1,700 instructions for a
/// turn's typical statement, a dozen times a turn, all on the single writer thread. A literal's address is
/// fixed for the life of the process, so it identifies the text as well.
///
/// ``WriteQueue`` binds one to its connection for the writer thread's whole life (`current`, a task-local
/// value, which a thread outside any task keeps as its own). Elsewhere, and for any other connection,
/// ``GRDB/Database/statement(_:)`` uses GRDB's cache.
final class WriterStatements: @unchecked Sendable {
    // Unchecked: only the writer thread, which owns the connection, ever reads or changes it.
    @TaskLocal static var current: WriterStatements?

    private unowned(unsafe) let connection: Database
    private var statements: [UnsafeRawPointer: Statement] = [:]
    /// The ``BuiltSQL`` objects whose addresses are keys, kept alive so that no other object takes one.
    private var keptAlive: [BuiltSQL] = []

    init(_ connection: Database) {
        self.connection = connection
    }

    fileprivate func statement(
        at key: UnsafeRawPointer, in db: Database, owner: BuiltSQL? = nil, sql: @autoclosure () -> String
    ) throws -> Statement? {
        guard db === connection else { return nil }
        if let statement = statements[key] { return statement }
        let statement = try db.cachedStatement(sql: sql())
        statements[key] = statement
        if let owner { keptAlive.append(owner) }
        return statement
    }
}

/// SQL text built once at run time (it names a list of columns, say), which the writer's statements find by
/// this object's address. Meant for a `static let`: the writer keeps every one it has seen alive.
final class BuiltSQL: Sendable {
    let text: String

    init(_ text: String) {
        self.text = text
    }
}

extension Database {
    /// The prepared statement for `sql`, from the writer's own cache on the writer's connection, else from
    /// GRDB's.
    func statement(_ sql: StaticString) throws -> Statement {
        let key = UnsafeRawPointer(sql.utf8Start)
        if let statement = try WriterStatements.current?.statement(at: key, in: self, sql: sql.description) {
            return statement
        }
        return try cachedStatement(sql: sql.description)
    }

    /// The prepared statement for `sql`, found as a literal's is.
    func statement(_ sql: BuiltSQL) throws -> Statement {
        let key = UnsafeRawPointer(Unmanaged.passUnretained(sql).toOpaque())
        if let statement = try WriterStatements.current?.statement(at: key, in: self, owner: sql, sql: sql.text) {
            return statement
        }
        return try cachedStatement(sql: sql.text)
    }
}
