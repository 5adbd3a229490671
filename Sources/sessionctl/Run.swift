import ArgumentParser
import Foundation
import SessionClient
import SessionRunner

/// `sessionctl run [--key K] -- claude -p …`: a drop-in wrapper that makes a CLI call resumable.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one CLI turn that continues the key's conversation.",
        discussion: """
            Acquires the key's session (waiting while another process is in it), restores the CLI's \
            transcript if this machine lacks it, runs the CLI with --resume when there is a conversation to \
            continue, records the reported session id, cost, messages and transcript, and releases the \
            lease. Exits with the CLI's exit code. Example:
              sessionctl run --key project:acme -- claude -p "what did we decide yesterday?"
            """)

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "The conversation's key. [SESSIOND_KEY] (default: cwd:<working directory>)")
    var key: String?

    @Option(help: "Seconds to wait while another process holds the session.")
    var wait: Double = 600

    @Option(help: "Lease duration in seconds (renewed while the CLI runs).")
    var lease: Int = 300

    @Option(help: "On a failed resume: recap (start fresh with a recap of the history), fresh, or fail.")
    var onResumeFailure: ResumeFailurePolicy = .recap

    @Flag(help: "Do not record the prompt and the result as messages.")
    var noHistory = false

    @Flag(help: "Do not store the CLI's transcript in the registry.")
    var noTranscript = false

    @Flag(help: "Fork the conversation: continue it under a new key (see --fork-key), leaving this one as it is.")
    var fork = false

    @Option(help: "The new key for --fork (default: <key>:fork:<8 hex digits>).")
    var forkKey: String?

    @Flag(name: .shortAndLong, help: "Say on stderr which key is used and what the registry decided.")
    var verbose = false

    @Argument(parsing: .postTerminator, help: "The CLI command line, after --.")
    var command: [String] = []

    func validate() throws {
        if command.isEmpty { throw ValidationError("give the CLI to run after --, e.g. -- claude -p \"hello\"") }
        if forkKey != nil, !fork { throw ValidationError("--fork-key goes with --fork") }
    }

    func run() async throws {
        let cwd = FileManager.default.currentDirectoryPath
        let environment = ProcessInfo.processInfo.environment
        let resolvedKey = key ?? environment["SESSIOND_KEY"].flatMap { $0.isEmpty ? nil : $0 } ?? "cwd:\(cwd)"
        let hostname = ProcessInfo.processInfo.hostName
        var options = TurnRunner.Options(
            key: resolvedKey, cwd: cwd, holder: "sessionctl run@\(hostname) pid \(getpid())")
        options.wait = .milliseconds(Int64(wait * 1000))
        options.leaseSeconds = lease
        options.onResumeFailure = onResumeFailure
        options.recordHistory = !noHistory
        options.recordTranscript = !noTranscript
        options.verbose = verbose
        if fork {
            options.forkKey = forkKey ?? "\(resolvedKey):fork:\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        }
        if verbose {
            FileHandle.standardError.write(Data("sessionctl: using key \(resolvedKey)\n".utf8))
        }
        let input = readStandardInput()
        let report = try await connection.withClient { client in
            try await TurnRunner(client: client, options: options).run(command, standardInput: input)
        }
        throw ExitCode(report.exitCode)
    }
}

extension ResumeFailurePolicy: ExpressibleByArgument {}
