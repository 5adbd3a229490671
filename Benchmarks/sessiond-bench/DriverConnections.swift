import Histogram
import NIOCore
import NIOPosix
import SessionClient

/// One connection of a driver: a handler on its channel's event loop that runs operations from `start` until
/// the deadline or the budget, and then succeeds `finished` with what it measured.
protocol DriverConnection: ChannelInboundHandler, Sendable {
    var eventLoop: any EventLoop { get }
    var finished: EventLoopPromise<Worker.Result> { get }
    /// Succeeds once the connection may start (for sessiond, once its `hello` is answered).
    var ready: EventLoopFuture<Void> { get }
    func start(until deadline: NIODeadline)
}

enum DriverConnections {
    /// Opens `connections` channels to `address`, each with its codec and the handler `makeHandler` gives,
    /// starts them together, and merges their histograms into one point.
    static func measure<Handler: DriverConnection>(
        address: ServerAddress, connections: Int, duration: Double,
        makeHandler: (Int, any EventLoop) -> Handler,
        addCodec: @escaping @Sendable (ChannelPipeline.SynchronousOperations) throws -> Void
    ) async throws -> Point {
        let group = MultiThreadedEventLoopGroup.singleton
        var handlers: [Handler] = []
        var channels: [any Channel] = []
        defer { for channel in channels { channel.close(promise: nil) } }
        for index in 0..<connections {
            let loop = group.next()
            let handler = makeHandler(index, loop)
            let bootstrap = ClientBootstrap(group: loop).channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try addCodec(channel.pipeline.syncOperations)
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            let channel: any Channel
            switch address {
            case .tcp(let host, let port):
                channel = try await bootstrap.channelOption(.tcpOption(.tcp_nodelay), value: 1)
                    .connect(host: host, port: port).get()
            case .unix(let path):
                channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            }
            channels.append(channel)
            handlers.append(handler)
        }
        for handler in handlers { try await handler.ready.get() }

        let start = NIODeadline.now()
        let deadline = start + .nanoseconds(Int64(duration * 1e9))
        for handler in handlers { handler.eventLoop.execute { handler.start(until: deadline) } }
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        var conflicts = 0
        var errors = 0
        for handler in handlers {
            let result = try await handler.finished.futureResult.get()
            histogram.add(result.histogram)
            conflicts += result.conflicts
            errors += result.errors
        }
        let seconds = Double((NIODeadline.now() - start).nanoseconds) / 1e9
        return Point(
            operations: Int(histogram.totalCount), seconds: seconds, p50: histogram.valueAtPercentile(50),
            p99: histogram.valueAtPercentile(99), p999: histogram.valueAtPercentile(99.9), conflicts: conflicts,
            errors: errors)
    }

    /// A random generator's seed for connection `index`: distinct per connection and per run.
    static func seed(_ index: Int) -> UInt64 {
        UInt64(index + 1) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(UInt32.random(in: 0...UInt32.max))
    }
}
