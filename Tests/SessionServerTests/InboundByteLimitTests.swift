import NIOCore
import NIOEmbedded
import Testing

@testable import SessionServer

@Suite struct InboundByteLimitTests {
    /// Counts the reads that get through to the socket (the head of the pipeline).
    final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var reads = 0

        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    private func makeChannel(limit: Int) throws -> (EmbeddedChannel, ReadCounter, InboundBudget) {
        let channel = EmbeddedChannel()
        let counter = ReadCounter()
        let budget = InboundBudget(limit: limit, channel: channel)
        try channel.pipeline.syncOperations.addHandler(counter)
        try channel.pipeline.syncOperations.addHandler(InboundByteLimitHandler(budget: budget))
        return (channel, counter, budget)
    }

    @Test func readsStopPastTheLimitAndResumeWhenAnswersBringItUnder() throws {
        let (channel, counter, budget) = try makeChannel(limit: 100)
        try channel.writeInbound(ByteBuffer(repeating: 1, count: 60))
        channel.read()
        #expect(counter.reads == 1)
        try channel.writeInbound(ByteBuffer(repeating: 1, count: 60))
        channel.read()
        channel.read()
        #expect(counter.reads == 1, "120 bytes outstanding: the socket is not read")
        // Frames pass on unchanged.
        #expect(try channel.readInbound(as: ByteBuffer.self)?.readableBytes == 60)

        budget.answered(60)
        channel.embeddedEventLoop.run()
        #expect(counter.reads == 2, "back under the limit: reading resumes by itself")
        budget.answered(60)
        channel.embeddedEventLoop.run()
        #expect(counter.reads == 2, "no crossing, no extra read")
        _ = try channel.finish()
    }

    @Test func oneFrameOverTheLimitIsStillRead() throws {
        let (channel, counter, budget) = try makeChannel(limit: 100)
        channel.read()
        try channel.writeInbound(ByteBuffer(repeating: 1, count: 500))
        #expect(try channel.readInbound(as: ByteBuffer.self)?.readableBytes == 500)
        channel.read()
        #expect(counter.reads == 1)
        budget.answered(500)
        channel.embeddedEventLoop.run()
        #expect(counter.reads == 2)
        #expect(!budget.isOver)
        _ = try channel.finish()
    }
}
