import Foundation

/// `hello`: identifies the client and, when auth is on, authenticates the connection.
public enum Hello: RPCMethod {
    public static let name = "hello"
    public static var access: RPCAccess { .anyone }
    public static var isIdempotent: Bool { true }

    public struct ClientInfo: Codable, Sendable, Equatable {
        public var name: String
        public var version: String?
        public init(name: String, version: String? = nil) {
            self.name = name
            self.version = version
        }
    }

    public struct Params: Codable, Sendable {
        public var client: ClientInfo
        public var protocolVersion: Int?
        public var token: String?
        public init(client: ClientInfo, protocolVersion: Int? = sessiondProtocolVersion, token: String? = nil) {
            self.client = client
            self.protocolVersion = protocolVersion
            self.token = token
        }
    }

    public struct Result: Codable, Sendable, Equatable {
        public var server: ClientInfo
        public var protocolVersion: Int
        public var tenant: String
        public var admin: Bool
        public var authRequired: Bool
        public var maxFrameBytes: Int
        public var maxInFlight: Int
        public init(
            server: ClientInfo, protocolVersion: Int, tenant: String, admin: Bool, authRequired: Bool,
            maxFrameBytes: Int, maxInFlight: Int
        ) {
            self.server = server
            self.protocolVersion = protocolVersion
            self.tenant = tenant
            self.admin = admin
            self.authRequired = authRequired
            self.maxFrameBytes = maxFrameBytes
            self.maxInFlight = maxInFlight
        }
    }
}

/// `health`: liveness and storage figures; callable without auth.
public enum Health: RPCMethod {
    public static let name = "health"
    public static var access: RPCAccess { .anyone }
    public static var isIdempotent: Bool { true }
    public typealias Params = Empty

    public struct Result: Codable, Sendable, Equatable {
        public var status: String
        public var version: String
        public var uptimeSeconds: Double
        public var connections: Int
        public var schemaVersion: String
        public init(status: String, version: String, uptimeSeconds: Double, connections: Int, schemaVersion: String) {
            self.status = status
            self.version = version
            self.uptimeSeconds = uptimeSeconds
            self.connections = connections
            self.schemaVersion = schemaVersion
        }
    }
}
