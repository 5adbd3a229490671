import Foundation

/// Claude Code (`claude -p`), as checked with version 2.1.329.
///
/// - Resume with `--resume <id>`; `--fork-session` makes a new id from it.
/// - `--output-format json` prints one result object (`--verbose`: an array ending with it);
///   `stream-json` prints one event per line, ending with `{"type":"result",…}`.
/// - `is_error: true` is a failure even when `subtype` is `success`.
/// - An unknown id exits 1 with `No conversation found with session ID: <id>` on stderr.
/// - Transcripts: `$CLAUDE_CONFIG_DIR` (else `$HOME/.claude`) `/projects/<cwd, every character other
///   than A–Z, a–z, 0–9 replaced by '-'>/<id>.jsonl`, append-only JSONL.
public struct ClaudeCodeAdapter: CLIAdapter {
    public let tool = "claude"

    public init() {}

    /// Flags the wrapper owns: the registry decides what to resume.
    static let ownedFlags: Set<String> = ["--resume", "-r", "--continue", "-c", "--session-id", "--fork-session"]

    /// Flags that take a value in the next argument, so that value is not the prompt.
    static let valueFlags: Set<String> = [
        "--output-format", "--input-format", "--model", "--fallback-model", "--system-prompt",
        "--system-prompt-file", "--append-system-prompt", "--append-system-prompt-file", "--permission-mode",
        "--permission-prompt-tool", "--max-turns", "--mcp-config", "--settings", "--setting-sources", "--add-dir",
        "--allowedTools", "--allowed-tools", "--disallowedTools", "--disallowed-tools", "--tools", "--agents",
        "--agent", "--betas", "--json-schema", "--max-budget-usd", "--plugin-dir", "--debug-file",
    ]

    public func plan(_ arguments: [String]) throws -> InvocationPlan {
        guard !arguments.isEmpty else { throw RunnerError.usage("give the CLI to run after --, e.g. -- claude -p \"hi\"") }
        for argument in arguments.dropFirst() {
            let flag = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            if Self.ownedFlags.contains(flag) {
                throw RunnerError.usage("\(flag) is managed by sessionctl run: the registry decides what to resume")
            }
        }
        var kept = [arguments[0]]
        var mode = InvocationPlan.OutputMode.text
        var promptIndex: Int?
        var index = 1
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "--output-format" || argument.hasPrefix("--output-format=") {
                let value: String
                if argument == "--output-format" {
                    value = index + 1 < arguments.count ? arguments[index + 1] : "text"
                    index += 2
                } else {
                    value = String(argument.dropFirst("--output-format=".count))
                    index += 1
                }
                switch value {
                case "json": mode = .json
                case "stream-json": mode = .streamJSON
                default: mode = .text
                }
                if mode != .text { kept += ["--output-format", value] }
                continue
            }
            kept.append(argument)
            if (argument == "-p" || argument == "--print"), promptIndex == nil, index + 1 < arguments.count,
                !arguments[index + 1].hasPrefix("-")
            {
                kept.append(arguments[index + 1])
                promptIndex = kept.count - 1
                index += 2
                continue
            }
            if Self.valueFlags.contains(argument), index + 1 < arguments.count {
                kept.append(arguments[index + 1])
                index += 2
                continue
            }
            if !argument.hasPrefix("-"), promptIndex == nil {
                promptIndex = kept.count - 1
            }
            index += 1
        }
        return InvocationPlan(arguments: kept, outputMode: mode, promptIndex: promptIndex)
    }

    public func arguments(for plan: InvocationPlan, resume cliSessionId: String?, fork: Bool, prompt: String?) -> [String] {
        var rest = Array(plan.arguments.dropFirst())
        if let prompt, let index = plan.promptIndex { rest[index - 1] = prompt }
        var added: [String] = []
        if let cliSessionId {
            added += ["--resume", cliSessionId]
            if fork { added.append("--fork-session") }
        }
        if plan.outputMode == .text { added += ["--output-format", "json"] }
        return [plan.arguments[0]] + added + rest
    }

    public func outcome(of run: CLIRun, plan: InvocationPlan) -> CLIOutcome {
        let result = Self.parseResult(run.stdout, streaming: plan.outputMode == .streamJSON)
        if run.stderr.contains("No conversation found with session ID") {
            return .resumeFailed(reason: "no_conversation_found")
        }
        guard let result else {
            let lastLine = run.stderr.split(separator: "\n").last.map(String.init) ?? ""
            let reason = run.interrupted ? "interrupted" : "exit_code_\(run.exitCode)\(lastLine.isEmpty ? "" : ": " + lastLine)"
            return .failed(reason: String(reason.prefix(200)), result: nil)
        }
        if result.isError || run.exitCode != 0 {
            let what = run.interrupted ? "interrupted" : "is_error (\(result.subtype ?? "unknown"))"
            return .failed(reason: String("\(what): \(result.text ?? "")".prefix(200)), result: result)
        }
        guard result.cliSessionId?.isEmpty == false else { return .failed(reason: "no_session_id", result: result) }
        return .success(result)
    }

    /// The last `{"type":"result"}` object: the whole output (an object, or an array ending with it), or
    /// the last such line of a stream.
    static func parseResult(_ output: Data, streaming: Bool) -> CLIResult? {
        func decode(_ object: Any) -> CLIResult? {
            guard let object = object as? [String: Any], object["type"] as? String == "result" else { return nil }
            let usage = object["usage"] as? [String: Any]
            return CLIResult(
                cliSessionId: object["session_id"] as? String, text: object["result"] as? String,
                isError: object["is_error"] as? Bool ?? false, subtype: object["subtype"] as? String,
                totalCostUsd: (object["total_cost_usd"] as? NSNumber)?.doubleValue,
                inputTokens: (usage?["input_tokens"] as? NSNumber)?.intValue,
                outputTokens: (usage?["output_tokens"] as? NSNumber)?.intValue)
        }
        if !streaming, let whole = try? JSONSerialization.jsonObject(with: output, options: [.fragmentsAllowed]) {
            if let array = whole as? [Any] { return array.lazy.reversed().compactMap(decode).first }
            return decode(whole)
        }
        // A stream, or JSON with noise around it: the last line that is a result object.
        for line in output.split(separator: UInt8(ascii: "\n")).reversed() {
            if let object = try? JSONSerialization.jsonObject(with: Data(line)), let result = decode(object) {
                return result
            }
        }
        return nil
    }

    public func transcriptURL(for cliSessionId: String, cwd: String, environment: [String: String]) -> URL {
        projectsDirectory(environment)
            .appendingPathComponent(Self.projectFolder(for: cwd))
            .appendingPathComponent("\(cliSessionId).jsonl")
    }

    public func findTranscript(for cliSessionId: String, cwd: String, environment: [String: String]) -> URL? {
        let expected = transcriptURL(for: cliSessionId, cwd: cwd, environment: environment)
        if FileManager.default.fileExists(atPath: expected.path) { return expected }
        // `--resume` finds a session started in another directory and keeps writing to its file there.
        let projects = projectsDirectory(environment)
        let folders = (try? FileManager.default.contentsOfDirectory(atPath: projects.path)) ?? []
        for folder in folders.sorted() {
            let candidate = projects.appendingPathComponent(folder).appendingPathComponent("\(cliSessionId).jsonl")
            if FileManager.default.fileExists(atPath: candidate.path) { return candidate }
        }
        return nil
    }

    private func projectsDirectory(_ environment: [String: String]) -> URL {
        let base =
            environment["CLAUDE_CONFIG_DIR"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: environment["HOME"] ?? NSHomeDirectory()).appendingPathComponent(".claude")
        return base.appendingPathComponent("projects")
    }

    /// `/work/my_app` → `-work-my-app`.
    static func projectFolder(for cwd: String) -> String {
        String(cwd.unicodeScalars.map { scalar in
            scalar.isASCII && CharacterSet.alphanumerics.contains(scalar) ? Character(scalar) : "-"
        })
    }
}

/// Why `sessionctl run` could not start a turn.
public enum RunnerError: Error, CustomStringConvertible {
    case usage(String)

    public var description: String {
        switch self {
        case .usage(let message): message
        }
    }
}
