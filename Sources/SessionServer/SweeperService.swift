import Logging
import ServiceLifecycle
import SessionStore

/// Applies the store's policies (expiry, purge, eviction, audit retention) on an interval, and again after a
/// second while a sweep left work over (a backlog after downtime, or a lowered cap), so that a backlog keeps
/// draining in short transactions between turns instead of one budget's worth per interval.
public struct SweeperService: Service {
    let store: SessionDatabase
    let interval: Duration
    let logger: Logger

    public init(store: SessionDatabase, interval: Duration, logger: Logger) {
        self.store = store
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            let pause = await sweep() ? min(interval, .seconds(1)) : interval
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
        }
    }

    /// One sweep, logged; whether it left work over.
    private func sweep() async -> Bool {
        do {
            let report = try await store.sweep()
            if report.total > 0 {
                logger.info(
                    "sweep",
                    metadata: [
                        "expired": "\(report.expired)", "leasesExpired": "\(report.leasesExpired)",
                        "purged": "\(report.purged)", "evicted": "\(report.evicted)",
                        "auditPurged": "\(report.auditPurged)", "moreRemains": "\(report.moreRemains)",
                    ])
            }
            return report.moreRemains
        } catch {
            logger.warning("sweep failed", metadata: ["error": "\(error)"])
            return false
        }
    }
}

/// Owns the database for the life of the process: on shutdown, after every other service has stopped,
/// it checkpoints the WAL into the database file.
public struct StoreService: Service {
    let store: SessionDatabase
    let logger: Logger

    public init(store: SessionDatabase, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    public func run() async throws {
        try? await gracefulShutdown()
        do {
            try store.checkpoint()
            logger.info("WAL checkpointed")
        } catch {
            logger.warning("final checkpoint failed", metadata: ["error": "\(error)"])
        }
    }
}
