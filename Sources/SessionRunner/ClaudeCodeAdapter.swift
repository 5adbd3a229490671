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

    /// Options (Claude Code 2.1.x, commander) that take one value, so the next argument is not the prompt.
    static let valueFlags: Set<String> = [
        "--agent", "--agents", "--append-system-prompt", "--append-system-prompt-file", "--autocompact",
        "--debug-file", "--effort", "--environment", "--fallback-model", "--input-format", "--json-schema",
        "--max-budget-usd", "--max-turns", "--model", "-n", "--name", "--output-format", "--permission-mode",
        "--permission-prompt-tool", "--permission-prompts", "--plugin-dir", "--plugin-url",
        "--remote-control-session-name-prefix", "--session-id", "--setting-sources", "--settings",
        "--system-prompt", "--system-prompt-file", "--system-prompt-snapshot",
    ]
    /// Options that take one or more values: they consume arguments up to the next option.
    static let variadicFlags: Set<String> = [
        "--add-dir", "--allowedTools", "--allowed-tools", "--betas", "--disallowedTools", "--disallowed-tools",
        "--file", "--mcp-config", "--tools",
    ]
    /// Options with an optional value: they consume the next argument unless it is an option.
    static let optionalValueFlags: Set<String> = [
        "-d", "--debug", "--cloud", "--from-pr", "--prompt-suggestions", "--remote-control", "-r", "--resume",
        "--teleport", "-w", "--worktree",
    ]

    public func plan(_ arguments: [String]) throws -> InvocationPlan {
        guard !arguments.isEmpty else { throw RunnerError.usage("give the CLI to run after --, e.g. -- claude -p \"hi\"") }
        for argument in arguments.dropFirst() {
            if argument == "--" { break }
            let flag = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            if Self.ownedFlags.contains(flag) {
                throw RunnerError.usage("\(flag) is managed by sessionctl run: the registry decides what to resume")
            }
        }
        // The output format: a text format (or none) is replaced by JSON, whose result text is printed.
        var kept = [arguments[0]]
        var mode = InvocationPlan.OutputMode.text
        var index = 1
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "--" {
                kept += arguments[index...]
                break
            }
            if argument == "--output-format" || argument.hasPrefix("--output-format=") {
                let value =
                    argument == "--output-format"
                    ? (index + 1 < arguments.count ? arguments[index + 1] : "text")
                    : String(argument.dropFirst("--output-format=".count))
                index += argument == "--output-format" ? 2 : 1
                mode = value == "json" ? .json : value == "stream-json" ? .streamJSON : .text
                if mode != .text { kept += ["--output-format", value] }
                continue
            }
            kept.append(argument)
            index += 1
        }
        return InvocationPlan(arguments: kept, outputMode: mode, promptIndex: Self.promptIndex(in: kept))
    }

    /// The index of the prompt: the argument right after `-p`/`--print` if it is not an option, else the
    /// first positional argument no option consumes; `nil` when the prompt comes on stdin.
    static func promptIndex(in arguments: [String]) -> Int? {
        var index = 1
        while index < arguments.count - 1 {
            if arguments[index] == "--" { break }
            if arguments[index] == "-p" || arguments[index] == "--print", !arguments[index + 1].hasPrefix("-") {
                return index + 1
            }
            index += 1
        }
        index = 1
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "--" { return index + 1 < arguments.count ? index + 1 : nil }
            guard argument.hasPrefix("-"), argument.count > 1 else { return index }
            index += 1
            if argument.hasPrefix("--"), argument.contains("=") { continue }
            if valueFlags.contains(argument) {
                index += 1
            } else if variadicFlags.contains(argument) {
                while index < arguments.count, !arguments[index].hasPrefix("-") { index += 1 }
            } else if optionalValueFlags.contains(argument), index < arguments.count, !arguments[index].hasPrefix("-") {
                index += 1
            }
        }
        return nil
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

    public func outcome(of run: CLIRun, plan: InvocationPlan, resumed: Bool) -> CLIOutcome {
        let result = Self.parseResult(run.stdout, streaming: plan.outputMode == .streamJSON)
        let marker = "No conversation found with session ID"
        if resumed, run.stderr.contains(marker) || String(decoding: run.stdout, as: UTF8.self).contains(marker) {
            return .resumeFailed(reason: "no_conversation_found")
        }
        if let result, !result.isError, run.exitCode == 0 {
            guard result.cliSessionId?.isEmpty == false else { return .failed(reason: "no_session_id", result: result) }
            return .success(result)
        }
        return .failed(reason: Self.failureReason(run, result), result: result)
    }

    /// The reason recorded for a failed turn; the same wording as the Python and Node clients.
    static func failureReason(_ run: CLIRun, _ result: CLIResult?) -> String {
        if let result, result.isError {
            let detail = result.text.map { ": \($0)" } ?? ""
            return short("is_error (\(result.subtype ?? "unknown"))\(detail)")
        }
        if run.exitCode > 128, run.exitCode < 160 {
            return "killed_by_\(signalName(run.exitCode - 128))"
        }
        if run.exitCode != 0 {
            let tail = run.stderr.split(separator: "\n").last.map { ": \($0)" } ?? ""
            return short("exit_code_\(run.exitCode)\(tail)")
        }
        return result == nil ? "no_result" : "no_session_id"
    }

    private static func short(_ text: String, limit: Int = 200) -> String {
        let folded = text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        return folded.count <= limit ? folded : String(folded.prefix(limit - 1)) + "…"
    }

    private static func signalName(_ number: Int32) -> String {
        [1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 6: "SIGABRT", 9: "SIGKILL", 13: "SIGPIPE", 15: "SIGTERM"][number]
            ?? "signal_\(number)"
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

    /// The CLI's folder for a working directory: `/work/my_app` → `-work-my-app`.
    ///
    /// As Claude Code does it: every UTF-16 unit that is not A–Z, a–z or 0–9 becomes `-`; a name over 200
    /// characters is cut to 200 and gets `-<hash>`, the Java-style string hash of the path in base 36.
    static func projectFolder(for cwd: String) -> String {
        let units = Array(cwd.utf16)
        let name = String(units.map { unit -> Character in
            let scalar = Unicode.Scalar(unit).map(Character.init)
            if let scalar, scalar.isASCII, scalar.isLetter || scalar.isNumber { return scalar }
            return "-"
        })
        guard name.count > 200 else { return name }
        var hash: Int32 = 0
        for unit in units { hash = (hash &<< 5) &- hash &+ Int32(unit) }
        let magnitude = hash == Int32.min ? UInt32(1) << 31 : UInt32(abs(hash))
        return String(name.prefix(200)) + "-" + String(magnitude, radix: 36)
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
