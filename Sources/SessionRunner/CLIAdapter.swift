import Foundation

/// What the wrapper needs to know about one AI CLI with resume semantics: how to pass the id to resume,
/// how to read the id and outcome it reports, and where its transcript lives.
///
/// ``TurnRunner`` is written against this protocol only; ``ClaudeCodeAdapter`` is the one implementation.
public protocol CLIAdapter: Sendable {
    /// The `tool` recorded with the session.
    var tool: String { get }

    /// Reads the caller's command line: where the prompt is and what output the caller expects.
    /// Throws for arguments the wrapper must own (for example `--resume`).
    func plan(_ arguments: [String]) throws -> InvocationPlan

    /// The command line of one run: the caller's arguments plus what resuming (or forking) needs, and the
    /// prompt replaced when a recap was prefixed.
    func arguments(for plan: InvocationPlan, resume cliSessionId: String?, fork: Bool, prompt: String?) -> [String]

    /// What one run did, read from its output; `resumed` says whether it was asked to resume.
    func outcome(of run: CLIRun, plan: InvocationPlan, resumed: Bool) -> CLIOutcome

    /// Where the CLI keeps the transcript of `cliSessionId` for a run in `cwd`.
    func transcriptURL(for cliSessionId: String, cwd: String, environment: [String: String]) -> URL

    /// The transcript of `cliSessionId` wherever the CLI put it, if it exists on this machine.
    func findTranscript(for cliSessionId: String, cwd: String, environment: [String: String]) -> URL?
}

/// The caller's command line, understood.
public struct InvocationPlan: Sendable, Equatable {
    public enum OutputMode: Sendable, Equatable {
        /// The caller wants plain text (or named no format): the wrapper asks for JSON and prints the result text.
        case text
        /// One JSON document; passed through as the CLI prints it.
        case json
        /// One JSON event per line; passed through line by line.
        case streamJSON
    }

    /// The caller's arguments, executable first, with any text output format removed.
    public var arguments: [String]
    public var outputMode: OutputMode
    /// The index in ``arguments`` of the prompt, when it is an argument (otherwise it comes on stdin).
    public var promptIndex: Int?

    public init(arguments: [String], outputMode: OutputMode, promptIndex: Int?) {
        self.arguments = arguments
        self.outputMode = outputMode
        self.promptIndex = promptIndex
    }

    public var prompt: String? { promptIndex.map { arguments[$0] } }
}

/// What one run of the CLI produced.
public struct CLIRun: Sendable {
    public var exitCode: Int32
    public var stdout: Data
    /// The end of standard error (the last 64 KiB).
    public var stderr: String
    /// Whether the wrapper forwarded an interrupt or termination signal to the CLI.
    public var interrupted: Bool

    public init(exitCode: Int32, stdout: Data, stderr: String, interrupted: Bool) {
        self.exitCode = exitCode
        self.stdout = stdout
        self.stderr = stderr
        self.interrupted = interrupted
    }
}

/// The result a CLI reported for a turn.
public struct CLIResult: Sendable, Equatable {
    public var cliSessionId: String?
    public var text: String?
    public var isError: Bool
    public var subtype: String?
    /// The CLI's running total cost for the session id (Claude Code reports a cumulative figure).
    public var totalCostUsd: Double?
    public var inputTokens: Int?
    public var outputTokens: Int?

    public init(
        cliSessionId: String?, text: String?, isError: Bool, subtype: String?, totalCostUsd: Double?,
        inputTokens: Int?, outputTokens: Int?
    ) {
        self.cliSessionId = cliSessionId
        self.text = text
        self.isError = isError
        self.subtype = subtype
        self.totalCostUsd = totalCostUsd
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
    }
}

/// How a run ended, as the registry records it.
public enum CLIOutcome: Sendable, Equatable {
    /// The turn ran and reported a session id that may be recorded.
    case success(CLIResult)
    /// The id to resume is unknown to the CLI.
    case resumeFailed(reason: String)
    /// Anything else; `result` is what the CLI printed, if anything.
    case failed(reason: String, result: CLIResult?)
}
