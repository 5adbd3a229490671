import Foundation

/// A JSON-RPC request id: a number or a string.
public enum RPCID: Codable, Hashable, Sendable, CustomStringConvertible {
    case number(Int64)
    case string(String)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Int64.self) {
            self = .number(number)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        }
    }

    public var description: String {
        switch self {
        case .number(let value): String(value)
        case .string(let value): value
        }
    }
}

/// An outgoing request.
public struct RPCRequest<Params: Encodable>: Encodable {
    public var jsonrpc = "2.0"
    public var id: RPCID
    public var method: String
    public var params: Params

    public init(id: RPCID, method: String, params: Params) {
        self.id = id
        self.method = method
        self.params = params
    }
}

/// A successful response.
public struct RPCSuccess<Result: Encodable>: Encodable {
    public var jsonrpc = "2.0"
    public var id: RPCID?
    public var result: Result

    public init(id: RPCID?, result: Result) {
        self.id = id
        self.result = result
    }

    enum CodingKeys: String, CodingKey { case jsonrpc, id, result }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(jsonrpc, forKey: .jsonrpc)
        try container.encode(id, forKey: .id)  // `null` when the id could not be read
        try container.encode(result, forKey: .result)
    }
}

/// The `error` member of a failed response.
public struct RPCErrorObject: Codable, Sendable, Equatable {
    public var code: Int
    public var message: String
    public var data: [String: JSONValue]?

    public init(_ error: SessionError) {
        code = error.code.rpcCode
        message = error.message
        var data = error.detail
        data["reason"] = .string(error.code.rawValue)
        self.data = data
    }

    /// The error as a ``SessionError``, reading the reason from `data.reason`.
    public var sessionError: SessionError {
        var detail = data ?? [:]
        let reason = detail.removeValue(forKey: "reason")?.stringValue
        let code = reason.map(SessionError.Code.init(rawValue:)) ?? SessionError.Code(rpcCode: code)
        return SessionError(code, message, detail: detail)
    }
}

/// A failed response.
public struct RPCFailure: Encodable {
    public var jsonrpc = "2.0"
    public var id: RPCID?
    public var error: RPCErrorObject

    public init(id: RPCID?, error: SessionError) {
        self.id = id
        self.error = RPCErrorObject(error)
    }

    enum CodingKeys: String, CodingKey { case jsonrpc, id, error }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(jsonrpc, forKey: .jsonrpc)
        try container.encode(id, forKey: .id)
        try container.encode(error, forKey: .error)
    }
}

/// An incoming response, as a client reads it: the id plus either a result or an error.
public struct RPCResponseHead: Decodable, Sendable {
    public var id: RPCID?
    public var error: RPCErrorObject?
    /// Whether the message is a server notification (a `method` and no `id`).
    public var method: String?
}

/// Decodes only the `result` member of a response.
public struct RPCResultEnvelope<Result: Decodable>: Decodable {
    public var result: Result
}

/// A JSON-RPC method: its wire name and its parameter and result types, declared once.
public protocol RPCMethod: Sendable {
    associatedtype Params: Codable & Sendable
    associatedtype Result: Codable & Sendable
    /// The wire name, for example `session.acquire`.
    static var name: String { get }
    /// Who may call the method.
    static var access: RPCAccess { get }
    /// Whether repeating the call has no further effect, so a client may retry it after reconnecting.
    static var isIdempotent: Bool { get }
}

extension RPCMethod {
    public static var access: RPCAccess { .tenant }
    public static var isIdempotent: Bool { false }
}

/// Who may call a method.
public enum RPCAccess: Sendable {
    /// Callable before `hello`, even when auth is on.
    case anyone
    /// Needs an authenticated connection (or a server without auth); scoped to the caller's tenant.
    case tenant
    /// Needs an admin token (or a server without auth).
    case admin
}

/// Params or result with no fields.
public struct Empty: Codable, Sendable, Equatable {
    public init() {}

    public init(from decoder: any Decoder) throws {
        _ = try decoder.container(keyedBy: AnyKey.self)  // must be an object, even with no members
    }

    public func encode(to encoder: any Encoder) throws {
        _ = encoder.container(keyedBy: AnyKey.self)
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}

/// The protocol version this build speaks.
public let sessiondProtocolVersion = 1
