import Foundation
import Histogram
import NIOCore
import NIOFoundationCompat
import NIOPosix
import SessionClient
import SessionProtocol

/// Drives a workload over raw frames, the way redis-benchmark drives Redis: every connection is a small
/// state machine on its event loop, requests are written from templates, and a response is decoded only as
/// far as the next request needs (its id and error, and the lease of an acquire). The load generator shares
/// the machine with the server, so what it spends per request is taken from the server.
///
/// `--driver client` runs the same workloads through ``SessiondClient`` instead.
enum WireDriver {
    static func measure(
        address: ServerAddress, connections: Int, depth: Int, workload: Run.Workload, keys: Int, ids: [String],
        duration: Double, budget: OperationBudget
    ) async throws -> Point {
        try await DriverConnections.measure(address: address, connections: connections, duration: duration) { index, loop in
            WireConnection(
                eventLoop: loop, workload: workload, keys: keys, ids: ids, streams: max(1, depth), budget: budget,
                seed: DriverConnections.seed(index))
        } addCodec: { pipeline in
            try pipeline.addFrameCodec(maxFrameBytes: 64 * 1024 * 1024)
        }
    }
}

/// One connection and its `streams` operations in flight. Everything runs on the channel's event loop.
final class WireConnection: DriverConnection, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// What a stream waits for.
    private enum Step {
        case idle
        case acquire(started: NIODeadline)
        case complete(started: NIODeadline)
        case read(started: NIODeadline)
        case append(started: NIODeadline, sessionId: String)
        case listMessages(started: NIODeadline)
    }

    let eventLoop: any EventLoop
    let finished: EventLoopPromise<Worker.Result>
    private let hello: EventLoopPromise<Void>
    var ready: EventLoopFuture<Void> { hello.futureResult }
    private let workload: Run.Workload
    private let keys: Int
    private let ids: [String]
    private let budget: OperationBudget
    private var steps: [Step]
    private var random: SplitMix64
    private var result = Worker.Result(
        histogram: Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three))
    private var context: ChannelHandlerContext?
    private var deadline = NIODeadline.distantFuture
    private var sequence: Int64 = 0
    private var running = 0
    private var reads = 0
    private var helloPending = true
    private var done = false

    init(
        eventLoop: any EventLoop, workload: Run.Workload, keys: Int, ids: [String], streams: Int,
        budget: OperationBudget, seed: UInt64
    ) {
        self.eventLoop = eventLoop
        hello = eventLoop.makePromise()
        finished = eventLoop.makePromise()
        self.workload = workload
        self.keys = keys
        self.ids = ids
        self.budget = budget
        steps = Array(repeating: .idle, count: streams)
        random = SplitMix64(seed: seed)
    }

    func channelActive(context: ChannelHandlerContext) {
        self.context = context
        send(#""method":"hello","params":{"client":{"name":"sessiond-bench"}}"#, stream: 0)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(SessionError(.connectionClosed, "the server closed the connection"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error)
        context.close(promise: nil)
    }

    /// Ends the run of this connection with `error`, unless it has ended already.
    private func fail(_ error: any Error) {
        if helloPending {
            helloPending = false
            hello.fail(error)
        }
        if !done {
            done = true
            finished.fail(error)
        }
    }

    /// Starts every stream; `finished` succeeds once all of them stop at the deadline or the budget.
    func start(until deadline: NIODeadline) {
        self.deadline = deadline
        running = steps.count
        for stream in steps.indices { next(stream) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let reply: WireReply
        do {
            // The server's own decoder, at under half JSONDecoder's cost: the load generator shares the machine.
            reply = try frame.withUnsafeReadableBytes { try ParamsDecoder.decode(WireReply.self, from: $0) }
        } catch {
            errorCaught(context: context, error: SessionError(.protocolError, "not a JSON-RPC response: \(error)"))
            return
        }
        guard let id = reply.id else {
            errorCaught(context: context, error: reply.error?.sessionError ?? SessionError(.protocolError, "no id"))
            return
        }
        if helloPending {
            if let error = reply.error { return errorCaught(context: context, error: error.sessionError) }
            helloPending = false
            return hello.succeed()
        }
        let stream = Int(id % Int64(steps.count))
        if let error = reply.error {
            if error.sessionError.code == .leaseHeld {
                result.conflicts += 1
            } else {
                result.errors += 1
                if result.errors > 100 { return errorCaught(context: context, error: error.sessionError) }
            }
            return next(stream)
        }
        switch steps[stream] {
        case .idle:
            break
        case .acquire(let started):
            guard let session = reply.result?.session, let lease = reply.result?.lease else {
                return errorCaught(context: context, error: SessionError(.protocolError, "no lease in the acquire result"))
            }
            steps[stream] = .complete(started: started)
            send(
                #""method":"session.complete","params":{"sessionId":"\#(session.id)","lease":{"token":"\#(lease.token)","fence":\#(lease.fence)},"outcome":"ok","cliSessionId":"\#(random.uuidString())","costUsd":0.01,"inputTokens":1200,"outputTokens":300,"messages":[{"role":"user","content":"Please summarise the change in the build script."},{"role":"assistant","content":"The build now caches dependencies and runs tests in parallel."}]}"#,
                stream: stream)
        case .append(let started, let sessionId):
            steps[stream] = .listMessages(started: started)
            send(#""method":"messages.list","params":{"sessionId":"\#(sessionId)","tail":20}"#, stream: stream)
        case .complete(let started), .read(let started), .listMessages(let started):
            record(since: started)
            next(stream)
        }
    }

    /// Starts the stream's next operation, or stops it.
    private func next(_ stream: Int) {
        guard NIODeadline.now() < deadline, budget.take() else {
            steps[stream] = .idle
            running -= 1
            if running == 0, !done {
                done = true
                finished.succeed(result)
            }
            return
        }
        let started = NIODeadline.now()
        switch workload {
        case .turn: acquire(stream, started)
        case .mixed: if random.next(below: 10) == 0 { read(stream, started) } else { acquire(stream, started) }
        case .read: read(stream, started)
        case .history:
            let id = ids[random.next(below: ids.count)]
            steps[stream] = .append(started: started, sessionId: id)
            send(
                #""method":"messages.append","params":{"sessionId":"\#(id)","messages":[{"role":"user","content":"One more question about the plan."}]}"#,
                stream: stream)
        }
    }

    private func acquire(_ stream: Int, _ started: NIODeadline) {
        steps[stream] = .acquire(started: started)
        send(#""method":"session.acquire","params":{"key":"bench:\#(random.next(below: keys))","holder":"bench"}"#, stream: stream)
    }

    /// `session.get` and a `session.list` page, alternately.
    private func read(_ stream: Int, _ started: NIODeadline) {
        steps[stream] = .read(started: started)
        reads += 1
        if reads % 2 == 0 || ids.isEmpty {
            send(#""method":"session.list","params":{"limit":20}"#, stream: stream)
        } else {
            send(#""method":"session.get","params":{"sessionId":"\#(ids[random.next(below: ids.count)])"}"#, stream: stream)
        }
    }

    /// Writes one request: `members` are the method and params, the envelope and id are added here. Ids name
    /// the stream, so that responses find their stream with the connection pipelined.
    private func send(_ members: String, stream: Int) {
        guard let context else { return }
        sequence += 1
        let id = sequence * Int64(steps.count) + Int64(stream)
        var buffer = context.channel.allocator.buffer(capacity: members.utf8.count + 32)
        buffer.writeString(#"{"jsonrpc":"2.0","id":\#(id),"#)
        buffer.writeString(members)
        buffer.writeString("}")
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    private func record(since started: NIODeadline) {
        _ = result.histogram.record(UInt64(max(0, (NIODeadline.now() - started).nanoseconds / 1000)))
    }
}

/// The members of a response the driver reads, in one decoding pass.
private struct WireReply: Decodable {
    /// The part of a result the next request may need: an acquire's session id and lease. No other member
    /// is read, and results that have neither decode with both `nil`.
    struct Result: Decodable {
        struct Session: Decodable { var id: String }
        struct Lease: Decodable {
            var token: String
            var fence: Int64
        }
        var session: Session?
        var lease: Lease?
    }
    var id: Int64?
    var error: RPCErrorObject?
    var result: Result?
}

/// A small, fast pseudo-random generator (SplitMix64) for keys and CLI session ids: the system generator
/// costs a system call per number.
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func next(below bound: Int) -> Int { Int(next() % UInt64(bound)) }

    /// A random version-4 UUID in lowercase.
    mutating func uuidString() -> String {
        let digits = Array("0123456789abcdef".utf8)
        let (high, low) = (next(), next())
        return String(unsafeUninitializedCapacity: 36) { text in
            var position = 0
            for index in 0..<16 {
                var byte = UInt8(truncatingIfNeeded: (index < 8 ? high : low) >> (8 * UInt64(index % 8)))
                if index == 6 { byte = (byte & 0x0F) | 0x40 }
                if index == 8 { byte = (byte & 0x3F) | 0x80 }
                if index == 4 || index == 6 || index == 8 || index == 10 {
                    text[position] = UInt8(ascii: "-")
                    position += 1
                }
                text[position] = digits[Int(byte >> 4)]
                text[position + 1] = digits[Int(byte & 0x0F)]
                position += 2
            }
            return position
        }
    }
}
