import NIOCore

/// Closes a connection that has not delivered a complete frame for `timeout` while none of its requests
/// is running. It sits after the frame decoder, so a peer that trickles bytes without finishing a frame
/// (slowloris) is closed too.
final class IdleTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let timeout: TimeAmount
    private let isBusy: @Sendable () -> Bool
    private var scheduled: Scheduled<Void>?

    init(timeout: TimeAmount, isBusy: @escaping @Sendable () -> Bool) {
        self.timeout = timeout
        self.isBusy = isBusy
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        arm(context)
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        scheduled?.cancel()
        scheduled = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        scheduled?.cancel()
        scheduled = nil
    }

    private func arm(_ context: ChannelHandlerContext) {
        scheduled?.cancel()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        scheduled = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            let (handler, context) = loopBound.value
            if handler.isBusy() {
                handler.arm(context)
            } else {
                context.close(promise: nil)
            }
        }
    }
}
