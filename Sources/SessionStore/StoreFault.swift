import GRDB
import SessionProtocol

/// Maps storage failures to the errors the wire knows; unexpected ones become `internal`.
enum StoreFault: Error {
    case notApplied
    case transactionAborted

    static func map(_ error: any Error) -> any Error {
        if error is SessionError { return error }
        if let error = error as? DatabaseError {
            switch error.resultCode {
            case .SQLITE_FULL:
                return SessionError(.storageFull, "the database is full; reads keep working")
            case .SQLITE_BUSY, .SQLITE_LOCKED:
                return SessionError(.unavailable, "the database is locked by another process")
            case .SQLITE_READONLY:
                return SessionError(.unavailable, "the database is read-only")
            case .SQLITE_IOERR, .SQLITE_CORRUPT, .SQLITE_CANTOPEN:
                return SessionError(.unavailable, "the database cannot be used: \(error.resultCode)")
            case .SQLITE_CONSTRAINT:
                return SessionError(.conflict, "the change conflicts with stored data")
            default:
                return error
            }
        }
        if case StoreFault.transactionAborted = error {
            return SessionError(.unavailable, "the write transaction was rolled back by the database")
        }
        return error
    }
}
