import Foundation

/// The store's policies and limits. Every value has a production default.
public struct StoreConfiguration: Sendable {
    /// How durable a commit is. `normal` survives a crash of the process; `full` also survives power loss.
    public enum Synchronous: String, Sendable, CaseIterable {
        case normal = "NORMAL"
        case full = "FULL"
    }

    /// Idle time after which a session expires and the next turn starts fresh.
    public var defaultTTL: Duration = .seconds(24 * 3600)
    /// Upper bound for a session's idle TTL.
    public var maxTTL: Duration = .seconds(365 * 24 * 3600)
    /// Lease duration when the caller names none.
    public var defaultLease: Duration = .seconds(600)
    /// Upper bound for one lease grant or renewal.
    public var maxLease: Duration = .seconds(24 * 3600)
    /// Consecutive resume failures after which a session becomes `non_resumable`.
    public var maxConsecutiveFailures = 3
    /// How long expired and closed sessions are kept (counted from their expiry) before purging.
    public var retention: Duration = .seconds(30 * 24 * 3600)
    /// How long audit rows are kept.
    public var auditRetention: Duration = .seconds(90 * 24 * 3600)
    /// Sessions per tenant; creating one more evicts the idle session closest to expiry (dormant ones first).
    public var maxSessionsPerTenant = 100_000
    /// Transcript bytes kept per session, over all its CLI session ids.
    public var maxTranscriptBytesPerSession = 64 * 1024 * 1024
    /// Limits on caller-supplied strings.
    public var maxKeyBytes = 1024
    public var maxMessageBytes = 4 * 1024 * 1024
    public var maxMetadataBytes = 64 * 1024
    /// Rows touched per sweeper transaction, so that it never holds the write lock for long.
    public var sweepBatchSize = 500
    /// Operations coalesced into one write transaction at most (group commit).
    public var maxWriteBatch = 256
    /// How long a connection waits for a lock held by another process.
    public var busyTimeout: Duration = .seconds(5)
    public var synchronous: Synchronous = .normal
    /// Caps the database size in pages (`PRAGMA max_page_count`); `nil` leaves SQLite's default.
    public var maxPageCount: Int?
    /// Page cache of the writing connection (`PRAGMA cache_size`), in MiB. Turns land on random sessions, so
    /// the interior and hot pages of the session indexes should stay cached; readers keep SQLite's default,
    /// since any commit invalidates a reader's cache anyway.
    public var writerCacheMegabytes = 64

    public init() {}
}

extension Duration {
    /// Whole milliseconds.
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
