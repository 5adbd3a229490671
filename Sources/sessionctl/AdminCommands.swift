import ArgumentParser
import Foundation
import SessionClient
import SessionProtocol

struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one session by key or id.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The session's key or id.") var session: String

    func run() async throws {
        let info = try await connection.withClient { try await $0.resolve(session) }
        connection.emit(info) { Format.session(info) }
    }
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List sessions, newest first.")
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Only this status: active, expired, non_resumable, closed.") var status: SessionStatus?
    @Option(help: "Only this tool.") var tool: String?
    @Option(help: "Only keys starting with this.") var prefix: String?
    @Option(help: "Only sessions with this label.") var label: String?
    @Option(help: "Page size.") var limit: Int = 50
    @Option(help: "Continue after this cursor (printed after a full page).") var cursor: String?

    func run() async throws {
        let page = try await connection.withClient {
            try await $0.list(
                .init(status: status, tool: tool, keyPrefix: prefix, label: label, limit: limit, cursor: cursor))
        }
        connection.emit(page) {
            let table = Format.table(
                ["KEY", "STATUS", "TURNS", "CLI SESSION", "LAST USED", "ID"],
                page.sessions.map {
                    [$0.key, $0.status.rawValue, "\($0.turnCount)", $0.cliSessionId ?? "-", Format.date($0.lastUsedAt), $0.id]
                })
            return table + (page.nextCursor.map { "\nmore: --cursor \($0)" } ?? "")
        }
    }
}

extension SessionStatus: ExpressibleByArgument {}
extension TurnOutcome: ExpressibleByArgument {}

struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the chain of CLI session ids of a session.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The session's key or id.") var session: String

    func run() async throws {
        let chain = try await connection.withClient { client in
            try await client.history(sessionId: try await client.resolve(session).id)
        }
        connection.emit(chain) {
            Format.table(
                ["SEQ", "CLI SESSION", "REASON", "AT"],
                chain.map { ["\($0.seq)", $0.cliSessionId, $0.reason.rawValue, Format.date($0.at)] })
        }
    }
}

struct Messages: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a session's message history.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The session's key or id.") var session: String
    @Option(help: "Only messages after this sequence number.") var after: Int?
    @Option(help: "Only the last N messages.") var tail: Int?
    @Option(help: "Page size.") var limit: Int = 100

    func run() async throws {
        let page = try await connection.withClient { client in
            try await client.messages(
                .init(sessionId: try await client.resolve(session).id, afterSeq: after, tail: tail, limit: limit))
        }
        connection.emit(page) {
            page.messages.map { "#\($0.seq) \($0.role.rawValue) \(Format.date($0.at))\n\($0.content)\n" }
                .joined(separator: "\n") + (page.nextAfterSeq.map { "\nmore: --after \($0)" } ?? "")
        }
    }
}

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the audit log, newest first.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Only rows about this session (key or id).") var session: String?
    @Option(help: "Only this action, e.g. resume_failed.") var action: String?
    @Option(help: "Only rows at or after this ISO-8601 time.") var since: String?
    @Option(help: "Page size.") var limit: Int = 50
    @Option(help: "Continue after this cursor.") var cursor: String?

    func run() async throws {
        let sinceDate = try since.map { text in
            guard let date = WireJSON.parseDate(text) else { throw ValidationError("--since must be ISO-8601") }
            return date
        }
        let page = try await connection.withClient { client in
            var sessionId: String?
            if let session { sessionId = try await client.resolve(session).id }
            return try await client.audit(
                .init(sessionId: sessionId, action: action, since: sinceDate, limit: limit, cursor: cursor))
        }
        connection.emit(page) {
            Format.table(
                ["AT", "ACTION", "OUTCOME", "ACTOR", "KEY", "DETAIL"],
                page.entries.map {
                    [
                        Format.date($0.at), $0.action, $0.outcome, $0.actor, $0.key ?? "-",
                        String(decoding: (try? WireJSON.makeEncoder().encode($0.detail)) ?? Data(), as: UTF8.self),
                    ]
                }) + (page.nextCursor.map { "\nmore: --cursor \($0)" } ?? "")
        }
    }
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the registry's figures for your tenant.")
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let stats = try await connection.withClient { try await $0.stats() }
        connection.emit(stats) {
            var lines = ["sessions: \(stats.sessions)"]
            lines += stats.byStatus.sorted { $0.key < $1.key }.map { "  \($0.key): \($0.value)" }
            lines.append("turns: \(stats.turns), fresh starts: \(stats.freshStarts)")
            let rate = stats.resumeSuccessRate.map { String(format: "%.1f%%", $0 * 100) } ?? "-"
            lines.append("resumes: \(stats.resumeSuccesses) ok, \(stats.resumeFailures) failed (\(rate) success)")
            if !stats.topFailureReasons.isEmpty {
                lines.append("top failure reasons:")
                lines += stats.topFailureReasons.map { "  \($0.reason): \($0.count)" }
            }
            lines.append("session age: " + stats.sessionAge.map { "<\($0.le) \($0.count)" }.joined(separator: ", "))
            lines.append("database: \(stats.databaseBytes) bytes, WAL: \(stats.walBytes) bytes")
            return lines.joined(separator: "\n")
        }
    }
}

struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check that sessiond answers.")
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let health = try await connection.withClient { try await $0.health() }
        connection.emit(health) {
            "\(health.status): sessiond \(health.version), up \(Int(health.uptimeSeconds)) s, \(health.connections) connections, schema \(health.schemaVersion)"
        }
    }
}

/// Options naming a lease on the command line.
struct LeaseOptions: ParsableArguments {
    @Option(help: "The lease token from acquire.") var token: String
    @Option(help: "The lease fence from acquire.") var fence: Int64
    var proof: LeaseProof { LeaseProof(token: token, fence: fence) }
}

struct Acquire: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Get or create a session and take its lease.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The session key, e.g. project:acme.") var key: String
    @Option(help: "The CLI.") var tool: String = "claude"
    @Option(help: "Working directory recorded with the session.") var cwd: String?
    @Option(help: "Seconds to wait for a held lease.") var wait: Double = 0
    @Option(help: "Lease duration in seconds.") var lease: Int?
    @Option(help: "Idle TTL of a new session, in seconds.") var ttl: Int?
    @Option(help: "Holder name shown to others.") var holder: String?

    func run() async throws {
        let result = try await connection.withClient {
            try await $0.acquire(
                .init(
                    key: key, tool: tool, cwd: cwd, holder: holder, ttlSeconds: ttl, leaseSeconds: lease,
                    waitMs: Int(wait * 1000)))
        }
        connection.emit(result) {
            let decision =
                result.decision.action == .resume
                ? "resume \(result.decision.cliSessionId ?? "")\(result.decision.fork ? " (fork)" : "")"
                : "fresh (\(result.decision.reason?.rawValue ?? "new"))"
            return """
                session  \(result.session.id)\(result.created ? " (created)" : "")
                decision \(decision)
                lease    --token \(result.lease.token) --fence \(result.lease.fence) (until \(Format.date(result.lease.expiresAt)))
                """
        }
    }
}

struct Complete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Record a turn's outcome and release the lease.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The session's key or id.") var session: String
    @OptionGroup var lease: LeaseOptions
    @Option(help: "ok, resume_failed or error.") var outcome: TurnOutcome
    @Option(help: "The CLI session id the turn reported (with ok).") var cliSessionId: String?
    @Option(help: "Why the turn failed.") var reason: String?
    @Option(help: "The turn's cost in USD.") var cost: Double?
    @Option(help: "Input tokens.") var inputTokens: Int?
    @Option(help: "Output tokens.") var outputTokens: Int?
    @Flag(help: "Keep the lease for a follow-up turn.") var keepLease = false

    func run() async throws {
        let result = try await connection.withClient { client in
            try await client.complete(
                .init(
                    sessionId: try await client.resolve(session).id, lease: lease.proof, outcome: outcome,
                    cliSessionId: cliSessionId, reason: reason, costUsd: cost, inputTokens: inputTokens,
                    outputTokens: outputTokens, keepLease: keepLease))
        }
        connection.emit(result) { Format.session(result.session) }
    }
}

struct Renew: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Extend a held lease.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The session's key or id.") var session: String
    @OptionGroup var lease: LeaseOptions
    @Option(help: "New lease duration in seconds.") var seconds: Int?

    func run() async throws {
        let renewed = try await connection.withClient { client in
            try await client.renew(
                .init(sessionId: try await client.resolve(session).id, lease: lease.proof, leaseSeconds: seconds))
        }
        connection.emit(renewed) { "lease renewed until \(Format.date(renewed.expiresAt))" }
    }
}

struct Release: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Give a lease back without recording a turn.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The session's key or id.") var session: String
    @OptionGroup var lease: LeaseOptions

    func run() async throws {
        let released = try await connection.withClient { client in
            try await client.release(sessionId: try await client.resolve(session).id, lease: lease.proof)
        }
        connection.emit(SessionRelease.Result(released: released)) { released ? "released" : "already released" }
    }
}

struct Touch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mark a session used now, extending its TTL.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The session's key or id.") var session: String
    @Option(help: "A new idle TTL in seconds.") var ttl: Int?

    func run() async throws {
        let info = try await connection.withClient { client in
            try await client.touch(.init(sessionId: try await client.resolve(session).id, ttlSeconds: ttl))
        }
        connection.emit(info) { "expires \(Format.date(info.expiresAt))" }
    }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete a session with its history and transcripts.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The session's key or id.") var session: String
    @Flag(help: "Delete even while another client holds the lease.") var force = false

    func run() async throws {
        let deleted = try await connection.withClient { client in
            try await client.delete(sessionId: try await client.resolve(session).id, force: force)
        }
        connection.emit(SessionDelete.Result(deleted: deleted)) { "deleted" }
    }
}

struct Fork: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fork a session under a new key; its first turn continues from the parent's conversation.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The parent's key or id.") var session: String
    @Argument(help: "The new session's key.") var newKey: String

    func run() async throws {
        let child = try await connection.withClient { client in
            try await client.fork(sessionId: try await client.resolve(session).id, key: newKey)
        }
        connection.emit(child) { Format.session(child) }
    }
}

struct Tokens: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage API tokens (admin).", subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a token and print its secret once. The first token turns auth on.")
        @OptionGroup var connection: ConnectionOptions
        @Option(help: "The tenant the token belongs to.") var tenant: String
        @Flag(help: "Allow admin methods (tokens).") var admin = false
        @Option(help: "A note on what the token is for.") var label: String?

        func run() async throws {
            let result = try await connection.withClient {
                try await $0.createToken(tenant: tenant, admin: admin, label: label)
            }
            connection.emit(result) {
                "\(result.token)\n(token \(result.info.id) for tenant \(result.info.tenant)\(admin ? ", admin" : ""); shown once, store it now)"
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens (never their secrets).")
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            let tokens = try await connection.withClient { try await $0.tokens() }
            connection.emit(tokens) {
                Format.table(
                    ["ID", "TENANT", "ADMIN", "CREATED", "REVOKED", "LABEL"],
                    tokens.map {
                        [$0.id, $0.tenant, $0.admin ? "yes" : "no", Format.date($0.createdAt), Format.date($0.revokedAt), $0.label ?? ""]
                    })
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token; it stops working at once.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The token id (tok_…).") var id: String

        func run() async throws {
            let revoked = try await connection.withClient { try await $0.revokeToken(id: id) }
            connection.emit(TokensRevoke.Result(revoked: revoked)) { revoked ? "revoked" : "already revoked" }
        }
    }
}
