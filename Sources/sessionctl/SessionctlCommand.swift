import ArgumentParser
import Foundation
import SessionClient
import SessionProtocol

/// `sessionctl`: administer a sessiond, script it, and wrap AI CLI calls so they resume.
@main
struct SessionctlCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessionctl",
        abstract: "Administer and script sessiond, and make AI CLI calls resumable.",
        discussion: """
            Exit codes: 0 ok, 1 server error (its reason on stderr), 2 usage error, 3 cannot connect.
            `sessionctl run` exits with the wrapped CLI's exit code.
            """,
        version: "0.1.0",
        subcommands: [
            Run.self, Show.self, List.self, History.self, Messages.self, Audit.self, Stats.self, Health.self,
            Acquire.self, Complete.self, Renew.self, Release.self, Touch.self, Delete.self, Fork.self, Tokens.self,
        ])

    /// Runs the command and maps every failure to the documented exit codes.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as SessionError {
            FileHandle.standardError.write(Data("sessionctl: \(error.code.rawValue): \(error.message)\n".utf8))
            Foundation.exit(error.code == .connectFailed ? 3 : 1)
        } catch let error as ExitCode {
            Foundation.exit(error.rawValue)
        } catch {
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                print(message)
                Foundation.exit(0)
            }
            FileHandle.standardError.write(Data((message.isEmpty ? "\(error)" : message).utf8 + [0x0a]))
            Foundation.exit(2)
        }
    }
}

/// Where and how to reach sessiond; shared by every subcommand.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "sessiond address HOST:PORT. [SESSIOND_ADDR] (default: 127.0.0.1:7420)")
    var server: String?

    @Option(name: .long, help: "sessiond Unix socket path (instead of --server).")
    var unix: String?

    @Option(name: .long, help: "API token, when the server requires one. [SESSIOND_TOKEN]")
    var token: String?

    @Option(name: .long, help: "Seconds to wait for each response.")
    var timeout: Double = 30

    @Flag(name: .long, help: "Print one JSON document on stdout instead of a table.")
    var json = false

    func validate() throws {
        if server != nil, unix != nil { throw ValidationError("give --server or --unix, not both") }
        if let server, ServerAddress(server) == nil { throw ValidationError("--server must be HOST:PORT") }
    }

    var address: ServerAddress {
        if let unix { return .unix(path: unix) }
        if let server, let address = ServerAddress(server) { return address }
        return .fromEnvironment
    }

    func configuration(clientName: String = "sessionctl") -> SessiondClient.Configuration {
        var configuration = SessiondClient.Configuration(address: address, clientName: clientName, clientVersion: "0.1.0")
        if let token { configuration.token = token }
        configuration.timeout = .milliseconds(Int64(timeout * 1000))
        return configuration
    }

    /// Connects, runs `body`, and closes.
    func withClient<T: Sendable>(_ body: (SessiondClient) async throws -> T) async throws -> T {
        try await SessiondClient.withConnection(configuration(), body)
    }

    /// Prints `value` as JSON with `--json`, otherwise the human form.
    func emit<T: Encodable>(_ value: T, human: () -> String) {
        if json {
            let encoder = WireJSON.makeEncoder()
            encoder.outputFormatting.insert(.prettyPrinted)
            let data = (try? encoder.encode(value)) ?? Data("null".utf8)
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(human())
        }
    }
}

extension SessiondClient {
    /// The session a `KEY|ID` argument names: an id if one exists, else a key.
    func resolve(_ keyOrID: String) async throws -> SessionInfo {
        if UUID(uuidString: keyOrID) != nil {
            do {
                return try await session(id: keyOrID.lowercased())
            } catch let error as SessionError where error.code == .notFound {}
        }
        return try await session(key: keyOrID)
    }
}

/// Plain-text tables and values for people.
enum Format {
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        let widths = header.indices.map { column in
            ([header[column]] + rows.map { $0[column] }).map(\.count).max() ?? 0
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }

    static func date(_ date: Date?) -> String {
        guard let date else { return "-" }
        return WireJSON.formatDate(date)
    }

    static func session(_ session: SessionInfo) -> String {
        var lines: [(String, String)] = [
            ("id", session.id), ("key", session.key), ("tenant", session.tenant), ("tool", session.tool),
            ("status", session.status.rawValue), ("cli session", session.cliSessionId ?? "-"),
            ("cwd", session.cwd ?? "-"), ("turns", "\(session.turnCount)"),
            ("resumes", "\(session.resumeSuccesses) ok of \(session.resumeAttempts)"),
            ("failures", "\(session.consecutiveFailures) in a row, \(session.totalFailures) total"),
            ("last failure", session.lastFailureReason ?? "-"),
            ("cost", String(format: "$%.4f", session.costUsd)),
            ("tokens", "\(session.inputTokens) in, \(session.outputTokens) out"),
            ("messages", "\(session.messageCount)"), ("transcript", "\(session.transcriptBytes) bytes"),
            ("created", date(session.createdAt)), ("last used", date(session.lastUsedAt)),
            ("expires", date(session.expiresAt)), ("ttl", "\(session.ttlSeconds) s"),
            ("labels", session.labels.isEmpty ? "-" : session.labels.joined(separator: ", ")),
            ("parent", session.parentId ?? "-"),
        ]
        if let lease = session.lease {
            lines.append(("lease", "held by \(lease.holder) until \(date(lease.expiresAt)) (fence \(lease.fence))"))
        } else {
            lines.append(("lease", "free"))
        }
        let width = lines.map(\.0.count).max() ?? 0
        return lines.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }
            .joined(separator: "\n")
    }
}
