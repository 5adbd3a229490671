import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix
import SessionClient

/// `sessiond-bench redis`: the turn workload against the Redis baseline, driven by this tool.
///
/// redis-benchmark sends one fixed command and times single EVALs, so `redis.sh`'s `turn` gives a per-turn
/// p99 that is an estimate (p99 + p50 of one EVAL), and its client is another program than sessiond's. Here
/// each connection runs real turns as a client would: `redis_turn.lua`'s `acquire` of a random key, then its
/// `complete` with the token and fence that the acquire returned. A turn is timed from the first request to
/// the second reply, with the same histogram, clock and event loops as sessiond's `turn` points.
struct RedisRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "redis", abstract: "Drive real two-EVAL turns against Redis (redis_turn.lua, loaded first).")

    @Option(help: "Redis's address: HOST:PORT or unix:/path.") var addr: String
    @Option(help: "SHA1 of redis_turn.lua, as SCRIPT LOAD printed it.") var sha: String
    @Option(help: "Connection counts, comma-separated.") var connections: String = "64"
    @Option(help: "Seconds per point at most.") var duration: Double = 10
    @Option(help: "Turns per point at most.") var maxOperations: Int = 1_000_000
    @Option(help: "Keys the turns pick from at random: bench:000000000000 and on, as redis-benchmark's.")
    var keys: Int = 100_000
    @Option(help: "The system's name in the output.") var label: String = "redis (sessiond-bench)"

    func run() async throws {
        guard let address = ServerAddress(addr) else { throw ValidationError("--addr must be HOST:PORT or unix:/path") }
        guard sha.count == 40, sha.allSatisfy(\.isHexDigit) else { throw ValidationError("--sha must be 40 hex digits") }
        for count in connections.split(separator: ",").compactMap({ Int($0) }) {
            let point = try await RedisDriver.measure(
                address: address, sha: sha, connections: count, keys: keys, duration: duration,
                budget: OperationBudget(max(1, maxOperations)))
            FileHandle.standardOutput.write(Data((point.json(label: label, workload: "turn", connections: count) + "\n").utf8))
        }
    }
}

enum RedisDriver {
    static func measure(
        address: ServerAddress, sha: String, connections: Int, keys: Int, duration: Double, budget: OperationBudget
    ) async throws -> Point {
        try await DriverConnections.measure(address: address, connections: connections, duration: duration) { index, loop in
            RedisTurnConnection(eventLoop: loop, sha: sha, keys: keys, budget: budget, seed: DriverConnections.seed(index))
        } addCodec: { pipeline in
            try pipeline.addHandler(ByteToMessageHandler(RESPReplyDecoder()))
        }
    }
}

/// One connection running one turn at a time (redis-benchmark's `-P 1`). Everything runs on its event loop.
final class RedisTurnConnection: DriverConnection, @unchecked Sendable {
    typealias InboundIn = RESPReply
    typealias OutboundOut = ByteBuffer

    private enum Step {
        case idle
        case acquire(started: NIODeadline, key: String)
        case complete(started: NIODeadline)
    }

    /// The two messages a turn records: the same as `redis.sh`'s and sessiond's turns send.
    private static let user = "Please summarise the change in the build script."
    private static let assistant = "The build now caches dependencies and runs tests in parallel."

    let eventLoop: any EventLoop
    let finished: EventLoopPromise<Worker.Result>
    var ready: EventLoopFuture<Void> { eventLoop.makeSucceededVoidFuture() }
    private let sha: String
    private let keys: Int
    private let budget: OperationBudget
    private var random: SplitMix64
    private var step = Step.idle
    private var result = Worker.Result(
        histogram: Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three))
    private var context: ChannelHandlerContext?
    private var deadline = NIODeadline.distantFuture
    private var done = false

    init(eventLoop: any EventLoop, sha: String, keys: Int, budget: OperationBudget, seed: UInt64) {
        self.eventLoop = eventLoop
        finished = eventLoop.makePromise()
        self.sha = sha
        self.keys = keys
        self.budget = budget
        random = SplitMix64(seed: seed)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func channelInactive(context: ChannelHandlerContext) { fail(RedisDriverError("Redis closed the connection")) }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error)
        context.close(promise: nil)
    }

    private func fail(_ error: any Error) {
        guard !done else { return }
        done = true
        finished.fail(error)
    }

    func start(until deadline: NIODeadline) {
        self.deadline = deadline
        next()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let reply = unwrapInboundIn(data)
        if case .error(let message) = reply {
            if message.hasPrefix("lease_held") {
                result.conflicts += 1
            } else {
                result.errors += 1
                if result.errors > 100 { return errorCaught(context: context, error: RedisDriverError(message)) }
            }
            return next()
        }
        switch step {
        case .idle:
            break
        case .acquire(let started, let key):
            // { created, token, fence, action, head or reason, session }
            guard case .array(let items?) = reply, items.count >= 3, case .bulk(let token?) = items[1],
                case .integer(let fence) = items[2]
            else {
                return errorCaught(context: context, error: RedisDriverError("no lease in the acquire reply: \(reply)"))
            }
            step = .complete(started: started)
            send(key: key, mode: "complete", proof: (token, String(fence)))
        case .complete(let started):
            _ = result.histogram.record(UInt64(max(0, (NIODeadline.now() - started).nanoseconds / 1000)))
            next()
        }
    }

    /// Starts the next turn, or ends this connection's run at the deadline or when the budget is spent.
    private func next() {
        guard NIODeadline.now() < deadline, budget.take() else {
            step = .idle
            if !done {
                done = true
                finished.succeed(result)
            }
            return
        }
        let number = String(random.next(below: keys))
        let key = "bench:" + String(repeating: "0", count: max(0, 12 - number.count)) + number
        step = .acquire(started: NIODeadline.now(), key: key)
        send(key: key, mode: "acquire", proof: nil)
    }

    /// `EVALSHA sha 1 key mode holder leaseMs entropy inputTokens outputTokens cost user assistant [token fence]`
    private func send(key: String, mode: String, proof: (token: String, fence: String)?) {
        guard let context else { return }
        var arguments = [
            "EVALSHA", sha, "1", key, mode, "bench", "600000", String(random.next() >> 1), "1200", "300", "0.01",
            Self.user, Self.assistant,
        ]
        if let proof { arguments += [proof.token, proof.fence] }
        var buffer = context.channel.allocator.buffer(capacity: 320)
        buffer.writeRESPCommand(arguments)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }
}

struct RedisDriverError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension ByteBuffer {
    /// Writes a command as a RESP array of bulk strings.
    mutating func writeRESPCommand(_ arguments: [String]) {
        writeString("*\(arguments.count)\r\n")
        for argument in arguments {
            writeString("$\(argument.utf8.count)\r\n")
            writeString(argument)
            writeString("\r\n")
        }
    }
}

/// A Redis reply (RESP2), as far as the driver reads one: a reply's items, but not what arrays nested in
/// them hold (the session's `HGETALL` in a turn's reply), which are checked and skipped.
enum RESPReply: Equatable {
    case simple(String)
    case error(String)
    case integer(Int64)
    case bulk(String?)
    case array([RESPReply]?)
    case skipped
}

/// Splits the byte stream into replies.
struct RESPReplyDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPReply

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let parsed = try buffer.withUnsafeReadableBytes { bytes -> (RESPReply, Int)? in
            var parser = RESPParser(bytes: bytes)
            guard let reply = try parser.value() else { return nil }
            return (reply, parser.position)
        }
        guard let (reply, consumed) = parsed else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: consumed)
        context.fireChannelRead(wrapInboundOut(reply))
        return .continue
    }
}

/// Reads one RESP2 value from the start of `bytes`; `nil` when the bytes end before the value does.
struct RESPParser {
    let bytes: UnsafeRawBufferPointer
    var position = 0

    /// `depth`: 0 for a reply, 1 for an item of it, and so on. Arrays below the reply and bulk strings below
    /// its items are checked and skipped, not built.
    mutating func value(depth: Int = 0) throws -> RESPReply? {
        guard position < bytes.count else { return nil }
        let type = bytes[position]
        position += 1
        guard let line = self.line() else { return nil }
        switch type {
        case UInt8(ascii: "+"): return .simple(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: "-"): return .error(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: ":"): return .integer(try Self.integer(line))
        case UInt8(ascii: "$"):
            let length = try Self.integer(line)
            if length < 0 { return .bulk(nil) }
            guard length <= 512 * 1024 * 1024 else { throw RedisDriverError("a bulk string of \(length) bytes") }
            guard bytes.count - position >= Int(length) + 2 else { return nil }
            defer { position += Int(length) + 2 }
            return depth > 1 ? .skipped : .bulk(String(decoding: bytes[position..<position + Int(length)], as: UTF8.self))
        case UInt8(ascii: "*"):
            let count = try Self.integer(line)
            if count < 0 { return .array(nil) }
            var items: [RESPReply] = []
            if depth == 0 { items.reserveCapacity(Int(count)) }
            for _ in 0..<count {
                guard let item = try value(depth: depth + 1) else { return nil }
                if depth == 0 { items.append(item) }
            }
            return depth == 0 ? .array(items) : .skipped
        default:
            throw RedisDriverError("not a RESP2 reply: type byte \(type)")
        }
    }

    /// The bytes up to the next CRLF, which it moves past.
    private mutating func line() -> UnsafeRawBufferPointer.SubSequence? {
        var end = position
        while end + 1 < bytes.count {
            if bytes[end] == UInt8(ascii: "\r"), bytes[end + 1] == UInt8(ascii: "\n") {
                defer { position = end + 2 }
                return bytes[position..<end]
            }
            end += 1
        }
        return nil
    }

    private static func integer(_ digits: UnsafeRawBufferPointer.SubSequence) throws -> Int64 {
        guard let value = Int64(String(decoding: digits, as: UTF8.self)) else {
            throw RedisDriverError("not an integer: \(String(decoding: digits, as: UTF8.self))")
        }
        return value
    }
}
