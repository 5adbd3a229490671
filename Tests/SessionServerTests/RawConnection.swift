import Foundation
import NIOCore
import NIOPosix
import Synchronization

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
