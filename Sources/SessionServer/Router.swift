import Foundation
import Logging
import Metrics
import NIOCore
import NIOFoundationCompat
import SessionProtocol
import SessionStore

/// What a handler knows about the request it serves.
public struct RequestContext: Sendable {
    public var connection: Connection
    public var logger: Logger

    /// The tenant and actor every store call is scoped to.
    public var caller: Caller { connection.caller }
}

/// The one dispatch path: every method is registered with its types, and decoding, access checks,
/// logging, metrics, error mapping and encoding are written once, here.
public struct Router: Sendable {
    private struct Entry: Sendable {
        var access: RPCAccess
        var requests: Counter
        var failures: Counter
        var latency: Metrics.Timer
        var run: @Sendable (ByteBuffer, RPCID?, RequestContext) async throws -> ByteBuffer
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
            run: { frame, id, context in
                let params: M.Params
                do {
                    params = try Wire.decoder.decode(RPCParamsEnvelope<M.Params>.self, from: frame).params
                } catch {
                    throw SessionError.invalidParams(Wire.describe(error))
                }
                var context = context
                if let sessionId = (params as? any SessionReferencing)?.referencedSessionId {
                    context.logger[metadataKey: "session.id"] = "\(sessionId)"
                }
                let result = try await handler(params, context)
                if let result = result as? any WireWritable {
                    return WireWriter.success(id: id, result: result, allocator: Wire.allocator)
                }
                return try Wire.encoder.encodeAsByteBuffer(RPCSuccess(id: id, result: result), allocator: Wire.allocator)
            })
    }

    /// Answers one frame. Returns `nil` for a notification, which gets no response.
    func respond(to frame: ByteBuffer, connection: Connection, logger: Logger) async -> ByteBuffer? {
        guard Wire.isValidUTF8(frame) else {
            return Self.failure(id: nil, SessionError(.parseError, "the frame is not valid UTF-8"))
        }
        let head: RPCRequestHead
        do {
            head = try Wire.decoder.decode(RPCRequestHead.self, from: frame)
        } catch let error as DecodingError {
            if case .typeMismatch = error {
                // Valid JSON, but not an object: an array (a batch) or a scalar.
                let batch = frame.readableBytesView.first(where: { !" \t\r\n".utf8.contains($0) }) == UInt8(ascii: "[")
                return Self.failure(
                    id: nil,
                    SessionError(
                        .invalidRequest,
                        batch ? "batches are not supported; send one request per frame" : "a request must be a JSON object"))
            }
            return Self.failure(id: nil, SessionError(.parseError, Wire.describeParse(error)))
        } catch {
            return Self.failure(id: nil, SessionError(.parseError, Wire.describeParse(error)))
        }
        guard !head.hasInvalidID else {
            return Self.failure(id: nil, SessionError(.invalidRequest, "id must be an integer or a string"))
        }
        guard head.jsonrpc == "2.0" else {
            return Self.failure(id: head.id, SessionError(.invalidRequest, "jsonrpc must be \"2.0\""))
        }
        guard let method = head.method else {
            return Self.failure(id: head.id, SessionError(.invalidRequest, "method is missing or not a string"))
        }
        // A request without an id (or with a null id) is a notification: sessiond defines none, so it is
        // dropped unanswered.
        guard head.id != nil else { return nil }

        var logger = logger
        logger[metadataKey: "rpc.method"] = "\(method)"
        logger[metadataKey: "rpc.id"] = "\(head.id?.description ?? "null")"
        guard let entry = entries[method] else {
            return Self.failure(id: head.id, SessionError(.methodNotFound, "unknown method \(method.prefix(100))"))
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
            let response = try await entry.run(frame, head.id, RequestContext(connection: connection, logger: logger))
            logger.debug("request served")
            return response
        } catch {
            entry.failures.increment()
            let sessionError = Self.sessionError(for: error, logger: logger)
            Counter(label: "sessiond_errors_total", dimensions: [("reason", sessionError.code.rawValue)]).increment()
            return Self.failure(id: head.id, sessionError)
        }
    }

    /// Maps any error to what the wire may show: known errors as they are, everything else as `internal`
    /// with the detail only in the log.
    static func sessionError(for error: any Error, logger: Logger) -> SessionError {
        if let error = error as? SessionError {
            if error.code == .internal { logger.error("request failed", metadata: ["error": "\(error)"]) }
            return error
        }
        logger.error("request failed unexpectedly", metadata: ["error": "\(error)"])
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
    static let decoder = WireJSON.makeDecoder()
    static let allocator = ByteBufferAllocator()

    /// Whether the whole frame is UTF-8: the decoder skips over members it does not read without checking.
    static func isValidUTF8(_ frame: ByteBuffer) -> Bool {
        frame.withUnsafeReadableBytes { bytes in
            if !bytes.contains(where: { $0 >= 0x80 }) { return true }
            return String(validating: bytes, as: UTF8.self) != nil
        }
    }

    /// A decoding error as a message that names the field.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "params are not valid" }
        func path(_ context: DecodingError.Context) -> String {
            let names = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
                .filter { $0 != "params" }
            return names.isEmpty ? "params" : names.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
        }
        switch error {
        case .keyNotFound(let key, let context):
            let parent = path(context)
            return "\(parent == "params" ? "" : parent + ".")\(key.stringValue) is required"
        case .typeMismatch(let type, let context):
            return "\(path(context)) has the wrong type (expected \(Self.typeName(type)))"
        case .valueNotFound(let type, let context):
            return "\(path(context)) must not be null (expected \(Self.typeName(type)))"
        case .dataCorrupted(let context):
            // Foundation reports a number that does not fit its field as "not valid JSON" at the top, with
            // the specifics in the underlying error.
            let detail = context.underlyingError.map { "\($0)" } ?? context.debugDescription
            return "\(path(context)): \(detail.prefix(300))"
        @unknown default:
            return "params are not valid"
        }
    }

    static func describeParse(_ error: any Error) -> String {
        if let error = error as? DecodingError, case .dataCorrupted(let context) = error {
            return "not valid JSON: \(context.underlyingError.map { "\($0)" } ?? context.debugDescription)".prefix(300)
                .description
        }
        return "not valid JSON"
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "string"
        case is Int.Type, is Int64.Type, is Int32.Type: "integer"
        case is Double.Type: "number"
        case is Bool.Type: "boolean"
        default:
            "\(type)".contains("Dictionary") ? "object" : "\(type)".contains("Array") ? "array" : "\(type)"
        }
    }
}
