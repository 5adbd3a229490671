import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import SessionProtocol
import ServiceLifecycle
import Synchronization

/// The listener: accepts connections on TCP and/or a Unix socket and serves length-prefixed JSON-RPC
/// on each, with every request going through the ``Router``.
///
/// On graceful shutdown it stops accepting, answers new requests with `shutting_down`, lets running
/// requests finish, closes every connection, and returns.
public final class RPCServer: Service, Sendable {
    /// Limits and addresses; every value has a default.
    public struct Configuration: Sendable {
        /// TCP host and port; port 0 picks a free port. `nil` serves no TCP.
        public var tcp: (host: String, port: Int)? = ("127.0.0.1", 7420)
        /// A Unix domain socket path; `nil` serves none.
        public var unixSocketPath: String?
        public var maxConnections = 1024
        /// Close a connection without a complete frame for this long while none of its requests runs.
        public var idleTimeout: Duration = .seconds(300)
        public var maxFrameBytes = 16 * 1024 * 1024
        /// Requests run at once per connection; past it the connection is not read (back-pressure).
        public var maxInFlight = 64
        /// Request bytes per connection received and not yet answered, buffered or running; past it the
        /// connection is not read until answers bring it under (one request of any allowed size is always read).
        public var maxInFlightBytes = 32 * 1024 * 1024

        public init() {}
    }

    /// A bound listener, as printed on start-up.
    public struct Listener: Sendable, CustomStringConvertible {
        public var kind: String
        public var address: String
        public var port: Int?
        public var description: String { "\(kind) \(address)" }
    }

    private struct State {
        var listeners: [any Channel] = []
        var connections: [ObjectIdentifier: Connection] = [:]
    }

    public let configuration: Configuration
    let router: Router
    private let logger: Logger
    private let onListening: @Sendable ([Listener]) -> Void
    private let onShutdown: @Sendable () -> Void
    private let shuttingDown = Atomic<Bool>(false)
    private let state = Mutex(State())
    private let connectionGauge = Gauge(label: "sessiond_connections")

    init(
        configuration: Configuration, router: Router, logger: Logger,
        onListening: @escaping @Sendable ([Listener]) -> Void, onShutdown: @escaping @Sendable () -> Void = {}
    ) {
        self.configuration = configuration
        self.router = router
        self.logger = logger
        self.onListening = onListening
        self.onShutdown = onShutdown
    }

    /// How many connections are open.
    public var connectionCount: Int { state.withLock { $0.connections.count } }

    public func run() async throws {
        let listeners = try await bindListeners()
        state.withLock { $0.listeners = listeners.map(\.channel.channel) }
        onListening(listeners.map(\.listener))
        for listener in listeners { logger.info("listening", metadata: ["address": "\(listener.listener)"]) }

        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for listener in listeners {
                    group.addTask { await self.accept(on: listener.channel) }
                }
            }
        } onGracefulShutdown: {
            self.beginShutdown()
        }
        logger.info("server stopped")
    }

    /// A connection as the child-channel initializer hands it over.
    private struct Accepted: Sendable {
        var connection: Connection
        var channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
    }

    private typealias ServerChannel = NIOAsyncChannel<Accepted, Never>

    private func bindListeners() async throws -> [(listener: Listener, channel: ServerChannel)] {
        var bound: [(Listener, ServerChannel)] = []
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        let initializer: @Sendable (any Channel) -> EventLoopFuture<Accepted> = {
            [configuration] channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addFrameCodec(maxFrameBytes: configuration.maxFrameBytes)
                let budget = InboundBudget(limit: configuration.maxInFlightBytes, channel: channel)
                try channel.pipeline.syncOperations.addHandler(InboundByteLimitHandler(budget: budget))
                let connection = Connection(channel: channel, budget: budget)
                try channel.pipeline.syncOperations.addHandler(
                    IdleTimeoutHandler(
                        timeout: .nanoseconds(Int64(configuration.idleTimeout.components.seconds) * 1_000_000_000
                            + configuration.idleTimeout.components.attoseconds / 1_000_000_000),
                        connection: connection))
                let asyncChannel = try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                    wrappingChannelSynchronously: channel,
                    configuration: NIOAsyncChannel.Configuration(
                        backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8)))
                return Accepted(connection: connection, channel: asyncChannel)
            }
        }
        if let tcp = configuration.tcp {
            let channel = try await bootstrap
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .bind(host: tcp.host, port: tcp.port, childChannelInitializer: initializer)
            let address = channel.channel.localAddress
            let host = address?.ipAddress ?? tcp.host
            let port = address?.port ?? tcp.port
            let shown = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            bound.append((Listener(kind: "tcp", address: shown, port: port), channel))
        }
        if let path = configuration.unixSocketPath {
            let channel = try await bootstrap.childChannelOption(.allowRemoteHalfClosure, value: true).bind(
                unixDomainSocketPath: path, cleanupExistingSocketFile: true, childChannelInitializer: initializer)
            bound.append((Listener(kind: "unix", address: path, port: nil), channel))
        }
        return bound
    }

    private func accept(on listener: ServerChannel) async {
        do {
            try await listener.executeThenClose { inbound in
                // A discarding group: a plain task group would keep every finished connection's result.
                await withDiscardingTaskGroup { group in
                    do {
                        for try await accepted in inbound {
                            group.addTask { await self.serve(accepted.channel, connection: accepted.connection) }
                        }
                    } catch {
                        self.logger.debug("listener closed", metadata: ["error": "\(error)"])
                    }
                }
            }
        } catch {
            logger.debug("listener ended", metadata: ["error": "\(error)"])
        }
    }

    /// Serves one connection until it closes. Never throws: one connection cannot take the server down.
    private func serve(_ channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>, connection: Connection) async {
        let id = ObjectIdentifier(connection)
        let admitted = state.withLock { state -> Bool in
            guard state.connections.count < configuration.maxConnections, !shuttingDown.load(ordering: .relaxed)
            else { return false }
            state.connections[id] = connection
            return true
        }
        var connectionLogger = self.logger
        connectionLogger[metadataKey: "connection.peer"] = "\(connection.peer)"
        let logger = connectionLogger
        guard admitted else {
            let error =
                shuttingDown.load(ordering: .relaxed)
                ? SessionError(.shuttingDown, "the server is shutting down")
                : SessionError(.overloaded, "too many connections (the limit is \(configuration.maxConnections))")
            try? await channel.executeThenClose { _, outbound in
                try await outbound.write(Router.failure(id: nil, error))
            }
            logger.info("connection refused", metadata: ["reason": "\(error.code)"])
            return
        }
        connectionGauge.record(connectionCount)
        defer {
            state.withLock { _ = $0.connections.removeValue(forKey: id) }
            connectionGauge.record(connectionCount)
        }
        logger.debug("connection opened")
        let gate = InFlightGate(limit: configuration.maxInFlight)
        do {
            try await channel.executeThenClose { inbound, outbound in
                await withDiscardingTaskGroup { group in
                    do {
                        for try await frame in inbound {
                            // A peer that went away gets no more work done for it.
                            guard channel.channel.isActive else {
                                connection.answered(bytes: frame.readableBytes)
                                continue
                            }
                            await gate.enter()
                            group.addTask {
                                if let response = await self.router.respond(
                                    to: frame, connection: connection, logger: logger)
                                {
                                    try? await outbound.write(response)
                                }
                                gate.leave()
                                let remaining = connection.answered(bytes: frame.readableBytes)
                                if remaining == 0, self.shuttingDown.load(ordering: .relaxed) {
                                    connection.close()
                                }
                            }
                        }
                    } catch let error as FrameError {
                        logger.info("bad frame; closing", metadata: ["error": "\(error)"])
                        try? await outbound.write(Router.failure(id: nil, error.sessionError))
                    } catch is ByteToMessageDecoderError.PayloadTooLargeError {
                        let error = SessionError(.tooLarge, "frame exceeds the maximum of \(self.configuration.maxFrameBytes) bytes")
                        try? await outbound.write(Router.failure(id: nil, error))
                    } catch {
                        logger.debug("connection ended", metadata: ["error": "\(error)"])
                    }
                }
            }
        } catch {
            logger.debug("connection closed with error", metadata: ["error": "\(error)"])
        }
        logger.debug("connection closed")
    }

    /// Stops accepting, and closes connections that have nothing running; busy ones close when done.
    private func beginShutdown() {
        shuttingDown.store(true, ordering: .relaxed)
        let (listeners, connections) = state.withLock { ($0.listeners, Array($0.connections.values)) }
        logger.info("shutting down", metadata: ["connections": "\(connections.count)"])
        for listener in listeners { listener.close(promise: nil) }
        onShutdown()
        for connection in connections where connection.inFlight.load(ordering: .relaxed) == 0 {
            connection.close()
        }
    }

    var isShuttingDown: Bool { shuttingDown.load(ordering: .relaxed) }
}

