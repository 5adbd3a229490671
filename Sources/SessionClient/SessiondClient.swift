import Foundation
import NIOCore
import NIOFoundationCompat
import NIOPosix
import SessionProtocol
import Synchronization

/// An async client for sessiond: one connection, pipelined requests matched by id, typed calls.
///
/// Calls from many tasks share the connection. A call whose method is idempotent is retried once on a
/// fresh connection when the old one dropped; others fail with `connection_closed`, because the server
/// may have applied them.
public final class SessiondClient: Sendable {
    public struct Configuration: Sendable {
        public var address: ServerAddress
        /// The name shown as the actor in the audit log and as the default lease holder.
        public var clientName: String
        public var clientVersion: String?
        public var token: String?
        /// How long a call waits for its response.
        public var timeout: Duration = .seconds(30)
        public var connectTimeout: Duration = .seconds(5)
        /// The largest response frame accepted.
        public var maxFrameBytes = 64 * 1024 * 1024

        public init(
            address: ServerAddress = .fromEnvironment, clientName: String, clientVersion: String? = nil,
            token: String? = ProcessInfo.processInfo.environment["SESSIOND_TOKEN"]
        ) {
            self.address = address
            self.clientName = clientName
            self.clientVersion = clientVersion
            self.token = token
        }
    }

    public let configuration: Configuration
    private let state = Mutex<ClientConnection?>(nil)
    private let nextID = Atomic<Int64>(0)
    /// The server's answer to the last `hello`.
    private let helloResult = Mutex<Hello.Result?>(nil)

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// Connects, runs `body`, and closes the connection whether `body` returns or throws.
    public static func withConnection<Result: Sendable>(
        _ configuration: Configuration, _ body: (SessiondClient) async throws -> Result
    ) async throws -> Result {
        let client = SessiondClient(configuration: configuration)
        do {
            try await client.connect()
            let result = try await body(client)
            await client.close()
            return result
        } catch {
            await client.close()
            throw error
        }
    }

    /// What the server said in `hello` (tenant, limits), once connected.
    public var server: Hello.Result? { helloResult.withLock { $0 } }

    /// Opens the connection and says `hello` (done lazily by the first call otherwise).
    public func connect() async throws {
        _ = try await connection()
    }

    public func close() async {
        let connection = state.withLock { state -> ClientConnection? in
            defer { state = nil }
            return state
        }
        await connection?.close()
    }

    /// Calls a method and decodes its result.
    public func call<M: RPCMethod>(_ method: M.Type, _ params: M.Params, timeout: Duration? = nil) async throws
        -> M.Result
    {
        do {
            return try await callOnce(method, params, timeout: timeout)
        } catch let error as SessionError where error.code == .connectionClosed && M.isIdempotent {
            return try await callOnce(method, params, timeout: timeout)
        }
    }

    private func callOnce<M: RPCMethod>(_ method: M.Type, _ params: M.Params, timeout: Duration?) async throws
        -> M.Result
    {
        let connection = try await connection()
        let frame = try await connection.send(
            method: M.name, params: params, id: nextID.add(1, ordering: .relaxed).newValue,
            timeout: timeout ?? configuration.timeout)
        do {
            return try ClientConnection.decoder.decode(RPCResultEnvelope<M.Result>.self, from: frame).result
        } catch {
            throw SessionError(.protocolError, "the \(M.name) result could not be decoded: \(error)")
        }
    }

    /// The open connection, connecting and saying `hello` first if there is none or it dropped.
    private func connection() async throws -> ClientConnection {
        if let existing = state.withLock({ $0 }), existing.isOpen { return existing }
        let fresh = try await ClientConnection.connect(configuration: configuration)
        do {
            let hello = try await fresh.send(
                method: Hello.name,
                params: Hello.Params(
                    client: .init(name: configuration.clientName, version: configuration.clientVersion),
                    token: configuration.token),
                id: nextID.add(1, ordering: .relaxed).newValue, timeout: configuration.timeout)
            let result = try ClientConnection.decoder.decode(RPCResultEnvelope<Hello.Result>.self, from: hello).result
            helloResult.withLock { $0 = result }
        } catch {
            await fresh.close()
            throw error
        }
        let (winner, loser) = state.withLock { state -> (ClientConnection, ClientConnection?) in
            if let current = state, current.isOpen { return (current, fresh) }
            state = fresh
            return (fresh, nil)
        }
        if let loser { await loser.close() }
        return winner
    }
}

/// One socket: a reader task that routes responses to the waiting calls by id.
final class ClientConnection: Sendable {
    static let encoder = WireJSON.makeEncoder(sortedKeys: false)
    static let decoder = WireJSON.makeDecoder()

    private struct State {
        var pending: [Int64: EventLoopPromise<ByteBuffer>] = [:]
        var closedError: SessionError?
    }

    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private let channel: any Channel
    private let state = Mutex(State())

    private init(outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, channel: any Channel) {
        self.outbound = outbound
        self.channel = channel
    }

    var isOpen: Bool { state.withLock { $0.closedError == nil } }

    static func connect(configuration: SessiondClient.Configuration) async throws -> ClientConnection {
        let maxFrameBytes = configuration.maxFrameBytes
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.milliseconds(configuration.connectTimeout.components.seconds * 1000 + configuration.connectTimeout.components.attoseconds / 1_000_000_000_000_000))
        let initializer: @Sendable (any Channel) -> EventLoopFuture<NIOAsyncChannel<ByteBuffer, ByteBuffer>> = {
            channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addFrameCodec(maxFrameBytes: maxFrameBytes)
                return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
        let asyncChannel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            switch configuration.address {
            case .tcp(let host, let port):
                asyncChannel = try await bootstrap.channelOption(.tcpOption(.tcp_nodelay), value: 1)
                    .connect(host: host, port: port, channelInitializer: initializer)
            case .unix(let path):
                asyncChannel = try await bootstrap.connect(unixDomainSocketPath: path, channelInitializer: initializer)
            }
        } catch {
            throw SessionError(.connectFailed, "cannot connect to sessiond at \(configuration.address): \(error)")
        }
        // The reader owns the channel for its lifetime; it hands the writer out once it runs.
        return await withCheckedContinuation { ready in
            Task {
                try? await asyncChannel.executeThenClose { inbound, outbound in
                    let connection = ClientConnection(outbound: outbound, channel: asyncChannel.channel)
                    ready.resume(returning: connection)
                    await connection.read(inbound)
                }
            }
        }
    }

    /// Routes frames to their calls until the connection ends, then fails every call still waiting.
    private func read(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>) async {
        var failure = SessionError(.connectionClosed, "the server closed the connection")
        do {
            for try await frame in inbound {
                let head: RPCResponseHead
                do {
                    head = try Self.decoder.decode(RPCResponseHead.self, from: frame)
                } catch {
                    failure = SessionError(.protocolError, "the server sent a frame that is not JSON-RPC: \(error)")
                    break
                }
                if head.method != nil, head.id == nil { continue }  // a server notification: none is defined yet
                guard case .number(let id) = head.id else {
                    // An error with id null answers a request the server could not read; it ends the connection.
                    if let error = head.error { failure = error.sessionError }
                    continue
                }
                // A response after its call timed out finds nothing pending and is dropped.
                guard let promise = takePending(id) else { continue }
                if let error = head.error {
                    promise.fail(error.sessionError)
                } else {
                    promise.succeed(frame)
                }
            }
        } catch let error as FrameError {
            failure = SessionError(.protocolError, "bad frame from the server: \(error)")
        } catch {
            failure = SessionError(.connectionClosed, "the connection failed: \(error)")
        }
        fail(with: failure)
        channel.close(promise: nil)
    }

    private func fail(with error: SessionError) {
        let pending = state.withLock { state -> [EventLoopPromise<ByteBuffer>] in
            if state.closedError == nil { state.closedError = error }
            defer { state.pending.removeAll() }
            return Array(state.pending.values)
        }
        for promise in pending { promise.fail(error) }
    }

    private func takePending(_ id: Int64) -> EventLoopPromise<ByteBuffer>? {
        state.withLock { $0.pending.removeValue(forKey: id) }
    }

    /// Sends a request and waits for its response frame, or throws its error.
    ///
    /// The call is registered before the request is written, so no response can arrive unclaimed; a timer
    /// on the event loop and the caller's cancellation both end the wait.
    func send<Params: Encodable & Sendable>(method: String, params: Params, id: Int64, timeout: Duration) async throws
        -> ByteBuffer
    {
        let frame = try Self.encoder.encodeAsByteBuffer(
            RPCRequest(id: .number(id), method: method, params: params), allocator: channel.allocator)
        let promise = channel.eventLoop.makePromise(of: ByteBuffer.self)
        if let closed = state.withLock({ state -> SessionError? in
            if let error = state.closedError { return error }
            state.pending[id] = promise
            return nil
        }) {
            promise.fail(closed)
            throw closed
        }
        let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)) {
            [weak self] in
            self?.takePending(id)?.fail(SessionError(.timeout, "no response to \(method) within \(timeout)"))
        }
        defer { timer.cancel() }
        return try await withTaskCancellationHandler {
            do {
                try await outbound.write(frame)
            } catch {
                takePending(id)?.fail(SessionError(.connectionClosed, "the request could not be sent: \(error)"))
            }
            return try await promise.futureResult.get()
        } onCancel: {
            self.takePending(id)?.fail(CancellationError())
        }
    }

    func close() async {
        fail(with: SessionError(.connectionClosed, "the client closed the connection"))
        try? await channel.close()
    }
}
