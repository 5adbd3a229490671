import Crypto
import Foundation
import GRDB
import SessionProtocol

/// What a valid token grants.
public struct TokenGrant: Sendable, Equatable {
    public var id: String
    public var tenant: String
    public var admin: Bool
}

extension SessionDatabase {
    /// Creates a token and returns its secret, which is never stored: only its SHA-256 is.
    public func createToken(_ params: TokensCreate.Params, caller: Caller) async throws -> TokensCreate.Result {
        try Validate.name(params.tenant, field: "tenant", maxBytes: 128)
        try Validate.optionalText(params.label, field: "label", maxBytes: 256)
        let secret = "sdt_" + Self.randomToken(bytes: 32)
        let id = "tok_" + Self.randomToken(bytes: 6)
        let hash = Self.tokenHash(secret)
        return try await write { db in
            let now = self.nowMs
            try db.execute(
                sql: "INSERT INTO apiToken(id, tenant, hash, admin, label, createdAt) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [id, params.tenant, hash, params.admin ?? false, params.label, now])
            try self.audit(
                db, tenant: params.tenant, actor: caller.actor, sessionId: nil, key: nil, action: "token.create",
                detail: ["tokenId": .string(id), "admin": .bool(params.admin ?? false)], at: now)
            return TokensCreate.Result(
                token: secret,
                info: TokenInfo(
                    id: id, tenant: params.tenant, admin: params.admin ?? false, label: params.label,
                    createdAt: Date(ms: now), revokedAt: nil))
        }
    }

    public func listTokens() async throws -> [TokenInfo] {
        try await read { db in
            try Row.fetchAll(
                db, sql: "SELECT id, tenant, admin, label, createdAt, revokedAt FROM apiToken ORDER BY createdAt, id"
            ).map { row in
                TokenInfo(
                    id: row[0], tenant: row[1], admin: row[2], label: row[3], createdAt: Date(ms: row[4]),
                    revokedAt: (row[5] as Int64?).map(Date.init(ms:)))
            }
        }
    }

    /// Revokes a token; `false` if it was already revoked.
    public func revokeToken(_ params: TokensRevoke.Params, caller: Caller) async throws -> Bool {
        try await write { db in
            let now = self.nowMs
            guard let tenant = try String.fetchOne(db, sql: "SELECT tenant FROM apiToken WHERE id = ?", arguments: [params.id])
            else { throw SessionError.notFound("token") }
            try db.execute(
                sql: "UPDATE apiToken SET revokedAt = ? WHERE id = ? AND revokedAt IS NULL", arguments: [now, params.id])
            let revoked = db.changesCount > 0
            if revoked {
                try self.audit(
                    db, tenant: tenant, actor: caller.actor, sessionId: nil, key: nil, action: "token.revoke",
                    detail: ["tokenId": .string(params.id)], at: now)
            }
            return revoked
        }
    }

    /// Every unrevoked token, by hash, for the server's in-memory auth table.
    public func activeTokens() async throws -> [Data: TokenGrant] {
        try await read { db in
            var grants: [Data: TokenGrant] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT hash, id, tenant, admin FROM apiToken WHERE revokedAt IS NULL") {
                grants[row[0]] = TokenGrant(id: row[1], tenant: row[2], admin: row[3])
            }
            return grants
        }
    }

    /// Records a failed authentication in the audit log.
    public func auditAuthFailure(actor: String, peer: String, reason: String) async throws {
        try await write { db in
            try self.audit(
                db, tenant: "", actor: actor, sessionId: nil, key: nil, action: "auth.failed", outcome: "refused",
                detail: ["peer": .string(peer), "reason": .string(reason)], at: self.nowMs)
        }
    }

    /// The SHA-256 of a token secret, as stored.
    public static func tokenHash(_ secret: String) -> Data {
        Data(SHA256.hash(data: Data(secret.utf8)))
    }
}
