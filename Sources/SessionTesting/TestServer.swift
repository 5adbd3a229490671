import Foundation
import Logging
import SessionClient
import SessionProtocol
import SessionServer
import SessionStore
import ServiceLifecycle

/// A real sessiond on an ephemeral loopback port.
public struct TestServer: Sendable {
    public var port: Int
    public var store: SessionDatabase
    public var server: RPCServer

    public var address: ServerAddress { .tcp(host: "127.0.0.1", port: port) }

    /// A client of this server (not yet connected).
    public func client(_ name: String = "tests", token: String? = nil) -> SessiondClient {
        var configuration = SessiondClient.Configuration(address: address, clientName: name, token: token)
        configuration.timeout = .seconds(20)
        return SessiondClient(configuration: configuration)
    }
}

/// Runs `body` against a real sessiond on an ephemeral loopback port, then shuts it down gracefully.
public func withTestServer<T: Sendable>(
    store: SessionDatabase? = nil,
    configure: (inout RPCServer.Configuration) -> Void = { _ in },
    rateLimit: Authenticator.RateLimit = .init(),
    _ body: @Sendable (TestServer) async throws -> T
) async throws -> T {
    let store = try store ?? SessionDatabase.inMemory()
    var configuration = RPCServer.Configuration()
    configuration.tcp = ("127.0.0.1", 0)
    configure(&configuration)
    var logger = Logger(label: "sessiond.tests")
    logger.logLevel = .critical
    let ports = AsyncStream<Int>.makeStream()
    let sessiond = try await Sessiond(
        store: store, configuration: configuration, sweepInterval: .seconds(3600), rateLimit: rateLimit,
        logger: logger,
        onListening: { listeners in
            ports.continuation.yield(listeners.first?.port ?? 0)
            ports.continuation.finish()
        })
    let group = ServiceGroup(
        configuration: .init(services: sessiond.services.map { .init(service: $0) }, logger: logger))
    return try await withThrowingTaskGroup(of: T?.self) { tasks in
        tasks.addTask {
            try await group.run()
            return nil
        }
        var iterator = ports.stream.makeAsyncIterator()
        guard let port = await iterator.next() else { throw SessionError(.internal, "server did not start") }
        do {
            let result = try await body(TestServer(port: port, store: store, server: sessiond.server))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        } catch {
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
    }
}

