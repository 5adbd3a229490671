import NIOCore

/// Closes a connection that has exchanged no complete frame for `timeout` while none of its requests is
/// waiting or running. It sits after the frame decoder, so a peer that trickles bytes without finishing
/// a frame (slowloris) is closed too. It counts each decoded frame as in flight at once, so a request that
/// waits its turn in a busy server keeps its connection open.
final class IdleTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let timeout: TimeAmount
    private let connection: Connection
    private var scheduled: Scheduled<Void>?
    /// Grows with every arming, so a late check can tell that a frame arrived meanwhile.
    private var generation = 0

    init(timeout: TimeAmount, connection: Connection) {
        self.timeout = timeout
        self.connection = connection
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.inFlight.add(1, ordering: .relaxed)
        arm(context)
        context.fireChannelRead(data)
    }

    /// A response going out is activity too: the idle time counts from the last frame in either direction.
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        arm(context)
        context.write(data, promise: promise)
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
        generation += 1
        let armed = generation
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        scheduled = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            let (handler, context) = loopBound.value
            if handler.connection.inFlight.load(ordering: .relaxed) > 0 {
                handler.arm(context)
                return
            }
            // A busy event loop may run this timer before reading bytes that arrived in time: give it one
            // more round of I/O, and close only if no frame came in.
            context.eventLoop.assumeIsolated().execute {
                let (handler, context) = loopBound.value
                if handler.generation == armed, handler.connection.inFlight.load(ordering: .relaxed) == 0 {
                    context.close(promise: nil)
                }
            }
        }
    }
}
