import GRDB
import GRDBSQLite

/// The turn path's statements, bound and stepped straight through SQLite's C API.
///
/// GRDB's `execute(arguments:)` boxes every argument as a `DatabaseValue`, validates them, binds them, and
/// around each step checks for cancellation and aborted transactions, records the region read and
/// prepares transaction observers. On the writer that bookkeeping cost about a third as much as SQLite's
/// own work per turn. These statements are plain reads and writes inside a transaction the writer opened
/// through GRDB, on a connection without transaction observers, so none of it applies: values bind as a
/// pack, with no array or boxing, and a failure is GRDB's `DatabaseError`, as before. The writer still
/// checks after each operation that its transaction is alive.
///
/// Text keeps every byte both ways (``SQLBinding``, ``SQLColumn``): GRDB binds strings with length -1 and
/// reads them with `String(cString:)`, which cut a message at its first NUL character.
extension Statement {
    /// Binds `values` and runs the statement to its end.
    func run<each Value: SQLBinding>(_ values: repeat each Value) throws {
        let handle = try bind(repeat each values)
        defer { finish(handle) }
        var code = sqlite3_step(handle)
        while code == SQLITE_ROW { code = sqlite3_step(handle) }
        guard code == SQLITE_DONE else { throw failure(code) }
    }

    /// Binds `values` and reads the first row with `read`, or returns `nil` when there is none.
    func first<T, each Value: SQLBinding>(
        _ values: repeat each Value, read: (SQLiteStatement) throws -> T
    ) throws -> T? {
        let handle = try bind(repeat each values)
        defer { finish(handle) }
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return try read(handle)
        case SQLITE_DONE: return nil
        case let code: throw failure(code)
        }
    }

    /// Binds `values` and reads every row with `read`.
    func all<T, each Value: SQLBinding>(
        _ values: repeat each Value, read: (SQLiteStatement) throws -> T
    ) throws -> [T] {
        let handle = try bind(repeat each values)
        defer { finish(handle) }
        var rows: [T] = []
        while true {
            switch sqlite3_step(handle) {
            case SQLITE_ROW: rows.append(try read(handle))
            case SQLITE_DONE: return rows
            case let code: throw failure(code)
            }
        }
    }

    private func bind<each Value: SQLBinding>(_ values: repeat each Value) throws -> SQLiteStatement {
        let handle = sqliteStatement
        sqlite3_reset(handle)
        var index: CInt = 0
        for value in repeat each values {
            index += 1
            let code = value.bind(to: handle, at: index)
            guard code == SQLITE_OK else {
                defer { finish(handle) }
                throw failure(code)
            }
        }
        let expected = sqlite3_bind_parameter_count(handle)
        guard index == expected else {
            finish(handle)
            throw DatabaseError(resultCode: .SQLITE_MISUSE, message: "\(index) values for \(expected) parameters", sql: sql)
        }
        return handle
    }

    /// Resets the statement and drops its values: SQLite keeps a copy of each bound text until then, and a
    /// cached statement would otherwise hold the last message it inserted.
    private func finish(_ handle: SQLiteStatement) {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    private func failure(_ code: CInt) -> DatabaseError {
        DatabaseError(
            resultCode: ResultCode(rawValue: code),
            message: String(cString: sqlite3_errmsg(sqlite3_db_handle(sqliteStatement))), sql: sql)
    }
}

/// A value the direct path binds to a statement parameter.
protocol SQLBinding {
    /// Binds the value at the 1-based `index`, returning SQLite's result code.
    func bind(to statement: SQLiteStatement, at index: CInt) -> CInt
}

/// A value the direct path reads from a result column that is not NULL.
protocol SQLColumn {
    init(_ statement: SQLiteStatement, column index: CInt)
}

/// The value of column `index` of the current row, or `nil` for NULL.
func sqlColumn<Value: SQLColumn>(_ statement: SQLiteStatement, _ index: CInt) -> Value? {
    sqlite3_column_type(statement, index) == SQLITE_NULL ? nil : Value(statement, column: index)
}

/// Tells SQLite to copy the bytes it is given before the call returns.
private let transient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)

extension String: SQLBinding, SQLColumn {
    func bind(to statement: SQLiteStatement, at index: CInt) -> CInt {
        var text = self
        return text.withUTF8 { bytes in
            // An empty buffer may have no address, and a null pointer would bind NULL instead of ''.
            guard let start = bytes.baseAddress else { return sqlite3_bind_text(statement, index, "", 0, transient) }
            return sqlite3_bind_text(statement, index, UnsafeRawPointer(start), CInt(bytes.count), transient)
        }
    }

    init(_ statement: SQLiteStatement, column index: CInt) {
        // Text first, then its length: the order SQLite documents.
        guard let text = sqlite3_column_text(statement, index) else {
            self = ""
            return
        }
        self = String(decoding: UnsafeBufferPointer(start: text, count: Int(sqlite3_column_bytes(statement, index))), as: UTF8.self)
    }
}

extension Int64: SQLBinding, SQLColumn {
    func bind(to statement: SQLiteStatement, at index: CInt) -> CInt { sqlite3_bind_int64(statement, index, self) }
    init(_ statement: SQLiteStatement, column index: CInt) { self = sqlite3_column_int64(statement, index) }
}

extension Int: SQLBinding, SQLColumn {
    func bind(to statement: SQLiteStatement, at index: CInt) -> CInt { sqlite3_bind_int64(statement, index, Int64(self)) }
    init(_ statement: SQLiteStatement, column index: CInt) { self = Int(sqlite3_column_int64(statement, index)) }
}

extension Double: SQLBinding, SQLColumn {
    func bind(to statement: SQLiteStatement, at index: CInt) -> CInt { sqlite3_bind_double(statement, index, self) }
    init(_ statement: SQLiteStatement, column index: CInt) { self = sqlite3_column_double(statement, index) }
}

extension Bool: SQLBinding, SQLColumn {
    func bind(to statement: SQLiteStatement, at index: CInt) -> CInt { sqlite3_bind_int64(statement, index, self ? 1 : 0) }
    init(_ statement: SQLiteStatement, column index: CInt) { self = sqlite3_column_int64(statement, index) != 0 }
}

extension Optional: SQLBinding where Wrapped: SQLBinding {
    func bind(to statement: SQLiteStatement, at index: CInt) -> CInt {
        switch self {
        case .some(let value): value.bind(to: statement, at: index)
        case .none: sqlite3_bind_null(statement, index)
        }
    }
}
