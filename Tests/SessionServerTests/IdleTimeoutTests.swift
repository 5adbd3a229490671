import NIOCore
import NIOEmbedded
import Testing

@testable import SessionServer

/// The idle timeout on virtual time: activity in either direction and running requests keep a connection,
/// and silence for the whole timeout with nothing in flight closes it.
@Suite struct IdleTimeoutTests {
    private func makeChannel(timeout: TimeAmount) throws -> (EmbeddedChannel, Connection) {
        let channel = EmbeddedChannel()
        let connection = Connection(channel: channel)
        try channel.pipeline.syncOperations.addHandler(IdleTimeoutHandler(timeout: timeout, connection: connection))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, connection)
    }

    /// A request in, its answer out, as the server does it.
    private func exchange(_ channel: EmbeddedChannel, _ connection: Connection) throws {
        try channel.writeInbound(ByteBuffer(string: "{}"))
        _ = try channel.readInbound(as: ByteBuffer.self)
        connection.answered(bytes: 2)
        try channel.writeOutbound(ByteBuffer(string: "{}"))
        _ = try channel.readOutbound(as: ByteBuffer.self)
    }

    /// Open 9 s after the last activity, closed 11 s after it (the timeout is 10 s).
    private func expectClosedAfterTheTimeout(_ channel: EmbeddedChannel, sourceLocation: SourceLocation = #_sourceLocation) {
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(channel.isActive, sourceLocation: sourceLocation)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive, sourceLocation: sourceLocation)
    }

    @Test func silenceForTheWholeTimeoutCloses() throws {
        let (channel, _) = try makeChannel(timeout: .seconds(10))
        expectClosedAfterTheTimeout(channel)
    }

    @Test func exchangesKeepTheConnectionAndTheTimeoutCountsFromTheLast() throws {
        let (channel, connection) = try makeChannel(timeout: .seconds(10))
        for _ in 0..<20 {
            channel.embeddedEventLoop.advanceTime(by: .seconds(6))
            try exchange(channel, connection)
        }
        #expect(channel.isActive, "120 s of exchanges 6 s apart")
        expectClosedAfterTheTimeout(channel)
    }

    @Test func aRunningRequestKeepsTheConnectionAndItsAnswerRestartsTheClock() throws {
        let (channel, connection) = try makeChannel(timeout: .seconds(10))
        try channel.writeInbound(ByteBuffer(string: "{}"))
        _ = try channel.readInbound(as: ByteBuffer.self)
        channel.embeddedEventLoop.advanceTime(by: .seconds(45))
        #expect(channel.isActive, "a request is still running")
        connection.answered(bytes: 2)
        try channel.writeOutbound(ByteBuffer(string: "{}"))
        expectClosedAfterTheTimeout(channel)
    }
}
