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
/// requests finish, closes every connection, and returns. A connection still open after
/// `shutdownGrace` (a client that does not read its answers holds its requests back) is closed then.
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
        /// How long shutdown waits for connections to finish before closing them: requests that have not
        /// started by then are dropped unanswered; running ones still finish, so nothing acknowledged is lost.
        public var shutdownGrace: Duration = .seconds(10)

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

    /// A connection as the child-channel initializer hands it over: admitted and served by its
    /// ``RequestHandler``, or refused.
    private struct Accepted: Sendable {
        var connection: Connection
        /// Completes when the connection has closed and none of its requests runs; `nil` when refused.
        var finished: EventLoopFuture<Void>?
    }

    private typealias ServerChannel = NIOAsyncChannel<Accepted, Never>

    private func bindListeners() async throws -> [(listener: Listener, channel: ServerChannel)] {
        var bound: [(Listener, ServerChannel)] = []
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        let initializer: @Sendable (any Channel) -> EventLoopFuture<Accepted> = { channel in
            channel.eventLoop.makeCompletedFuture { try self.initialize(channel) }
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

    /// Sets up a new connection's pipeline on its event loop, before it reads anything: admitted, it is
    /// served by a ``RequestHandler``; over the limit or during shutdown, it is answered with an error and
    /// closed.
    private func initialize(_ channel: any Channel) throws -> Accepted {
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addFrameCodec(maxFrameBytes: configuration.maxFrameBytes)
        let budget = InboundBudget(limit: configuration.maxInFlightBytes, channel: channel)
        let connection = Connection(channel: channel, budget: budget)
        let admitted = state.withLock { state -> Bool in
            guard state.connections.count < configuration.maxConnections, !shuttingDown.load(ordering: .relaxed)
            else { return false }
            state.connections[ObjectIdentifier(connection)] = connection
            return true
        }
        guard admitted else {
            let error =
                shuttingDown.load(ordering: .relaxed)
                ? SessionError(.shuttingDown, "the server is shutting down")
                : SessionError(.overloaded, "too many connections (the limit is \(configuration.maxConnections))")
            try pipeline.addHandler(RefusalHandler(response: Router.failure(id: nil, error)))
            logger.info("connection refused", metadata: ["reason": "\(error.code)", "connection.peer": "\(connection.peer)"])
            return Accepted(connection: connection, finished: nil)
        }
        var logger = self.logger
        logger[metadataKey: "connection.peer"] = "\(connection.peer)"
        let handler = RequestHandler(
            router: router, connection: connection, logger: logger, maxInFlight: configuration.maxInFlight,
            maxFrameBytes: configuration.maxFrameBytes, isShuttingDown: { [weak self] in self?.isShuttingDown ?? true },
            finished: channel.eventLoop.makePromise())
        do {
            try pipeline.addHandler(InboundByteLimitHandler(budget: budget))
            try pipeline.addHandler(
                IdleTimeoutHandler(timeout: TimeAmount(configuration.idleTimeout), connection: connection))
            try pipeline.addHandler(handler)
        } catch {
            // Not served after all: it must not count against the cap.
            state.withLock { _ = $0.connections.removeValue(forKey: ObjectIdentifier(connection)) }
            handler.finished.succeed()
            throw error
        }
        connectionGauge.record(connectionCount)
        logger.debug("connection opened")
        return Accepted(connection: connection, finished: handler.finished.futureResult)
    }

    private func accept(on listener: ServerChannel) async {
        do {
            try await listener.executeThenClose { inbound in
                // A discarding group: a plain task group would keep every finished connection's result.
                await withDiscardingTaskGroup { group in
                    do {
                        for try await accepted in inbound {
                            guard let finished = accepted.finished else { continue }
                            group.addTask { await self.serve(accepted.connection, until: finished) }
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

    /// Waits until an admitted connection has closed and its last request has ended, so that shutdown
    /// returns only after every request is answered. Never throws: one connection cannot take the server down.
    private func serve(_ connection: Connection, until finished: EventLoopFuture<Void>) async {
        try? await finished.get()
        state.withLock { _ = $0.connections.removeValue(forKey: ObjectIdentifier(connection)) }
        connectionGauge.record(connectionCount)
        logger.debug("connection closed", metadata: ["connection.peer": "\(connection.peer)"])
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
        MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: TimeAmount(configuration.shutdownGrace)) {
            self.closeLingeringConnections()
        }
    }

    /// Closes the connections shutdown's grace period left open.
    private func closeLingeringConnections() {
        let connections = state.withLock { Array($0.connections.values) }
        guard !connections.isEmpty else { return }
        logger.warning(
            "closing connections still open after the shutdown grace period",
            metadata: ["connections": "\(connections.count)"])
        for connection in connections { connection.close() }
    }

    var isShuttingDown: Bool { shuttingDown.load(ordering: .relaxed) }
}


/// Answers a connection that is not admitted with one error, then closes it.
private final class RefusalHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let response: ByteBuffer

    init(response: ByteBuffer) {
        self.response = response
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { refuse(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        refuse(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    private func refuse(_ context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(response)).whenComplete { [channel = context.channel] _ in
            channel.close(promise: nil)
        }
    }
}
