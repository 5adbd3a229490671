import Foundation
import Logging
import NIOCore
import NIOPosix
import SessionClient
import SessionProtocol
import SessionServer
import SessionStore
import ServiceLifecycle
import Synchronization

/// A real sessiond on an ephemeral loopback port, for the length of `body`, then shut down gracefully.
struct TestServer: Sendable {
    var port: Int
    var store: SessionDatabase
    var server: RPCServer

    var address: ServerAddress { .tcp(host: "127.0.0.1", port: port) }

    func client(_ name: String = "tests", token: String? = nil) -> SessiondClient {
        var configuration = SessiondClient.Configuration(address: address, clientName: name, token: token)
        configuration.timeout = .seconds(20)
        return SessiondClient(configuration: configuration)
    }
}

func withTestServer<T: Sendable>(
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

/// A raw connection for sending arbitrary bytes and reading frames, with no client logic in the way.
final class RawConnection: Sendable {
    private let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
    private final class Received: Sendable {
        let buffer = Mutex(ByteBuffer())
        let closed = Atomic<Bool>(false)
    }

    private let received = Received()
    private let reader: Task<Void, Never>
    private let writer: Mutex<NIOAsyncChannelOutboundWriter<ByteBuffer>?> = Mutex(nil)

    init(port: Int) async throws {
        channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        let ready = AsyncStream<NIOAsyncChannelOutboundWriter<ByteBuffer>>.makeStream()
        let channel = self.channel
        let received = self.received
        reader = Task {
            try? await channel.executeThenClose { inbound, outbound in
                ready.continuation.yield(outbound)
                do {
                    for try await var bytes in inbound {
                        received.buffer.withLock { $0.writeBuffer(&bytes) }
                    }
                } catch {}
                received.closed.store(true, ordering: .relaxed)
                // Keep the channel open for writes until the test is done with it.
                try? await Task.sleep(for: .seconds(3600))
            }
            received.closed.store(true, ordering: .relaxed)
        }
        var iterator = ready.stream.makeAsyncIterator()
        let outbound = await iterator.next()
        writer.withLock { $0 = outbound }
    }

    func send(_ bytes: [UInt8]) async throws {
        try await writer.withLock { $0 }!.write(ByteBuffer(bytes: bytes))
    }

    func send(json: String) async throws {
        let payload = Array(json.utf8)
        try await send(Self.header(payload.count) + payload)
    }

    static func header(_ length: Int) -> [UInt8] {
        withUnsafeBytes(of: UInt32(length).bigEndian) { Array($0) }
    }

    /// The next complete frame's JSON, or `nil` if the server closed first or `timeout` passed.
    func nextFrame(timeout: Duration = .seconds(10)) async -> [String: Any]? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let frame: ByteBuffer? = received.buffer.withLock { buffer in
                guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
                    buffer.readableBytes >= 4 + Int(length)
                else { return nil }
                buffer.moveReaderIndex(forwardBy: 4)
                return buffer.readSlice(length: Int(length))
            }
            if let frame {
                return try? JSONSerialization.jsonObject(with: Data(frame.readableBytesView)) as? [String: Any]
            }
            if received.closed.load(ordering: .relaxed), received.buffer.withLock({ $0.readableBytes < 4 }) { return nil }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }

    /// Whether the server closed the connection within `timeout`.
    func waitForClose(timeout: Duration = .seconds(10)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if received.closed.load(ordering: .relaxed) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return received.closed.load(ordering: .relaxed)
    }

    func halfClose() async throws {
        try await channel.channel.close(mode: .output)
    }

    func close() {
        reader.cancel()
        channel.channel.close(promise: nil)
    }

    deinit {
        reader.cancel()
    }
}
