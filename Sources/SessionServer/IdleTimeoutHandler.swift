import NIOCore

/// Closes a connection that has exchanged no complete frame for `timeout` while none of its requests is
/// waiting or running. It sits after the frame decoder, so a peer that trickles bytes without finishing
/// a frame (slowloris) is closed too. It counts each decoded frame as in flight at once, so a request that
/// waits its turn in a busy server keeps its connection open.
///
/// A frame or a response only records the time. One timer per connection checks it when due and, if
/// there was activity, sets itself again for the new due time: re-arming a timer on every frame cost the
/// event loops a sixth of their time (each cancel searches the loop's scheduled tasks).
final class IdleTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let timeout: TimeAmount
    private let connection: Connection
    private var timer: Scheduled<Void>?
    /// The last frame in either direction.
    private var lastActivity = NIODeadline.uptimeNanoseconds(0)

    init(timeout: TimeAmount, connection: Connection) {
        self.timeout = timeout
        self.connection = connection
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.inFlight.add(1, ordering: .relaxed)
        lastActivity = context.eventLoop.now
        context.fireChannelRead(data)
    }

    /// A response going out is activity too: the idle time counts from the last frame in either direction.
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        lastActivity = context.eventLoop.now
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        stop()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stop()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard timer == nil else { return }
        lastActivity = context.eventLoop.now
        check(context, at: lastActivity + timeout)
    }

    private func stop() {
        timer?.cancel()
        timer = nil
    }

    /// Looks at the connection at `deadline`: closes it if it has been idle for `timeout` with nothing in
    /// flight, and otherwise checks again when it next could be.
    private func check(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            guard handler.timer != nil else { return }
            let now = context.eventLoop.now
            if handler.connection.inFlight.load(ordering: .relaxed) > 0 {
                handler.check(context, at: now + handler.timeout)
                return
            }
            if handler.lastActivity + handler.timeout > now {
                handler.check(context, at: handler.lastActivity + handler.timeout)
                return
            }
            // A busy event loop may run this timer before reading bytes that arrived in time: give it one
            // more round of I/O, and close only if no frame came in.
            let seen = handler.lastActivity
            context.eventLoop.assumeIsolated().execute {
                let (handler, context) = loopBound.value
                guard handler.timer != nil else { return }
                if handler.lastActivity == seen, handler.connection.inFlight.load(ordering: .relaxed) == 0 {
                    context.close(promise: nil)
                } else {
                    handler.check(context, at: context.eventLoop.now + handler.timeout)
                }
            }
        }
    }
}
