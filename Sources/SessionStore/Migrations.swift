import GRDB

/// The schema: the numbered SQL files of `schema/`, embedded in the binary at build time.
///
/// Every file in `schema/` must be listed here, in order (a test checks it). A released file is never
/// edited; a change is a new file.
enum Schema {
    static let files: [(name: String, sql: [UInt8])] = [
        ("0001_initial", PackageResources._001_initial_sql),
        ("0002_turn_indexes", PackageResources._002_turn_indexes_sql),
        ("0003_plain_checks", PackageResources._003_plain_checks_sql),
        ("0004_audit_chain", PackageResources._004_audit_chain_sql),
        ("0005_expiry_bound", PackageResources._005_expiry_bound_sql),
        ("0006_linked_chain", PackageResources._006_linked_chain_sql),
    ]

    /// The names of the migrations this binary knows, in order.
    static var migrationNames: [String] { files.map(\.name) }

    static func makeMigrator() -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        for file in files {
            let sql = String(decoding: file.sql, as: UTF8.self)
            migrator.registerMigration(file.name) { db in
                try db.execute(sql: sql)
            }
        }
        return migrator
    }
}
