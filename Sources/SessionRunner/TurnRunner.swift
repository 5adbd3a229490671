import Foundation
import SessionClient
import SessionProtocol

/// What `sessionctl run` does when the CLI cannot resume the session it was told to.
public enum ResumeFailurePolicy: String, Sendable, CaseIterable {
    /// Start fresh, with a bounded recap of the stored history prefixed to the prompt.
    case recap
    /// Start fresh with the prompt as given.
    case fresh
    /// Stop with the CLI's error.
    case fail
}

/// One resumable CLI turn: acquire the key's session, restore the transcript if this machine lacks it,
/// run the CLI (resuming when told to), record what happened, and always give the lease back.
public struct TurnRunner: Sendable {
    /// How a turn runs; the defaults are `sessionctl run`'s.
    public struct Options: Sendable {
        public var key: String
        public var cwd: String
        public var holder: String
        public var wait: Duration = .seconds(600)
        public var leaseSeconds = 300
        public var onResumeFailure: ResumeFailurePolicy = .recap
        public var recordHistory = true
        public var recordTranscript = true
        /// Fork the key's session into this new key first, and run the turn there.
        public var forkKey: String?
        public var verbose = false
        public var environment: [String: String] = ProcessInfo.processInfo.environment

        public init(key: String, cwd: String, holder: String) {
            self.key = key
            self.cwd = cwd
            self.holder = holder
        }
    }

    /// What a turn did, for callers and tests.
    public struct Report: Sendable {
        public var exitCode: Int32
        public var key: String
        public var sessionId: String?
        public var cliSessionId: String?
        public var decision: ResumeDecision?
        public var recapUsed = false
        public var transcriptBytesUploaded = 0
        public var transcriptSize = 0
        public var recorded = true
    }

    public static let maxRecapCharacters = 8000

    let client: SessiondClient
    let adapter: any CLIAdapter
    let options: Options

    public init(client: SessiondClient, adapter: any CLIAdapter = ClaudeCodeAdapter(), options: Options) {
        self.client = client
        self.adapter = adapter
        self.options = options
    }

    /// Runs one turn of `arguments` (the CLI's command line, executable first).
    public func run(_ arguments: [String], standardInput: Data) async throws -> Report {
        let plan = try adapter.plan(arguments)
        var key = options.key
        if let forkKey = options.forkKey {
            let parent = try await client.session(key: options.key)
            _ = try await client.fork(sessionId: parent.id, key: forkKey)
            note("forked \(options.key) into \(forkKey)", always: true)
            key = forkKey
        }
        let acquired = try await client.acquire(
            .init(
                key: key, tool: adapter.tool, cwd: options.cwd, holder: options.holder,
                leaseSeconds: options.leaseSeconds, waitMs: Int(options.wait.components.seconds * 1000)))
        var report = Report(exitCode: 0, key: key, sessionId: acquired.session.id, decision: acquired.decision)
        note("key \(key): \(Self.describe(acquired.decision))")

        let lease = LeaseKeeper(client: client, sessionId: acquired.session.id, lease: acquired.lease.proof, seconds: options.leaseSeconds)
        defer { lease.stopRenewing() }
        do {
            try await runTurn(plan, acquired: acquired, input: standardInput, lease: lease, report: &report)
        } catch {
            // The turn could not be recorded: never leave the lease behind.
            await lease.releaseIfHeld()
            throw error
        }
        await lease.releaseIfHeld()
        return report
    }

    private func runTurn(
        _ plan: InvocationPlan, acquired: SessionAcquire.Result, input: Data, lease: LeaseKeeper, report: inout Report
    ) async throws {
        let sessionId = acquired.session.id
        var decision = acquired.decision
        let prompt = plan.prompt ?? String(decoding: input, as: UTF8.self)
        if decision.action == .resume, let id = decision.cliSessionId {
            try await restoreTranscript(sessionId: sessionId, cliSessionId: id, storedSize: acquired.transcript?.size ?? 0)
        }
        var recap: String?
        while true {
            let resume = decision.action == .resume ? decision.cliSessionId : nil
            let turnPrompt = recap.map { $0 + prompt }
            let arguments = adapter.arguments(
                for: plan, resume: resume, fork: decision.fork, prompt: plan.promptIndex == nil ? nil : turnPrompt)
            let stdin = plan.promptIndex == nil ? Data((turnPrompt ?? prompt).utf8) : input
            let run = try await CLIProcess(
                arguments: arguments, input: stdin, passThroughStdout: plan.outputMode != .text,
                environment: options.environment, workingDirectory: options.cwd
            ).run()
            report.exitCode = run.exitCode
            let outcome = adapter.outcome(of: run, plan: plan, resumed: resume != nil)

            switch outcome {
            case .resumeFailed(let reason) where resume != nil:
                let policy = options.onResumeFailure
                note("could not resume \(resume!) (\(reason)); \(policy == .fail ? "stopping" : "starting fresh\(policy == .recap ? " with a recap" : "")")", always: true)
                let failed = try await record(
                    lease, .init(sessionId: sessionId, lease: lease.proof, outcome: .resumeFailed, reason: reason, keepLease: policy != .fail),
                    report: &report)
                if policy == .fail || failed == nil {
                    lease.markReleased()
                    return
                }
                decision = failed?.decision ?? .fresh(.resumeFailed)
                if policy == .recap {
                    recap = try await makeRecap(sessionId: sessionId)
                    report.recapUsed = recap != nil
                }
                continue
            case .success(let result):
                let id = result.cliSessionId!
                report.cliSessionId = id
                if plan.outputMode == .text { print(result.text ?? "") }
                if options.recordTranscript {
                    let offset = id == acquired.decision.cliSessionId ? (acquired.transcript?.size ?? 0) : 0
                    await uploadTranscript(sessionId: sessionId, lease: lease, cliSessionId: id, from: offset, report: &report)
                }
                var messages: [NewMessage]?
                if options.recordHistory {
                    messages = [NewMessage(role: .user, content: prompt), NewMessage(role: .assistant, content: result.text ?? "")]
                }
                _ = try await record(
                    lease,
                    .init(
                        sessionId: sessionId, lease: lease.proof, outcome: .ok, cliSessionId: id,
                        cliTotalCostUsd: result.totalCostUsd, inputTokens: result.inputTokens,
                        outputTokens: result.outputTokens, messages: messages),
                    report: &report)
                lease.markReleased()
                return
            case .resumeFailed(let reason), .failed(let reason, _):
                if case .failed(_, let result?) = outcome, plan.outputMode == .text, let text = result.text {
                    print(text)
                }
                _ = try await record(
                    lease, .init(sessionId: sessionId, lease: lease.proof, outcome: .error, reason: reason), report: &report)
                lease.markReleased()
                return
            }
        }
    }

    /// Records an outcome; if the registry went away, says so on stderr and lets the turn finish.
    private func record(
        _ lease: LeaseKeeper, _ params: SessionComplete.Params, report: inout Report
    ) async throws -> SessionComplete.Result? {
        do {
            return try await client.complete(params)
        } catch let error as SessionError
            where [.connectionClosed, .connectFailed, .timeout, .unavailable, .shuttingDown].contains(error.code)
        {
            report.recorded = false
            note(
                "the registry is unreachable, so this turn was not recorded (\(params.outcome.rawValue)\(params.cliSessionId.map { ", cli session \($0)" } ?? "")): \(error.message)",
                always: true)
            return nil
        }
    }

    /// Makes sure the CLI finds the transcript of `cliSessionId` on this machine, restoring it from the
    /// registry when the registry holds more of it than the local file does (or the file is missing).
    func restoreTranscript(sessionId: String, cliSessionId: String, storedSize: Int) async throws {
        let local = adapter.findTranscript(for: cliSessionId, cwd: options.cwd, environment: options.environment)
        let localSize = local.map { Self.fileSize($0) } ?? 0
        guard storedSize > localSize else { return }
        let data = try await client.downloadTranscript(sessionId: sessionId, cliSessionId: cliSessionId)
        let target = local ?? adapter.transcriptURL(for: cliSessionId, cwd: options.cwd, environment: options.environment)
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: target, options: .atomic)
        note("restored the transcript of \(cliSessionId) (\(data.count) bytes) to \(target.path)")
    }

    /// Uploads what the transcript gained since `offset`; failures are reported, not fatal.
    private func uploadTranscript(
        sessionId: String, lease: LeaseKeeper, cliSessionId: String, from offset: Int, report: inout Report
    ) async {
        guard let url = adapter.findTranscript(for: cliSessionId, cwd: options.cwd, environment: options.environment),
            let data = try? Data(contentsOf: url)
        else {
            note("no local transcript for \(cliSessionId) to upload")
            return
        }
        report.transcriptSize = data.count
        guard data.count > offset else { return }
        do {
            try await client.uploadTranscript(
                sessionId: sessionId, lease: lease.proof, cliSessionId: cliSessionId, data: data, from: offset)
            report.transcriptBytesUploaded = data.count - offset
            note("uploaded \(data.count - offset) new transcript bytes (transcript is \(data.count) bytes)")
        } catch {
            note("could not store the transcript: \(error)", always: true)
        }
    }

    /// A bounded recap of the stored history: the newest messages that fit, oldest first.
    private func makeRecap(sessionId: String) async throws -> String? {
        let messages = try await client.messages(.init(sessionId: sessionId, tail: 20)).messages
        return Self.recap(of: messages, limit: Self.maxRecapCharacters)
    }

    static func recap(of messages: [Message], limit: Int) -> String? {
        let header = "[Recap of the earlier conversation, which could not be resumed]\n"
        let footer = "[End of recap]\n\n"
        var budget = limit - header.count - footer.count
        var lines: [String] = []
        for message in messages.reversed() {
            let line = "\(message.role.rawValue): \(message.content)\n"
            if line.count > budget {
                // The newest message alone is too long: keep its end, closest to the new prompt.
                let stub = "\(message.role.rawValue): …\n"
                if lines.isEmpty, budget > stub.count {
                    lines.append("\(message.role.rawValue): …\(message.content.suffix(budget - stub.count))\n")
                }
                break
            }
            lines.insert(line, at: 0)
            budget -= line.count
        }
        guard !lines.isEmpty else { return nil }
        return header + lines.joined() + footer
    }

    private func note(_ message: String, always: Bool = false) {
        guard always || options.verbose else { return }
        FileHandle.standardError.write(Data("sessionctl: \(message)\n".utf8))
    }

    static func describe(_ decision: ResumeDecision) -> String {
        decision.action == .resume
            ? "resuming \(decision.cliSessionId ?? "")\(decision.fork ? " as a fork" : "")"
            : "starting fresh (\(decision.reason?.rawValue ?? "new"))"
    }

    static func fileSize(_ url: URL) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.intValue ?? 0
    }
}

/// Holds the turn's lease: renews it in the background and makes sure it is given back exactly once.
final class LeaseKeeper: @unchecked Sendable {
    let proof: LeaseProof
    private let client: SessiondClient
    private let sessionId: String
    private let lock = NSLock()
    private var released = false
    private var renewal: Task<Void, Never>?

    init(client: SessiondClient, sessionId: String, lease: LeaseProof, seconds: Int) {
        self.client = client
        self.sessionId = sessionId
        self.proof = lease
        renewal = Task { [client] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(max(1, seconds / 3)))
                guard !Task.isCancelled else { return }
                _ = try? await client.renew(.init(sessionId: sessionId, lease: lease, leaseSeconds: seconds))
            }
        }
    }

    func stopRenewing() {
        lock.withLock { renewal?.cancel() }
    }

    /// The lease was released by `session.complete`.
    func markReleased() {
        lock.withLock { released = true }
    }

    func releaseIfHeld() async {
        stopRenewing()
        let needed = lock.withLock { () -> Bool in
            defer { released = true }
            return !released
        }
        if needed { _ = try? await client.release(sessionId: sessionId, lease: proof) }
    }
}
