import Foundation
import SessionProtocol

/// Typed wrappers over ``SessiondClient/call(_:_:timeout:)``, one per method.
extension SessiondClient {
    public func health() async throws -> Health.Result { try await call(Health.self, Empty()) }

    /// Gets or creates the session for a key and takes its lease. The call's timeout covers `waitMs`.
    public func acquire(_ params: SessionAcquire.Params) async throws -> SessionAcquire.Result {
        let wait = Duration.milliseconds(params.waitMs ?? 0)
        return try await call(SessionAcquire.self, params, timeout: configuration.timeout + wait)
    }

    public func complete(_ params: SessionComplete.Params) async throws -> SessionComplete.Result {
        try await call(SessionComplete.self, params)
    }

    public func renew(_ params: SessionRenew.Params) async throws -> Lease {
        try await call(SessionRenew.self, params).lease
    }

    @discardableResult
    public func release(sessionId: String, lease: LeaseProof) async throws -> Bool {
        try await call(SessionRelease.self, .init(sessionId: sessionId, lease: lease)).released
    }

    public func touch(_ params: SessionTouch.Params) async throws -> SessionInfo {
        try await call(SessionTouch.self, params).session
    }

    public func session(id: String) async throws -> SessionInfo {
        try await call(SessionGet.self, SessionSelector(sessionId: id)).session
    }

    public func session(key: String) async throws -> SessionInfo {
        try await call(SessionGet.self, SessionSelector(key: key)).session
    }

    public func list(_ params: SessionList.Params = .init()) async throws -> SessionList.Result {
        try await call(SessionList.self, params)
    }

    public func update(_ params: SessionUpdate.Params) async throws -> SessionInfo {
        try await call(SessionUpdate.self, params).session
    }

    @discardableResult
    public func delete(sessionId: String, force: Bool = false) async throws -> Bool {
        try await call(SessionDelete.self, .init(sessionId: sessionId, force: force)).deleted
    }

    public func fork(sessionId: String, key: String) async throws -> SessionInfo {
        try await call(SessionFork.self, .init(sessionId: sessionId, key: key)).session
    }

    public func history(sessionId: String) async throws -> [ChainLink] {
        try await call(SessionHistory.self, .init(sessionId: sessionId)).chain
    }

    public func appendMessages(_ params: MessagesAppend.Params) async throws -> MessagesAppend.Result {
        try await call(MessagesAppend.self, params)
    }

    public func messages(_ params: MessagesList.Params) async throws -> MessagesList.Result {
        try await call(MessagesList.self, params)
    }

    public func appendTranscript(_ params: TranscriptAppend.Params) async throws -> TranscriptAppend.Result {
        try await call(TranscriptAppend.self, params)
    }

    public func readTranscript(_ params: TranscriptRead.Params) async throws -> TranscriptRead.Result {
        try await call(TranscriptRead.self, params)
    }

    /// The whole stored transcript, read in chunks.
    public func downloadTranscript(sessionId: String, cliSessionId: String) async throws -> Data {
        var data = Data()
        while true {
            let chunk = try await readTranscript(
                .init(sessionId: sessionId, cliSessionId: cliSessionId, offset: data.count, limit: 4 * 1024 * 1024))
            data.append(chunk.data)
            if chunk.eof || chunk.data.isEmpty { return data }
        }
    }

    /// Uploads `data[offset...]` in chunks under the lease; returns the stored size.
    @discardableResult
    public func uploadTranscript(
        sessionId: String, lease: LeaseProof, cliSessionId: String, data: Data, from offset: Int
    ) async throws -> Int {
        var position = offset
        var size = offset
        let chunkSize = 4 * 1024 * 1024
        while position < data.count {
            let end = min(data.count, position + chunkSize)
            let result = try await appendTranscript(
                .init(
                    sessionId: sessionId, lease: lease, cliSessionId: cliSessionId, offset: position,
                    data: data.subdata(in: position..<end)))
            size = result.size
            position = end
        }
        return size
    }

    public func audit(_ params: AuditList.Params = .init()) async throws -> AuditList.Result {
        try await call(AuditList.self, params)
    }

    public func stats() async throws -> RegistryStats.Result { try await call(RegistryStats.self, Empty()) }

    public func createToken(tenant: String, admin: Bool = false, label: String? = nil) async throws
        -> TokensCreate.Result
    {
        try await call(TokensCreate.self, .init(tenant: tenant, admin: admin, label: label))
    }

    public func tokens() async throws -> [TokenInfo] { try await call(TokensList.self, Empty()).tokens }

    @discardableResult
    public func revokeToken(id: String) async throws -> Bool {
        try await call(TokensRevoke.self, .init(id: id)).revoked
    }
}
