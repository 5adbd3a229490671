import GRDB

/// The writer connection's prepared statements, found by the address of their SQL literal.
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

    init(_ connection: Database) {
        self.connection = connection
    }

    fileprivate func statement(_ sql: StaticString, in db: Database) throws -> Statement? {
        guard db === connection else { return nil }
        let key = UnsafeRawPointer(sql.utf8Start)
        if let statement = statements[key] { return statement }
        let statement = try db.cachedStatement(sql: sql.description)
        statements[key] = statement
        return statement
    }
}

extension Database {
    /// The prepared statement for `sql`, from the writer's own cache on the writer's connection, else from
    /// GRDB's.
    func statement(_ sql: StaticString) throws -> Statement {
        if let statement = try WriterStatements.current?.statement(sql, in: self) { return statement }
        return try cachedStatement(sql: sql.description)
    }
}
