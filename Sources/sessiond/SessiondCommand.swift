import ArgumentParser
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import SessionServer
import SessionStore

/// `sessiond`: the session registry server. Every option can also come from an environment variable
/// or a JSON config file; a flag wins over the environment, which wins over the file.
@main
struct SessiondCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessiond",
        abstract: "A durable, shared session registry for AI coding CLIs.",
        discussion: """
            Serves length-prefixed JSON-RPC 2.0 on TCP and/or a Unix socket, backed by SQLite in WAL mode.
            Prints one `LISTENING <kind> <address>` line per listener on stdout once it accepts connections.
            """,
        version: sessiondVersion)

    @Option(help: "TCP address HOST:PORT; port 0 picks a free port; `none` serves no TCP. [SESSIOND_LISTEN] (default: 127.0.0.1:7420)")
    var listen: String?

    @Option(help: "Also serve on this Unix domain socket. [SESSIOND_UNIX]")
    var unix: String?

    @Option(help: "SQLite database file. [SESSIOND_DB] (default: $XDG_DATA_HOME/sessiond/sessiond.sqlite)")
    var db: String?

    @Option(help: "A JSON file with any of these options, by their long names in camelCase. [SESSIOND_CONFIG]")
    var config: String?

    @Option(help: "Maximum open connections. [SESSIOND_MAX_CONNECTIONS] (default: 1024)")
    var maxConnections: Int?

    @Option(help: "Seconds a connection may stay without a complete request. [SESSIOND_IDLE_TIMEOUT] (default: 300)")
    var idleTimeout: Double?

    @Option(help: "Largest frame accepted, in bytes. [SESSIOND_MAX_FRAME_BYTES] (default: 16777216)")
    var maxFrameBytes: Int?

    @Option(help: "Requests run at once per connection. [SESSIOND_MAX_IN_FLIGHT] (default: 64)")
    var maxInFlight: Int?

    @Option(help: "Bytes of requests per connection received and not yet answered; past it the connection is not read. [SESSIOND_MAX_IN_FLIGHT_BYTES] (default: 33554432)")
    var maxInFlightBytes: Int?

    @Option(help: "Seconds shutdown waits for connections to finish before closing them; requests not started by then get no answer. [SESSIOND_SHUTDOWN_GRACE] (default: 10)")
    var shutdownGrace: Double?

    @Option(help: "Seconds between sweeps (expiry, purge, eviction). [SESSIOND_SWEEP_INTERVAL] (default: 30)")
    var sweepInterval: Double?

    @Option(help: "Default idle TTL of a session, in seconds. [SESSIOND_DEFAULT_TTL] (default: 86400)")
    var defaultTTL: Int?

    @Option(help: "Days expired and closed sessions are kept. [SESSIOND_RETENTION_DAYS] (default: 30)")
    var retentionDays: Double?

    @Option(help: "Sessions per tenant before LRU eviction. [SESSIOND_MAX_SESSIONS_PER_TENANT] (default: 100000)")
    var maxSessionsPerTenant: Int?

    @Option(help: "Consecutive resume failures before a session is non_resumable. [SESSIOND_MAX_RESUME_FAILURES] (default: 3)")
    var maxResumeFailures: Int?

    @Option(help: "Transcript bytes kept per session. [SESSIOND_MAX_TRANSCRIPT_BYTES] (default: 67108864)")
    var maxTranscriptBytes: Int?

    @Option(help: "Cap the database at this many pages (PRAGMA max_page_count); writes past it fail with storage_full. [SESSIOND_MAX_DB_PAGES]")
    var maxDbPages: Int?

    @Option(help: "Page cache of the writing connection, in MiB; the hot part of the session indexes should fit. [SESSIOND_CACHE_MB] (default: 64)")
    var cacheMb: Int?

    @Option(help: "Event-loop threads for the sockets. [SESSIOND_EVENT_LOOPS] (default: one fewer than the cores, at least 1)")
    var eventLoops: Int?

    @Option(help: "SQLite synchronous mode: normal (survives a process crash) or full (also power loss). [SESSIOND_SYNCHRONOUS] (default: normal)")
    var synchronous: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical. [SESSIOND_LOG_LEVEL] (default: info)")
    var logLevel: String?

    mutating func run() async throws {
        let settings = try Settings(command: self)
        let level = try settings.string("logLevel", default: "info").flatMap(Logger.Level.init(rawValue:))
        guard let level else { throw ValidationError("log level must be one of trace, debug, info, notice, warning, error, critical") }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "sessiond")

        var store = StoreConfiguration()
        if let ttl = try settings.int("defaultTTL") { store.defaultTTL = .seconds(ttl) }
        if let days = try settings.double("retentionDays") { store.retention = .seconds(days * 86400) }
        if let cap = try settings.int("maxSessionsPerTenant") { store.maxSessionsPerTenant = cap }
        if let failures = try settings.int("maxResumeFailures") { store.maxConsecutiveFailures = failures }
        if let bytes = try settings.int("maxTranscriptBytes") { store.maxTranscriptBytesPerSession = bytes }
        if let pages = try settings.int("maxDbPages") { store.maxPageCount = pages }
        if let megabytes = try settings.int("cacheMb") {
            guard megabytes >= 1 else { throw ValidationError("cache-mb must be at least 1") }
            store.writerCacheMegabytes = megabytes
        }
        if let mode = try settings.string("synchronous") {
            guard let value = StoreConfiguration.Synchronous(rawValue: mode.uppercased()) else {
                throw ValidationError("synchronous must be normal or full")
            }
            store.synchronous = value
        }

        var server = RPCServer.Configuration()
        let listen = try settings.string("listen", default: "127.0.0.1:7420")!
        server.tcp = listen == "none" ? nil : try Self.parseHostPort(listen)
        server.unixSocketPath = try settings.string("unix")
        guard server.tcp != nil || server.unixSocketPath != nil else {
            throw ValidationError("nothing to listen on: give --listen HOST:PORT or --unix PATH")
        }
        if let value = try settings.int("maxConnections") { server.maxConnections = value }
        if let value = try settings.double("idleTimeout") { server.idleTimeout = .milliseconds(Int64(value * 1000)) }
        if let value = try settings.int("maxFrameBytes") { server.maxFrameBytes = value }
        if let value = try settings.int("maxInFlight") { server.maxInFlight = value }
        if let value = try settings.int("maxInFlightBytes") {
            guard value >= 1 else { throw ValidationError("--max-in-flight-bytes must be at least 1") }
            server.maxInFlightBytes = value
        }
        if let value = try settings.double("shutdownGrace") {
            guard value >= 0 else { throw ValidationError("--shutdown-grace must be 0 or more") }
            server.shutdownGrace = .milliseconds(Int64(value * 1000))
        }
        let sweepInterval = Duration.milliseconds(Int64((try settings.double("sweepInterval") ?? 30) * 1000))
        // One core stays for the SQLite writer, which every write waits for: on two cores, one event loop ran
        // 6 % more turns/s than two, at the same p99 (Benchmarks/HISTORY.md, twenty-third session). Set before
        // anything uses NIO's shared event-loop group, which the server listens on.
        let eventLoops = try settings.int("eventLoops") ?? max(1, System.coreCount - 1)
        guard eventLoops >= 1 else { throw ValidationError("--event-loops must be at least 1") }
        NIOSingletons.groupLoopCountSuggestion = eventLoops

        let path = try settings.string("db") ?? Self.defaultDatabasePath()
        let database: SessionDatabase
        do {
            database = try SessionDatabase.open(path: path, configuration: store, logger: logger)
        } catch let error as StoreOpenError {
            throw StartupError(message: error.description)
        }

        if let tcp = server.tcp, !Self.isLoopback(tcp.host), !(try await Sessiond.hasTokens(database)) {
            throw StartupError(
                message: """
                    refusing to listen on \(tcp.host):\(tcp.port) without auth: no API token exists yet.
                    Create one first: start `sessiond --db \(path)` (loopback only), run
                    `sessionctl tokens create --tenant NAME --admin`, then restart with --listen \(listen).
                    """)
        }

        let sessiond = try await Sessiond(
            store: database, configuration: server, sweepInterval: sweepInterval, logger: logger,
            onListening: { listeners in
                for listener in listeners {
                    FileHandle.standardOutput.write(Data("LISTENING \(listener)\n".utf8))
                }
            })
        logger.info("sessiond starting", metadata: ["db": "\(path)", "version": "\(sessiondVersion)"])
        let group = ServiceGroup(
            configuration: .init(
                services: sessiond.services.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }

    static func defaultDatabasePath() -> String {
        let environment = ProcessInfo.processInfo.environment
        let base =
            environment["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (FileManager.default.homeDirectoryForCurrentUser.path + "/.local/share")
        return base + "/sessiond/sessiond.sqlite"
    }

    static func parseHostPort(_ text: String) throws -> (host: String, port: Int) {
        var host = text
        if host.hasPrefix("tcp://") { host.removeFirst("tcp://".count) }
        guard let colon = host.lastIndex(of: ":"), let port = Int(host[host.index(after: colon)...]),
            (0...65535).contains(port)
        else { throw ValidationError("--listen must be HOST:PORT, e.g. 127.0.0.1:7420") }
        var name = String(host[..<colon])
        if name.hasPrefix("["), name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
        return (name.isEmpty ? "127.0.0.1" : name, port)
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}

/// A start-up failure with a message for a person; printed without a stack trace.
struct StartupError: Error, CustomStringConvertible {
    var message: String
    var description: String { "sessiond: \(message)" }
}

/// Resolves each option from the flag, then `SESSIOND_<NAME>`, then the config file.
struct Settings {
    private var flags: [String: String] = [:]
    private var file: [String: Any] = [:]
    private let environment = ProcessInfo.processInfo.environment

    init(command: SessiondCommand) throws {
        func put(_ key: String, _ value: (any CustomStringConvertible)?) {
            if let value { flags[key] = value.description }
        }
        put("listen", command.listen)
        put("unix", command.unix)
        put("db", command.db)
        put("maxConnections", command.maxConnections)
        put("idleTimeout", command.idleTimeout)
        put("maxFrameBytes", command.maxFrameBytes)
        put("maxInFlight", command.maxInFlight)
        put("maxInFlightBytes", command.maxInFlightBytes)
        put("shutdownGrace", command.shutdownGrace)
        put("sweepInterval", command.sweepInterval)
        put("defaultTTL", command.defaultTTL)
        put("retentionDays", command.retentionDays)
        put("maxSessionsPerTenant", command.maxSessionsPerTenant)
        put("maxResumeFailures", command.maxResumeFailures)
        put("maxTranscriptBytes", command.maxTranscriptBytes)
        put("synchronous", command.synchronous)
        put("maxDbPages", command.maxDbPages)
        put("cacheMb", command.cacheMb)
        put("eventLoops", command.eventLoops)
        put("logLevel", command.logLevel)
        if let path = command.config ?? environment["SESSIOND_CONFIG"] {
            guard let data = FileManager.default.contents(atPath: path),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { throw ValidationError("config file \(path) is missing or not a JSON object") }
            file = object
        }
    }

    /// `maxInFlight` → `SESSIOND_MAX_IN_FLIGHT`; `defaultTTL` → `SESSIOND_DEFAULT_TTL`.
    private static func environmentName(_ key: String) -> String {
        var name = "SESSIOND_"
        var previousWasLower = false
        for character in key {
            if character.isUppercase, previousWasLower { name.append("_") }
            name.append(character.uppercased())
            previousWasLower = character.isLowercase
        }
        return name
    }

    func string(_ key: String, default fallback: String? = nil) throws -> String? {
        if let value = flags[key] { return value }
        if let value = environment[Self.environmentName(key)], !value.isEmpty { return value }
        if let value = file[key] { return "\(value)" }
        return fallback
    }

    func int(_ key: String) throws -> Int? {
        guard let text = try string(key) else { return nil }
        guard let value = Int(text) else { throw ValidationError("\(key) must be a whole number, got \(text)") }
        return value
    }

    func double(_ key: String) throws -> Double? {
        guard let text = try string(key) else { return nil }
        guard let value = Double(text), value.isFinite, value >= 0 else {
            throw ValidationError("\(key) must be a number ≥ 0, got \(text)")
        }
        return value
    }
}
