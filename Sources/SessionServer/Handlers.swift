import Foundation
import Metrics
import SessionProtocol
import SessionStore

/// The version reported by `hello` and `health`.
public let sessiondVersion = "0.1.0"

extension Router {
    /// A router with every method of the protocol registered against `store`.
    static func sessiond(
        store: SessionDatabase, authenticator: Authenticator, configuration: RPCServer.Configuration,
        startedAt: ContinuousClock.Instant, connectionCount: @escaping @Sendable () -> Int,
        isShuttingDown: @escaping @Sendable () -> Bool
    ) -> Router {
        var router = Router(authenticator: authenticator, isShuttingDown: isShuttingDown)
        let leaseGrants = Counter(label: "sessiond_lease_grants_total")
        let leaseConflicts = Counter(label: "sessiond_lease_conflicts_total")

        router.register(Hello.self) { params, context in
            guard (params.protocolVersion ?? sessiondProtocolVersion) <= sessiondProtocolVersion else {
                throw SessionError.invalidParams(
                    "protocol version \(params.protocolVersion ?? 0) is not supported; this server speaks \(sessiondProtocolVersion)")
            }
            try Validate.clientName(params.client.name)
            let grant = try await authenticator.authenticate(
                token: params.token, peerHost: context.connection.peerHost, clientName: params.client.name)
            context.connection.identify(clientName: params.client.name, grant: grant)
            let authRequired = authenticator.authRequired
            return Hello.Result(
                server: .init(name: "sessiond", version: sessiondVersion), protocolVersion: sessiondProtocolVersion,
                tenant: grant?.tenant ?? (authRequired ? "" : Authenticator.localTenant),
                admin: grant?.admin ?? !authRequired,
                authRequired: authRequired, maxFrameBytes: configuration.maxFrameBytes,
                maxInFlight: configuration.maxInFlight)
        }
        router.register(Health.self) { _, _ in
            Health.Result(
                status: "ok", version: sessiondVersion,
                uptimeSeconds: Double((ContinuousClock.now - startedAt).components.seconds),
                connections: connectionCount(), schemaVersion: store.schemaVersion)
        }
        router.register(SessionAcquire.self) { params, context in
            do {
                let result = try await store.acquire(params, caller: context.caller)
                leaseGrants.increment()
                Counter(label: "sessiond_decisions_total", dimensions: [("action", result.decision.action.rawValue)])
                    .increment()
                return result
            } catch let error as SessionError where error.code == .leaseHeld {
                leaseConflicts.increment()
                throw error
            }
        }
        router.register(SessionComplete.self) { params, context in
            let result = try await store.complete(params, caller: context.caller)
            Counter(label: "sessiond_turn_outcomes_total", dimensions: [("outcome", params.outcome.rawValue)]).increment()
            return result
        }
        router.register(SessionRenew.self) { try await store.renew($0, caller: $1.caller) }
        router.register(SessionRelease.self) { try await store.release($0, caller: $1.caller) }
        router.register(SessionTouch.self) { .init(session: try await store.touch($0, caller: $1.caller)) }
        router.register(SessionGet.self) { .init(session: try await store.get($0, caller: $1.caller)) }
        router.register(SessionList.self) { try await store.list($0, caller: $1.caller) }
        router.register(SessionUpdate.self) { .init(session: try await store.update($0, caller: $1.caller)) }
        router.register(SessionDelete.self) { .init(deleted: try await store.delete($0, caller: $1.caller)) }
        router.register(SessionFork.self) { .init(session: try await store.fork($0, caller: $1.caller)) }
        router.register(SessionHistory.self) { .init(chain: try await store.history($0, caller: $1.caller)) }
        router.register(MessagesAppend.self) { try await store.appendMessages($0, caller: $1.caller) }
        router.register(MessagesList.self) { try await store.listMessages($0, caller: $1.caller) }
        router.register(TranscriptAppend.self) { try await store.appendTranscript($0, caller: $1.caller) }
        router.register(TranscriptRead.self) { try await store.readTranscript($0, caller: $1.caller) }
        router.register(AuditList.self) { params, context in
            var caller = context.caller
            if let tenant = params.tenant, tenant != caller.tenant {
                guard authenticator.isAdmin(context.connection) else {
                    throw SessionError(.forbidden, "reading another tenant's audit log needs an admin token")
                }
                caller.tenant = tenant
            }
            return try await store.listAudit(params, caller: caller)
        }
        router.register(RegistryStats.self) { try await store.stats(caller: $1.caller) }
        router.register(TokensCreate.self) { params, context in
            let result = try await store.createToken(params, caller: context.caller)
            try await authenticator.reload()
            return result
        }
        router.register(TokensList.self) { _, _ in .init(tokens: try await store.listTokens()) }
        router.register(TokensRevoke.self) { params, context in
            let revoked = try await store.revokeToken(params, caller: context.caller)
            try await authenticator.reload()
            return .init(revoked: revoked)
        }
        return router
    }
}

enum Validate {
    static func clientName(_ name: String) throws {
        guard !name.isEmpty, name.utf8.count <= 256,
            !name.containsControlCharacter
        else {
            throw SessionError.invalidParams("client.name must be 1 to 256 bytes without control characters")
        }
    }
}

extension SessionComplete.Params: SessionReferencing { var referencedSessionId: String { sessionId } }
extension SessionRenew.Params: SessionReferencing { var referencedSessionId: String { sessionId } }
extension SessionRelease.Params: SessionReferencing { var referencedSessionId: String { sessionId } }
extension SessionUpdate.Params: SessionReferencing { var referencedSessionId: String { sessionId } }
extension SessionDelete.Params: SessionReferencing { var referencedSessionId: String { sessionId } }
extension SessionFork.Params: SessionReferencing { var referencedSessionId: String { sessionId } }
extension SessionHistory.Params: SessionReferencing { var referencedSessionId: String { sessionId } }
extension MessagesAppend.Params: SessionReferencing { var referencedSessionId: String { sessionId } }
extension MessagesList.Params: SessionReferencing { var referencedSessionId: String { sessionId } }
extension TranscriptAppend.Params: SessionReferencing { var referencedSessionId: String { sessionId } }
extension TranscriptRead.Params: SessionReferencing { var referencedSessionId: String { sessionId } }
