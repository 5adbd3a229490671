import Logging
import NIOCore
import SessionProtocol

/// Serves one connection's request frames: each runs through the ``Router`` in a task of its own, and its
/// answer is written back on the connection's event loop.
///
/// A frame goes from the event loop to its task and the answer straight back, with no stream between them:
/// `NIOAsyncChannel`'s inbound stream and outbound writer cost about a tenth of a turn's instructions and
/// a wake-up of the connection's reader task per request.
///
/// At most `maxInFlight` requests run at once, and none starts while the socket's send buffer is full (a
/// client that does not read its answers); meanwhile the socket is not read (TCP back-pressure), and frames
/// already decoded wait here in order. The connection closes once its input has ended (the peer half-closed,
/// or sent a frame that cannot be read) and every request it sent is answered; `finished` then completes.
final class RequestHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let router: Router
    private let connection: Connection
    private let logger: Logger
    private let maxInFlight: Int
    private let maxFrameBytes: Int
    private let isShuttingDown: @Sendable () -> Bool
    /// Completes when the channel has closed and no request of it runs any more.
    let finished: EventLoopPromise<Void>

    private var running = 0
    /// Frames decoded while `maxInFlight` ran, in the order they came.
    private var waiting = CircularBuffer<ByteBuffer>()
    /// A read the pipeline asked for while at the limit, to pass on once a request finishes.
    private var readHeldBack = false
    /// No more frames come: the input ended, or a frame could not be read. Those already decoded still run.
    private var inputEnded = false
    private var inactive = false
    private var completed = false

    init(
        router: Router, connection: Connection, logger: Logger, maxInFlight: Int, maxFrameBytes: Int,
        isShuttingDown: @escaping @Sendable () -> Bool, finished: EventLoopPromise<Void>
    ) {
        self.router = router
        self.connection = connection
        self.logger = logger
        self.maxInFlight = max(1, maxInFlight)
        self.maxFrameBytes = maxFrameBytes
        self.isShuttingDown = isShuttingDown
        self.finished = finished
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if inputEnded {
            connection.answered(bytes: frame.readableBytes)
        } else if waiting.isEmpty, canStart(context) {
            start(frame, context: context)
        } else {
            waiting.append(frame)
        }
    }

    /// Passes the read on only while another request could start.
    func read(context: ChannelHandlerContext) {
        if waiting.isEmpty, canStart(context) {
            context.read()
        } else {
            readHeldBack = true
        }
    }

    /// Answers written while the client reads again: start what waits.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        resume(context)
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent {
            inputEnded = true
            closeIfDone(context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// A frame that cannot be read is answered with an error, and the connection closes once the requests
    /// before it are answered.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let failure: SessionError
        switch error {
        case let error as FrameError:
            logger.info("bad frame; closing", metadata: ["error": "\(error)"])
            failure = error.sessionError
        case is ByteToMessageDecoderError.PayloadTooLargeError:
            failure = SessionError(.tooLarge, "frame exceeds the maximum of \(maxFrameBytes) bytes")
        default:
            logger.debug("connection ended", metadata: ["error": "\(error)"])
            context.close(promise: nil)
            return
        }
        guard !inputEnded else { return }
        inputEnded = true
        context.writeAndFlush(wrapOutboundOut(Router.failure(id: nil, failure)), promise: nil)
        closeIfDone(context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        inactive = true
        inputEnded = true
        dropWaiting()
        completeIfDone()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // The pipeline goes away with the channel; whatever still runs completes `finished` as it ends.
        inactive = true
        completeIfDone()
    }

    private func start(_ frame: ByteBuffer, context: ChannelHandlerContext) {
        running += 1
        let bytes = frame.readableBytes
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let (router, connection, logger) = (self.router, self.connection, self.logger)
        Task {
            let response = await router.respond(to: frame, connection: connection, logger: logger)
            loopBound.eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.finish(response, bytes: bytes, context: context)
            }
        }
    }

    private func finish(_ response: ByteBuffer?, bytes: Int, context: ChannelHandlerContext) {
        running -= 1
        if let response, !inactive {
            context.writeAndFlush(wrapOutboundOut(response), promise: nil)
        }
        connection.answered(bytes: bytes)
        resume(context)
        if running == 0, waiting.isEmpty, isShuttingDown() { inputEnded = true }
        closeIfDone(context)
        completeIfDone()
    }

    private func canStart(_ context: ChannelHandlerContext) -> Bool {
        running < maxInFlight && context.channel.isWritable
    }

    /// Starts waiting frames while there is room, then passes on a held-back read.
    private func resume(_ context: ChannelHandlerContext) {
        guard !inactive else { return }
        while canStart(context), let next = waiting.popFirst() { start(next, context: context) }
        if readHeldBack, !inputEnded, waiting.isEmpty, canStart(context) {
            readHeldBack = false
            context.read()
        }
    }

    private func dropWaiting() {
        while let frame = waiting.popFirst() { connection.answered(bytes: frame.readableBytes) }
    }

    private func closeIfDone(_ context: ChannelHandlerContext) {
        if inputEnded, running == 0, waiting.isEmpty, !inactive { context.close(promise: nil) }
    }

    private func completeIfDone() {
        guard inactive, running == 0, !completed else { return }
        completed = true
        finished.succeed()
    }
}
