import CSQLiteConfig
import Foundation
import GRDB
import Logging
import SessionProtocol

/// Who performs a store operation: the tenant every query is scoped to, and the actor named in the audit log.
public struct Caller: Sendable, Equatable {
    public var tenant: String
    public var actor: String

    public init(tenant: String, actor: String) {
        self.tenant = tenant
        self.actor = actor
    }
}

/// The time source of the store; tests advance a manual clock instead of sleeping.
public struct StoreClock: Sendable {
    public var now: @Sendable () -> Date

    public init(now: @escaping @Sendable () -> Date) {
        self.now = now
    }

    public static let system = StoreClock { Date() }
}

/// Why the store could not open a database file. The message says what to do.
public struct StoreOpenError: Error, CustomStringConvertible {
    public var description: String
}

/// The session registry on SQLite: a `DatabasePool` in WAL mode, a private migrator, and named
/// operations that keep the data's invariants.
///
/// Writes go through one ``WriteQueue`` (group commit); reads run on the pool's readers and never wait
/// for writes. Every operation is scoped to the caller's tenant.
public final class SessionDatabase: Sendable {
    let dbWriter: any DatabaseWriter
    let writes: WriteQueue
    /// Copies the WAL back in the background, when a second connection could open the file.
    let checkpointer: Checkpointer?
    let leaseWaiters = LeaseWaiters()
    public let configuration: StoreConfiguration
    let clock: StoreClock
    let logger: Logger
    /// The database file, or `nil` in memory.
    public let path: String?
    /// The newest migration applied to this database, read once it was migrated at open.
    public let schemaVersion: String

    private init(
        dbWriter: any DatabaseWriter, path: String?, configuration: StoreConfiguration, clock: StoreClock,
        logger: Logger, checkpointer: Checkpointer? = nil
    ) throws {
        self.dbWriter = dbWriter
        self.path = path
        self.configuration = configuration
        self.clock = clock
        self.logger = logger
        self.checkpointer = checkpointer
        self.writes = WriteQueue(writer: dbWriter, maxBatch: configuration.maxWriteBatch, checkpointer: checkpointer)

        let migrator = Schema.makeMigrator()
        let applied = try dbWriter.read { db in try migrator.appliedIdentifiers(db) }
        let unknown = applied.subtracting(Schema.migrationNames).sorted()
        if !unknown.isEmpty {
            throw StoreOpenError(
                description: """
                    the database\(path.map { " at \($0)" } ?? "") has a newer schema than this sessiond \
                    (unknown migrations: \(unknown.joined(separator: ", "))); run a newer sessiond or use another --db
                    """)
        }
        // A new file takes its whole schema at once; an existing one may take a while for its rows.
        let pending = Schema.migrationNames.filter { !applied.contains($0) }
        let logged = !applied.isEmpty && !pending.isEmpty
        let started = ContinuousClock.now
        if logged {
            logger.notice(
                "migrating the schema; sessiond listens once this is done",
                metadata: ["migrations": "\(pending.joined(separator: ", "))"])
        }
        try migrator.migrate(dbWriter)
        if logged { logger.notice("schema migrated", metadata: ["took": "\(ContinuousClock.now - started)"]) }
        schemaVersion = try dbWriter.read { db in try migrator.appliedMigrations(db).last ?? "none" }
    }

    /// Opens (creating if needed) the registry at `path`, in WAL mode, and applies pending migrations.
    ///
    /// - Throws: ``StoreOpenError`` with a clear message for a file that is not a database, is read-only,
    ///   is locked, or has a newer schema than this binary. It never replaces an existing file.
    public static func open(
        path: String, configuration: StoreConfiguration = StoreConfiguration(), clock: StoreClock = .system,
        logger: Logger = Logger(label: "sessiond.store")
    ) throws -> SessionDatabase {
        if !sqliteConfigured {
            logger.warning("SQLite's process-wide settings did not apply (it was initialized first); commits run slower")
        }
        let url = URL(fileURLWithPath: path)
        try? FileManager.default.createDirectory(
            at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        do {
            if FileManager.default.fileExists(atPath: path) { try checkExistingFile(path: path) }
            let pool = try DatabasePool(path: path, configuration: makeConfiguration(configuration))
            if configuration.synchronous == .full {
                // The pool resets `synchronous` to NORMAL when it turns WAL on, so apply FULL afterwards.
                try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
            }
            // Checkpoints move off the writer when a second connection can open the file; otherwise the
            // writer's commits keep doing them.
            var checkpointer: Checkpointer?
            do {
                checkpointer = try Checkpointer(
                    path: path, busyTimeout: TimeInterval(configuration.busyTimeout.milliseconds) / 1000, logger: logger)
                try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_autocheckpoint = 0") }
            } catch {
                checkpointer = nil
                logger.notice("checkpoints stay on the writer", metadata: ["error": "\(error)"])
            }
            return try SessionDatabase(
                dbWriter: pool, path: path, configuration: configuration, clock: clock, logger: logger,
                checkpointer: checkpointer)
        } catch let error as StoreOpenError {
            throw error
        } catch let error as DatabaseError {
            throw StoreOpenError(description: describeOpenFailure(error, path: path))
        }
    }

    /// Reads an existing file without writing to it, and refuses one that is another application's
    /// database or has a newer schema than this binary, before anything opens it for writing.
    private static func checkExistingFile(path: String) throws {
        var readOnly = Configuration()
        readOnly.readonly = true
        readOnly.busyMode = .timeout(5)
        let queue = try DatabaseQueue(path: path, configuration: readOnly)
        defer { try? queue.close() }
        let (tables, applied) = try queue.read { db -> ([String], Set<String>) in
            let tables = try String.fetchAll(
                db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
            let applied = tables.contains("grdb_migrations")
                ? Set(try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")) : []
            return (tables, applied)
        }
        if !tables.isEmpty, !tables.contains("grdb_migrations") {
            throw StoreOpenError(
                description: "\(path) is another application's SQLite database (tables: \(tables.prefix(5).joined(separator: ", "))), not a sessiond database; pass another --db")
        }
        let unknown = applied.subtracting(Schema.migrationNames).sorted()
        if !unknown.isEmpty {
            throw StoreOpenError(
                description: """
                    the database at \(path) has a newer schema than this sessiond (unknown migrations: \
                    \(unknown.joined(separator: ", "))); run a newer sessiond or use another --db
                    """)
        }
    }

    /// An in-memory registry with the same schema and configuration, for tests.
    public static func inMemory(
        configuration: StoreConfiguration = StoreConfiguration(), clock: StoreClock = .system,
        logger: Logger = Logger(label: "sessiond.store")
    ) throws -> SessionDatabase {
        let queue = try DatabaseQueue(configuration: makeConfiguration(configuration))
        return try SessionDatabase(
            dbWriter: queue, path: nil, configuration: configuration, clock: clock, logger: logger)
    }

    /// Whether the process-wide SQLite settings took effect (`CSQLiteConfig` applies them when the binary
    /// loads): memory statistics off (they took a global mutex around each of SQLite's allocations, about 230
    /// a turn; `sqlite3_memory_used` reads 0 from then on), and the page-cache layer.
    public static var sqliteConfigured: Bool { sessiond_sqlite_configured() == 1 }

    /// The one place that sets connection options.
    static func makeConfiguration(_ store: StoreConfiguration) -> Configuration {
        var config = Configuration()
        config.busyMode = .timeout(TimeInterval(store.busyTimeout.milliseconds) / 1000)
        config.foreignKeysEnabled = true
        config.maximumReaderCount = 8
        let maxPageCount = store.maxPageCount
        let writerCacheKiB = store.writerCacheMegabytes * 1024
        config.prepareDatabase { db in
            if let maxPageCount {
                try db.execute(sql: "PRAGMA max_page_count = \(maxPageCount)")
            }
            if !db.configuration.readonly {
                try db.execute(sql: "PRAGMA cache_size = -\(writerCacheKiB)")
                // A savepoint (a batch's fallback, see `WriteQueue`) and a statement that may fail halfway copy
                // each page they first change into a statement journal. SQLite keeps that journal in memory only
                // up to 64 KiB and then spills it to a temporary file: more write calls than the WAL itself took,
                // and a write that fails when the temporary directory is full. In memory it holds one
                // operation's pages, emptied at each RELEASE.
                try db.execute(sql: "PRAGMA temp_store = MEMORY")
            }
        }
        return config
    }

    private static func describeOpenFailure(_ error: DatabaseError, path: String) -> String {
        switch error.resultCode {
        case .SQLITE_NOTADB, .SQLITE_CORRUPT:
            "\(path) is not a sessiond database (or it is corrupt); move it aside or pass another --db"
        case .SQLITE_READONLY, .SQLITE_PERM:
            "\(path) is read-only; sessiond needs write access to the file and its directory"
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            "\(path) is locked by another process; stop it or pass another --db"
        case .SQLITE_CANTOPEN:
            "cannot open \(path): \(explainCantOpen(path: path))"
        case .SQLITE_FULL:
            "\(path): the disk is full"
        default:
            "cannot open \(path): \(error.message ?? "\(error.resultCode)")"
        }
    }

    /// Why SQLite could not open or create the file (or its -wal and -shm beside it), as far as the file
    /// system tells: a read-only mount, a missing directory, or one this user cannot write to.
    static func explainCantOpen(path: String) -> String {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var stats = statvfs()
        if statvfs(directory, &stats) == 0, stats.f_flag & UInt(ST_RDONLY) != 0 {
            return "the file system at \(directory) is mounted read-only; sessiond needs to write the file and its -wal and -shm files"
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            return "\(directory) does not exist or is not a directory, and could not be created"
        }
        if access(directory, W_OK) != 0 {
            return "\(directory) is not writable by this user; sessiond needs to create the -wal and -shm files beside the database"
        }
        return "check that the directory exists and is writable"
    }

    /// Runs a read on one of the pool's readers, off the caller's thread.
    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await dbWriter.read(body)
        } catch {
            throw StoreFault.map(error)
        }
    }

    /// Runs a write in the next group-commit transaction. SQLite's errors reach the caller as what they
    /// mean for it (`storage_full` for a full disk or the `max_page_count` cap), as for reads.
    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await writes.write(body)
        } catch {
            throw StoreFault.map(error)
        }
    }

    /// Ends every `acquire` that waits for a lease with `shutting_down`, now and from now on.
    public func stopWaiting() {
        leaseWaiters.stop()
    }

    /// Copies the WAL into the database file and truncates the WAL (on shutdown). It waits for a background
    /// checkpoint that is running, which SQLite would otherwise answer with `SQLITE_BUSY` at once.
    public func checkpoint() throws {
        guard dbWriter is DatabasePool else { return }
        let truncate = { try self.dbWriter.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) } }
        if let checkpointer { try checkpointer.excluding(truncate) } else { try truncate() }
    }

    /// Runs a raw read-only SQL check (for tests and diagnostics): `PRAGMA integrity_check` and the like.
    public func readValue<T: DatabaseValueConvertible & Sendable>(sql: String) async throws -> T? {
        try await read { db in try T.fetchOne(db, sql: sql) }
    }

    /// The names of the migrations this binary carries, in order.
    public static var migrationNames: [String] { Schema.migrationNames }

    /// The raw SQL of each embedded migration, keyed by name (tests compare it with `schema/`).
    public static var embeddedSchema: [String: String] {
        Dictionary(uniqueKeysWithValues: Schema.files.map { ($0.name, String(decoding: $0.sql, as: UTF8.self)) })
    }

    var nowMs: Int64 { Int64((clock.now().timeIntervalSince1970 * 1000).rounded()) }
}

extension Date {
    init(ms: Int64) {
        self.init(timeIntervalSince1970: Double(ms) / 1000)
    }
}
