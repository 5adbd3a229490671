import Foundation
import SessionProtocol
import SessionStore
import Synchronization

/// Decides who a connection is and what it may call.
///
/// Auth is on as soon as one unrevoked token exists. Tokens are looked up by the SHA-256 of the secret,
/// so no secret is kept in memory or on disk, and a revoked token fails on its next request, also on a
/// connection that is already open. Failed `hello`s are rate-limited per peer host.
public final class Authenticator: Sendable {
    public static let localTenant = "local"

    public struct RateLimit: Sendable {
        public var maxFailures = 10
        public var window: Duration = .seconds(60)
        public var blockFor: Duration = .seconds(60)
        public init() {}
    }

    private struct Failures {
        var count: Int
        var windowStart: ContinuousClock.Instant
        var blockedUntil: ContinuousClock.Instant?
    }

    private struct State {
        var tokens: [Data: TokenGrant] = [:]
        var activeIDs: Set<String> = []
        var failures: [String: Failures] = [:]
    }

    private let store: SessionDatabase
    private let rateLimit: RateLimit
    private let state = Mutex(State())

    public init(store: SessionDatabase, rateLimit: RateLimit = RateLimit()) async throws {
        self.store = store
        self.rateLimit = rateLimit
        try await reload()
    }

    /// Whether any token exists, so that every connection must authenticate.
    public var authRequired: Bool { state.withLock { !$0.tokens.isEmpty } }

    /// Re-reads the tokens after one was created or revoked.
    public func reload() async throws {
        let tokens = try await store.activeTokens()
        state.withLock { state in
            state.tokens = tokens
            state.activeIDs = Set(tokens.values.map(\.id))
        }
    }

    /// Checks a `hello` token. Returns the grant, or `nil` when auth is off or no token was given (then
    /// every method but `hello` and `health` answers `unauthenticated`). Only a wrong token counts as a
    /// failed attempt.
    func authenticate(token: String?, peerHost: String, clientName: String) async throws -> TokenGrant? {
        let now = ContinuousClock.now
        let (blockedFor, required, grant): (Duration?, Bool, TokenGrant?) = state.withLock { state in
            if let until = state.failures[peerHost]?.blockedUntil, until > now {
                return (until - now, true, nil)
            }
            return (nil, !state.tokens.isEmpty, token.flatMap { state.tokens[SessionDatabase.tokenHash($0)] })
        }
        if let blockedFor {
            let ms = Int(blockedFor.components.seconds * 1000 + blockedFor.components.attoseconds / 1_000_000_000_000_000)
            throw SessionError(
                .rateLimited, "too many failed hellos from this address; retry in \(ms / 1000 + 1) s",
                detail: ["retryAfterMs": .number(Double(ms))])
        }
        guard required, token != nil else { return nil }
        if let grant { return grant }
        recordFailure(peerHost: peerHost, now: now)
        try? await store.auditAuthFailure(actor: clientName, peer: peerHost, reason: "unknown or revoked token")
        throw SessionError(.unauthenticated, "the token is not valid")
    }

    private func recordFailure(peerHost: String, now: ContinuousClock.Instant) {
        state.withLock { state in
            if state.failures.count > 10_000 {
                state.failures = state.failures.filter { ($0.value.blockedUntil ?? $0.value.windowStart + rateLimit.window) > now }
            }
            var entry = state.failures[peerHost] ?? Failures(count: 0, windowStart: now, blockedUntil: nil)
            if now - entry.windowStart > rateLimit.window {
                entry = Failures(count: 0, windowStart: now, blockedUntil: nil)
            }
            entry.count += 1
            if entry.count >= rateLimit.maxFailures {
                entry.blockedUntil = now + rateLimit.blockFor
                entry.count = 0
                entry.windowStart = now
            }
            state.failures[peerHost] = entry
        }
    }

    /// Whether the connection may call admin methods.
    func isAdmin(_ connection: Connection) -> Bool {
        (try? authorize(connection, access: .admin)) != nil
    }

    /// Refuses a call the connection may not make.
    func authorize(_ connection: Connection, access: RPCAccess) throws {
        guard access != .anyone else { return }
        let grant = connection.grant
        let (required, active) = state.withLock { state in
            (!state.tokens.isEmpty, grant.map { state.activeIDs.contains($0.id) } ?? false)
        }
        guard required else { return }
        guard let grant else {
            throw SessionError(.unauthenticated, "send hello with a valid token first")
        }
        guard active else { throw SessionError(.unauthenticated, "the token was revoked") }
        if access == .admin, !grant.admin {
            throw SessionError(.forbidden, "this method needs an admin token")
        }
    }
}
