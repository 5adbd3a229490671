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
    /// Each statement with the ``BuiltSQL`` whose address is its key, if any, kept alive so that no other
    /// object can take that address.
    private var statements: [UnsafeRawPointer: (statement: Statement, owner: BuiltSQL?)] = [:]

    init(_ connection: Database) {
        self.connection = connection
    }

    fileprivate func statement(
        at key: UnsafeRawPointer, in db: Database, owner: BuiltSQL?, sql: () -> String
    ) throws -> Statement? {
        guard db === connection else { return nil }
        if let entry = statements[key] { return entry.statement }
        let statement = try db.cachedStatement(sql: sql())
        statements[key] = (statement, owner)
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
        try statement(at: UnsafeRawPointer(sql.utf8Start), owner: nil) { sql.description }
    }

    /// The prepared statement for `sql`, found as a literal's is.
    func statement(_ sql: BuiltSQL) throws -> Statement {
        try statement(at: UnsafeRawPointer(Unmanaged.passUnretained(sql).toOpaque()), owner: sql) { sql.text }
    }

    private func statement(at key: UnsafeRawPointer, owner: BuiltSQL?, sql: () -> String) throws -> Statement {
        if let statement = try WriterStatements.current?.statement(at: key, in: self, owner: owner, sql: sql) {
            return statement
        }
        return try cachedStatement(sql: sql())
    }
}
