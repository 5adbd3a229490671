import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import NIOFoundationCompat
import SessionProtocol
import SessionStore

/// What a handler knows about the request it serves.
public struct RequestContext: Sendable {
    public var connection: Connection
    /// The connection's logger. A line about this request adds ``metadata``; the router does not set it on
    /// the logger itself, because a log handler may format its metadata each time it is set.
    public var logger: Logger
    public var method: String
    public var id: RPCID?
    /// The session the params name, once they are decoded.
    public var sessionId: String?

    /// The tenant and actor every store call is scoped to.
    public var caller: Caller { connection.caller }

    /// `rpc.method`, `rpc.id` and `session.id`, for a line about this request.
    public var metadata: Logger.Metadata {
        var metadata: Logger.Metadata = ["rpc.method": "\(method)", "rpc.id": "\(id?.description ?? "null")"]
        if let sessionId { metadata["session.id"] = "\(sessionId)" }
        return metadata
    }
}

/// The one dispatch path: every method is registered with its types, and decoding, access checks,
/// logging, metrics, error mapping and encoding are written once, here.
public struct Router: Sendable {
    private struct Entry: Sendable {
        var access: RPCAccess
        var requests: Counter
        var failures: Counter
        var latency: Metrics.Timer
        var run: @Sendable (RPCRequestEnvelope, inout RequestContext) async throws -> ByteBuffer
    }

    private var entries: [String: Entry] = [:]
    private let authenticator: Authenticator
    private let isShuttingDown: @Sendable () -> Bool

    init(authenticator: Authenticator, isShuttingDown: @escaping @Sendable () -> Bool) {
        self.authenticator = authenticator
        self.isShuttingDown = isShuttingDown
    }

    /// Registers the handler of a method.
    mutating func register<M: RPCMethod>(
        _ method: M.Type, _ handler: @escaping @Sendable (M.Params, RequestContext) async throws -> M.Result
    ) {
        let dimensions = [("method", M.name)]
        entries[M.name] = Entry(
            access: M.access,
            requests: Counter(label: "sessiond_requests_total", dimensions: dimensions),
            failures: Counter(label: "sessiond_request_errors_total", dimensions: dimensions),
            latency: Metrics.Timer(label: "sessiond_request_duration_seconds", dimensions: dimensions),
            run: { request, context in
                let params = try await Router.decode(large: request.params.map(Router.isLarge) ?? false) {
                    try request.decodeParams(M.Params.self)
                }
                context.sessionId = (params as? any SessionReferencing)?.referencedSessionId
                let result = try await handler(params, context)
                if let result = result as? any WireWritable {
                    return WireWriter.success(id: request.id, result: result, allocator: Wire.allocator)
                }
                return try Wire.encoder.encodeAsByteBuffer(
                    RPCSuccess(id: request.id, result: result), allocator: Wire.allocator)
            })
    }

    /// Answers one frame. Returns `nil` for a notification, which gets no response.
    func respond(to frame: ByteBuffer, connection: Connection, logger: Logger) async -> ByteBuffer? {
        let request: RPCRequestEnvelope
        do {
            request = try await Self.decode(large: Self.isLarge(frame)) { try RPCRequestEnvelope(parsing: frame) }
        } catch let refusal as RPCRequestEnvelope.Refusal {
            return Self.failure(id: nil, refusal.sessionError)
        } catch {
            return Self.failure(id: nil, Self.sessionError(for: error, logger: logger))
        }
        guard !request.hasInvalidID else {
            return Self.failure(id: nil, SessionError(.invalidRequest, "id must be an integer or a string"))
        }
        guard request.jsonrpc == "2.0" else {
            return Self.failure(id: request.id, SessionError(.invalidRequest, "jsonrpc must be \"2.0\""))
        }
        guard let method = request.method else {
            return Self.failure(id: request.id, SessionError(.invalidRequest, "method is missing or not a string"))
        }
        // A request without an id (or with a null id) is a notification: sessiond defines none, so it is
        // dropped unanswered.
        guard request.id != nil else { return nil }

        var context = RequestContext(connection: connection, logger: logger, method: method, id: request.id)
        guard let entry = entries[method] else {
            return Self.failure(id: request.id, SessionError(.methodNotFound, "unknown method \(method.prefix(100))"))
        }
        entry.requests.increment()
        let start = ContinuousClock.now
        defer {
            let elapsed = (ContinuousClock.now - start).components
            entry.latency.recordNanoseconds(elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
        }
        do {
            if isShuttingDown() { throw SessionError(.shuttingDown, "the server is shutting down; retry later") }
            try authenticator.authorize(connection, access: entry.access)
            let response = try await entry.run(request, &context)
            logger.debug("request served", metadata: context.metadata)
            return response
        } catch {
            entry.failures.increment()
            let sessionError = Self.sessionError(for: error, logger: logger, metadata: context.metadata)
            Counter(label: "sessiond_errors_total", dimensions: [("reason", sessionError.code.rawValue)]).increment()
            return Self.failure(id: request.id, sessionError)
        }
    }

    /// Runs decoding work, on ``largeFrameDecoder`` when the frame is large.
    ///
    /// Decoding a frame near the 16 MiB cap takes tens of milliseconds. On one thread of its own, one
    /// at a time, the large frames of a client (or of many) take at most one core from everyone else,
    /// and the cooperative pool stays free for the small requests.
    private static func decode<T: Sendable>(large: Bool, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        large ? try await largeFrameDecoder.runIfActive(body) : try body()
    }

    private static func isLarge(_ bytes: ByteBuffer) -> Bool { bytes.readableBytes >= 256 * 1024 }

    /// The one thread that decodes large frames, process-wide like NIO's singletons.
    private static let largeFrameDecoder: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        return pool
    }()

    /// Maps any error to what the wire may show: known errors as they are, everything else as `internal`
    /// with the detail only in the log.
    static func sessionError(for error: any Error, logger: Logger, metadata: Logger.Metadata = [:]) -> SessionError {
        if let error = error as? SessionError {
            if error.code == .internal {
                logger.error("request failed", metadata: metadata.merging(["error": "\(error)"]) { $1 })
            }
            return error
        }
        logger.error("request failed unexpectedly", metadata: metadata.merging(["error": "\(error)"]) { $1 })
        return SessionError(.internal, "internal error; the server log has the details")
    }

    static func failure(id: RPCID?, _ error: SessionError) -> ByteBuffer {
        (try? Wire.encoder.encodeAsByteBuffer(RPCFailure(id: id, error: error), allocator: Wire.allocator))
            ?? ByteBuffer(string: #"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}"#)
    }
}

/// Params that name a session, so the log can carry `session.id`.
protocol SessionReferencing {
    var referencedSessionId: String { get }
}

/// The shared JSON coders of the server.
enum Wire {
    static let encoder = WireJSON.makeEncoder(sortedKeys: false)
    static let allocator = ByteBufferAllocator()
}
