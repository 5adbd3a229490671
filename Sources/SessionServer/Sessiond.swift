import Logging
import ServiceLifecycle
import SessionStore

/// The composition root as a library: the services of one sessiond, in start order.
///
/// The store service comes first, so it shuts down last and checkpoints after the server has drained;
/// the server comes last, so it stops accepting first.
public struct Sessiond: Sendable {
    public var store: SessionDatabase
    public var server: RPCServer
    public var services: [any Service]

    public init(
        store: SessionDatabase, configuration: RPCServer.Configuration, sweepInterval: Duration = .seconds(30),
        rateLimit: Authenticator.RateLimit = .init(), logger: Logger,
        onListening: @escaping @Sendable ([RPCServer.Listener]) -> Void = { _ in }
    ) async throws {
        let authenticator = try await Authenticator(store: store, rateLimit: rateLimit)
        let startedAt = ContinuousClock.now
        let box = ServerBox()
        let router = Router.sessiond(
            store: store, authenticator: authenticator, configuration: configuration, startedAt: startedAt,
            connectionCount: { box.server?.connectionCount ?? 0 },
            isShuttingDown: { box.server?.isShuttingDown ?? false })
        let server = RPCServer(
            configuration: configuration, router: router, logger: logger, onListening: onListening,
            onShutdown: { store.stopWaiting() })
        box.server = server
        self.store = store
        self.server = server
        self.services = [
            StoreService(store: store, logger: logger),
            SweeperService(store: store, interval: sweepInterval, logger: logger),
            server,
        ]
    }

    /// Whether any API token exists (auth is on).
    public static func hasTokens(_ store: SessionDatabase) async throws -> Bool {
        try await !store.activeTokens().isEmpty
    }
}

/// Lets the router ask the server (built after it) for live figures.
private final class ServerBox: @unchecked Sendable {
    nonisolated(unsafe) var server: RPCServer?
}
