/// An error with a stable machine-readable reason, carried on the wire as a JSON-RPC error object.
///
/// `Code` is an open set: a client built against an older version still decodes a reason added later.
public struct SessionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A stable reason string (`data.reason` on the wire) plus its JSON-RPC error code.
    public struct Code: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        // Standard JSON-RPC 2.0 errors.
        public static let parseError = Code(rawValue: "parse_error")
        public static let invalidRequest = Code(rawValue: "invalid_request")
        public static let methodNotFound = Code(rawValue: "method_not_found")
        public static let invalidParams = Code(rawValue: "invalid_params")
        public static let `internal` = Code(rawValue: "internal")

        // Application errors.
        public static let notFound = Code(rawValue: "not_found")
        public static let leaseHeld = Code(rawValue: "lease_held")
        public static let staleLease = Code(rawValue: "stale_lease")
        public static let unauthenticated = Code(rawValue: "unauthenticated")
        public static let forbidden = Code(rawValue: "forbidden")
        public static let tooLarge = Code(rawValue: "too_large")
        public static let rateLimited = Code(rawValue: "rate_limited")
        public static let shuttingDown = Code(rawValue: "shutting_down")
        public static let conflict = Code(rawValue: "conflict")
        public static let storageFull = Code(rawValue: "storage_full")
        public static let unavailable = Code(rawValue: "unavailable")
        public static let overloaded = Code(rawValue: "overloaded")
        public static let timeout = Code(rawValue: "timeout")

        // Client-side errors: they never come from the server.
        /// The client could not connect to the server.
        public static let connectFailed = Code(rawValue: "connect_failed")
        /// The connection closed before the response arrived.
        public static let connectionClosed = Code(rawValue: "connection_closed")
        /// The server sent something that is not valid framing or JSON-RPC.
        public static let protocolError = Code(rawValue: "protocol_error")

        /// The numeric JSON-RPC error code for this reason (see docs/PROTOCOL.md).
        public var rpcCode: Int {
            Self.rpcCodes[self] ?? -32000
        }

        /// The reason for a numeric code, for errors that arrive without `data.reason`.
        public init(rpcCode: Int) {
            self = Self.rpcCodes.first { $0.value == rpcCode }?.key ?? .internal
        }

        private static let rpcCodes: [Code: Int] = [
            .parseError: -32700, .invalidRequest: -32600, .methodNotFound: -32601, .invalidParams: -32602,
            .internal: -32603,
            .notFound: -32001, .leaseHeld: -32002, .staleLease: -32003, .unauthenticated: -32004,
            .forbidden: -32005, .tooLarge: -32006, .rateLimited: -32007, .shuttingDown: -32008,
            .conflict: -32009, .storageFull: -32010, .unavailable: -32011, .overloaded: -32012,
            .timeout: -32013,
        ]
    }

    public var code: Code
    public var message: String
    /// Extra structured detail sent in `error.data` next to `reason` (for example the lease holder).
    public var detail: [String: JSONValue]

    public init(_ code: Code, _ message: String, detail: [String: JSONValue] = [:]) {
        self.code = code
        self.message = message
        self.detail = detail
    }

    public var description: String { "\(code.rawValue): \(message)" }

    public static func notFound(_ what: String) -> SessionError { SessionError(.notFound, "\(what) not found") }
    public static func invalidParams(_ message: String) -> SessionError { SessionError(.invalidParams, message) }
}
