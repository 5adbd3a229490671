import NIOCore
import Synchronization

/// The bytes of the requests a connection has sent and not yet been answered, buffered or running.
///
/// Past `limit`, ``InboundByteLimitHandler`` stops reading the socket, so a client that sends faster
/// than it is served meets TCP back-pressure instead of filling the server's buffers; reading resumes
/// when answered requests bring the count back under. One frame alone is always read.
final class InboundBudget: Sendable {
    let limit: Int
    private let bytes = Atomic<Int>(0)
    private let channel: any Channel

    init(limit: Int, channel: any Channel) {
        self.limit = max(1, limit)
        self.channel = channel
    }

    var isOver: Bool { bytes.load(ordering: .relaxed) > limit }

    func received(_ count: Int) {
        bytes.add(count, ordering: .relaxed)
    }

    /// Called when a request is answered (or dropped): resumes reading when this brings the count under.
    func answered(_ count: Int) {
        let after = bytes.subtract(count, ordering: .relaxed).newValue
        if after <= limit, after + count > limit {
            // Goes through the pipeline from the tail, so every handler that holds reads back still decides.
            let channel = self.channel
            channel.eventLoop.execute { channel.read() }
        }
    }
}

/// Holds the socket's reads back while the connection's ``InboundBudget`` is over its limit. It sits
/// after the frame decoder, so it counts whole frames.
final class InboundByteLimitHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let budget: InboundBudget

    init(budget: InboundBudget) {
        self.budget = budget
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        budget.received(unwrapInboundIn(data).readableBytes)
        context.fireChannelRead(data)
    }

    /// Drops the read while over the limit; ``InboundBudget/answered(_:)`` asks again once under.
    func read(context: ChannelHandlerContext) {
        if !budget.isOver { context.read() }
    }
}
