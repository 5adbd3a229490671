import Foundation
import SessionProtocol

/// The turn a caller runs under a lease: the session, the lease and what to do with the CLI.
public struct Turn: Sendable {
    public var session: SessionInfo
    public var lease: Lease
    public var decision: ResumeDecision
    /// The stored transcript of the id to resume, if any bytes are stored.
    public var transcript: TranscriptState?
    public var created: Bool
}

/// How a turn ended, reported by the body of ``SessiondClient/turn(_:body:)``.
public struct TurnReport: Sendable {
    public var outcome: TurnOutcome
    public var cliSessionId: String?
    public var reason: String?
    public var costUsd: Double?
    public var inputTokens: Int?
    public var outputTokens: Int?
    public var messages: [NewMessage]?

    public static func ok(
        cliSessionId: String, costUsd: Double? = nil, inputTokens: Int? = nil, outputTokens: Int? = nil,
        messages: [NewMessage]? = nil
    ) -> TurnReport {
        TurnReport(
            outcome: .ok, cliSessionId: cliSessionId, costUsd: costUsd, inputTokens: inputTokens,
            outputTokens: outputTokens, messages: messages)
    }

    public static func resumeFailed(_ reason: String) -> TurnReport { TurnReport(outcome: .resumeFailed, reason: reason) }
    public static func error(_ reason: String) -> TurnReport { TurnReport(outcome: .error, reason: reason) }
}

extension SessiondClient {
    /// Acquires the session, runs `body` with the resume decision while renewing the lease, then records
    /// the outcome `body` reports. The lease is released also when `body` throws (recorded as `error`).
    public func turn(
        _ params: SessionAcquire.Params, body: (Turn) async throws -> TurnReport
    ) async throws -> SessionComplete.Result {
        let acquired = try await acquire(params)
        let turn = Turn(
            session: acquired.session, lease: acquired.lease, decision: acquired.decision,
            transcript: acquired.transcript, created: acquired.created)
        let sessionId = acquired.session.id
        let proof = acquired.lease.proof
        let leaseSeconds = params.leaseSeconds ?? 600
        let renewal = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(max(1, leaseSeconds / 3)))
                if Task.isCancelled { return }
                _ = try? await self.renew(.init(sessionId: sessionId, lease: proof, leaseSeconds: leaseSeconds))
            }
        }
        defer { renewal.cancel() }
        let report: TurnReport
        do {
            report = try await body(turn)
        } catch {
            renewal.cancel()
            do {
                _ = try await complete(
                    .init(sessionId: sessionId, lease: proof, outcome: .error, reason: "client error: \(error)".prefix(500).description))
            } catch {
                _ = try? await release(sessionId: sessionId, lease: proof)
            }
            throw error
        }
        renewal.cancel()
        return try await complete(
            .init(
                sessionId: sessionId, lease: proof, outcome: report.outcome, cliSessionId: report.cliSessionId,
                reason: report.reason, costUsd: report.costUsd, inputTokens: report.inputTokens,
                outputTokens: report.outputTokens, messages: report.messages))
    }
}
