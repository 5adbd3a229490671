import Foundation

/// `tokens.create` (admin): a new API token for a tenant. The secret is returned once; only its hash is kept.
public enum TokensCreate: RPCMethod {
    public static let name = "tokens.create"
    public static var access: RPCAccess { .admin }

    public struct Params: Codable, Sendable {
        public var tenant: String
        public var admin: Bool?
        public var label: String?
        public init(tenant: String, admin: Bool? = nil, label: String? = nil) {
            self.tenant = tenant
            self.admin = admin
            self.label = label
        }
    }

    public struct Result: Codable, Sendable, Equatable {
        public var token: String
        public var info: TokenInfo
        public init(token: String, info: TokenInfo) {
            self.token = token
            self.info = info
        }
    }
}

/// `tokens.list` (admin): every token, without secrets.
public enum TokensList: RPCMethod {
    public static let name = "tokens.list"
    public static var access: RPCAccess { .admin }
    public static var isIdempotent: Bool { true }
    public typealias Params = Empty

    public struct Result: Codable, Sendable, Equatable {
        public var tokens: [TokenInfo]
        public init(tokens: [TokenInfo]) { self.tokens = tokens }
    }
}

/// `tokens.revoke` (admin): the token stops working on its next request, also on open connections.
public enum TokensRevoke: RPCMethod {
    public static let name = "tokens.revoke"
    public static var access: RPCAccess { .admin }
    public static var isIdempotent: Bool { true }

    public struct Params: Codable, Sendable {
        public var id: String
        public init(id: String) { self.id = id }
    }

    public struct Result: Codable, Sendable, Equatable {
        public var revoked: Bool
        public init(revoked: Bool) { self.revoked = revoked }
    }
}
