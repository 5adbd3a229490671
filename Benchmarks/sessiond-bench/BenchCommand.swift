import ArgumentParser
import Foundation
import GRDB
import Histogram
import SessionClient
import SessionProtocol
import SessionStore

/// `sessiond-bench`: a load generator for sessiond and for anything else that speaks its protocol.
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessiond-bench",
        abstract: "Load generator for sessiond's protocol, with HDR latency histograms.",
        subcommands: [Run.self, RedisRun.self, Prefill.self, StoreBench.self], defaultSubcommand: Run.self)
}

/// One workload at one connection count; prints one JSON line per point.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure throughput and latency of a workload.")

    @Option(help: "Server address: HOST:PORT or unix:/path.") var addr: String
    @Option(help: "turn, read, history or mixed.") var workload: Workload
    @Option(help: "Connection counts, comma-separated.") var connections: String = "1,16,64,256"
    @Option(help: "Seconds per point.") var duration: Double = 10
    @Option(help: "Operations per point at most.") var maxOperations: Int = 1_000_000
    @Option(help: "Requests in flight per connection (1: no pipelining).") var depth: Int = 1
    @Option(help: "Keys the turn workload picks from at random.") var keys: Int = 100_000
    @Option(help: "Sessions created first for read and history.") var sessions: Int = 1_000
    @Option(help: "The system's name in the output.") var label: String = "sessiond"
    @Option(help: "wire: raw frames from event-loop state machines (lean, like redis-benchmark); client: SessiondClient.")
    var driver: Driver = .wire

    enum Workload: String, ExpressibleByArgument, CaseIterable { case turn, read, history, mixed }
    enum Driver: String, ExpressibleByArgument, CaseIterable { case wire, client }

    func run() async throws {
        guard let address = ServerAddress(addr) else { throw ValidationError("--addr must be HOST:PORT or unix:/path") }
        let counts = connections.split(separator: ",").compactMap { Int($0) }
        let ids = try await Setup.sessions(address: address, count: workload == .turn ? 0 : sessions)
        for count in counts {
            let point = try await measure(address: address, connections: count, ids: ids)
            FileHandle.standardOutput.write(Data((point.json(label: label, workload: workload.rawValue, connections: count) + "\n").utf8))
        }
    }

    private func measure(address: ServerAddress, connections: Int, ids: [String]) async throws -> Point {
        if driver == .wire {
            return try await WireDriver.measure(
                address: address, connections: connections, depth: depth, workload: workload, keys: keys, ids: ids,
                duration: duration, budget: OperationBudget(max(1, maxOperations)))
        }
        let clients = (0..<connections).map { index in
            var configuration = SessiondClient.Configuration(address: address, clientName: "bench-\(index)", token: nil)
            configuration.timeout = .seconds(60)
            return SessiondClient(configuration: configuration)
        }
        for client in clients { try await client.connect() }
        defer { Task { for client in clients { await client.close() } } }
        let budget = OperationBudget(max(1, maxOperations))
        let deadline = ContinuousClock.now + .milliseconds(Int64(duration * 1000))
        let start = ContinuousClock.now
        let workload = self.workload
        let keys = self.keys
        let results = try await withThrowingTaskGroup(of: Worker.Result.self) { group in
            for client in clients {
                for _ in 0..<max(1, depth) {
                    group.addTask {
                        try await Worker(client: client, workload: workload, keys: keys, ids: ids)
                            .run(until: deadline, budget: budget)
                    }
                }
            }
            return try await group.reduce(into: [Worker.Result]()) { $0.append($1) }
        }
        let elapsed = ContinuousClock.now - start
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        for result in results { histogram.add(result.histogram) }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return Point(
            operations: Int(histogram.totalCount), seconds: seconds,
            p50: histogram.valueAtPercentile(50), p99: histogram.valueAtPercentile(99),
            p999: histogram.valueAtPercentile(99.9), conflicts: results.map(\.conflicts).reduce(0, +),
            errors: results.map(\.errors).reduce(0, +))
    }
}

/// Hands out operations until a run's budget is spent.
final class OperationBudget: @unchecked Sendable {
    private let lock = NSLock()
    private var remaining: Int
    init(_ total: Int) { remaining = total }
    func take() -> Bool { lock.withLock { remaining -= 1; return remaining >= 0 } }
}

/// One measured point.
struct Point {
    var operations: Int
    var seconds: Double
    var p50: UInt64
    var p99: UInt64
    var p999: UInt64
    var conflicts: Int
    var errors: Int

    func json(label: String, workload: String, connections: Int) -> String {
        let object: [String: Any] = [
            "system": label, "workload": workload, "connections": connections, "operations": operations,
            "ops_per_s": (Double(operations) / seconds * 10).rounded() / 10,
            "p50_ms": Double(p50) / 1000, "p99_ms": Double(p99) / 1000, "p999_ms": Double(p999) / 1000,
            "conflicts": conflicts, "errors": errors,
        ]
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}

/// One stream of operations on one connection; latency in microseconds.
struct Worker {
    struct Result: Sendable {
        var histogram: Histogram<UInt64>
        var conflicts = 0
        var errors = 0
    }

    let client: SessiondClient
    let workload: Run.Workload
    let keys: Int
    let ids: [String]

    func run(until deadline: ContinuousClock.Instant, budget: OperationBudget) async throws -> Result {
        var result = Result(histogram: Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three))
        var count = 0
        while ContinuousClock.now < deadline, budget.take() {
            let started = ContinuousClock.now
            do {
                switch workload {
                case .turn: try await turn()
                case .read: try await read(count)
                case .history: try await history()
                case .mixed: if Int.random(in: 0..<10) == 0 { try await read(count) } else { try await turn() }
                }
                let elapsed = (ContinuousClock.now - started).components
                _ = result.histogram.record(UInt64(elapsed.seconds * 1_000_000 + elapsed.attoseconds / 1_000_000_000_000))
            } catch let error as SessionError where error.code == .leaseHeld {
                result.conflicts += 1
            } catch {
                result.errors += 1
                if result.errors > 100 { throw error }
            }
            count += 1
        }
        return result
    }

    /// One CLI turn's registry traffic: acquire, then complete with a new id (a chain update) and two messages.
    private func turn() async throws {
        let acquired = try await client.acquire(.init(key: "bench:\(Int.random(in: 0..<keys))", holder: "bench"))
        _ = try await client.complete(
            .init(
                sessionId: acquired.session.id, lease: acquired.lease.proof, outcome: .ok,
                cliSessionId: UUID().uuidString.lowercased(), costUsd: 0.01, inputTokens: 1200, outputTokens: 300,
                messages: [
                    .init(role: .user, content: "Please summarise the change in the build script."),
                    .init(role: .assistant, content: "The build now caches dependencies and runs tests in parallel."),
                ]))
    }

    private func read(_ count: Int) async throws {
        if count % 2 == 0 {
            _ = try await client.session(id: ids.randomElement()!)
        } else {
            _ = try await client.list(.init(limit: 20))
        }
    }

    private func history() async throws {
        let id = ids.randomElement()!
        _ = try await client.appendMessages(.init(sessionId: id, messages: [.init(role: .user, content: "One more question about the plan.")]))
        _ = try await client.messages(.init(sessionId: id, tail: 20))
    }
}

/// Creates the sessions the read and history workloads use.
enum Setup {
    static func sessions(address: ServerAddress, count: Int) async throws -> [String] {
        guard count > 0 else { return [] }
        var configuration = SessiondClient.Configuration(address: address, clientName: "bench-setup", token: nil)
        configuration.timeout = .seconds(120)
        return try await SessiondClient.withConnection(configuration) { client in
            try await withThrowingTaskGroup(of: String.self) { group in
                for index in 0..<count {
                    group.addTask {
                        let acquired = try await client.acquire(.init(key: "bench-read:\(index)", holder: "bench"))
                        _ = try await client.complete(
                            .init(
                                sessionId: acquired.session.id, lease: acquired.lease.proof, outcome: .ok,
                                cliSessionId: UUID().uuidString.lowercased(),
                                messages: (0..<4).map { .init(role: $0 % 2 == 0 ? .user : .assistant, content: "setup message \($0)") }))
                        return acquired.session.id
                    }
                    if index % 64 == 63 { try await group.next().map { _ in () } }
                }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
        }
    }
}

/// Writes a large registry straight into a database file, for the scale runs and the size figures.
struct Prefill: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Fill a database with sessions and messages.")

    @Option(help: "The database file (created with sessiond's schema).") var db: String
    @Option(help: "Sessions to create, keys bench:0…") var sessions: Int
    @Option(help: "Messages per session.") var messagesPerSession: Int = 0

    func run() async throws {
        try await Self.fill(path: db, sessions: sessions, messagesPerSession: messagesPerSession)
        print("{\"sessions\":\(sessions),\"messages\":\(sessions * messagesPerSession)}")
    }

    static func fill(path db: String, sessions: Int, messagesPerSession: Int) async throws {
        _ = try SessionDatabase.open(path: db)
        let queue = try DatabaseQueue(path: db)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let batch = 10_000
        for start in stride(from: 0, to: sessions, by: batch) {
            try await queue.write { db in
                let session = try db.makeStatement(
                    sql: """
                        INSERT INTO session(id, tenant, key, tool, cwd, cliSessionId, createdAt, lastUsedAt, expiresAt,
                                            ttlSeconds, turnCount, messageCount)
                        VALUES (?, 'local', ?, 'claude', '/work/project', ?, ?, ?, ?, 86400, ?, ?)
                        """)
                let chain = try db.makeStatement(
                    sql: "INSERT INTO chainLink(sessionPk, seq, cliSessionId, reason, at) VALUES (?, 1, ?, 'created', ?)")
                let head = try db.makeStatement(sql: "UPDATE session SET lastChainLinkId = ? WHERE pk = ?")
                let message = try db.makeStatement(
                    sql: "INSERT INTO message(sessionPk, seq, role, content, at) VALUES (?, ?, ?, ?, ?)")
                for index in start..<min(sessions, start + batch) {
                    let cli = UUID().uuidString.lowercased()
                    try session.execute(arguments: [
                        UUID().uuidString.lowercased(), "bench:\(index)", cli, now, now, now + 86_400_000,
                        messagesPerSession / 2, messagesPerSession,
                    ])
                    let pk = db.lastInsertedRowID
                    try chain.execute(arguments: [pk, cli, now])
                    try head.execute(arguments: [db.lastInsertedRowID, pk])
                    for seq in 0..<messagesPerSession {
                        try message.execute(arguments: [
                            pk, seq + 1, seq % 2 == 0 ? "user" : "assistant",
                            seq % 2 == 0 ? "Please summarise the change in the build script." : "The build now caches dependencies and runs tests in parallel.",
                            now,
                        ])
                    }
                }
            }
        }
        try await queue.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
        try queue.close()
    }
}

/// The store alone, in process: acquire+complete cycles from concurrent callers with group commit,
/// against the same cycles with one transaction per operation, run just before in the same process.
struct StoreBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store", abstract: "Group commit against one transaction per operation, in process.")

    @Option(help: "Sessions in the database before the run.") var sessions: Int = 100_000
    @Option(help: "Concurrent callers.") var callers: Int = 64
    @Option(help: "Cycles per run.") var cycles: Int = 20_000
    @Option(help: "Directory for the database files.") var directory: String = NSTemporaryDirectory()

    func run() async throws {
        let caller = Caller(tenant: "local", actor: "bench")
        var results: [(String, Double)] = []
        for (name, batch) in [("one transaction per operation", 1), ("group commit", 256)] {
            let path = directory + "/store-bench-\(batch)-\(UUID().uuidString).sqlite"
            defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
            try await Prefill.fill(path: path, sessions: sessions, messagesPerSession: 0)
            var configuration = StoreConfiguration()
            configuration.maxWriteBatch = batch
            let store = try SessionDatabase.open(path: path, configuration: configuration)
            let budget = OperationBudget(cycles)
            let start = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<callers {
                    group.addTask {
                        while budget.take() {
                            do {
                                let acquired = try await store.acquire(
                                    .init(key: "bench:\(Int.random(in: 0..<sessions))"), caller: caller)
                                _ = try await store.complete(
                                    .init(
                                        sessionId: acquired.session.id, lease: acquired.lease.proof, outcome: .ok,
                                        cliSessionId: UUID().uuidString.lowercased(),
                                        messages: [.init(role: .user, content: "q"), .init(role: .assistant, content: "a")]),
                                    caller: caller)
                            } catch let error as SessionError where error.code == .leaseHeld {}
                        }
                    }
                }
                try await group.waitForAll()
            }
            let elapsed = ContinuousClock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            results.append((name, Double(cycles) / seconds))
        }
        let (baselineName, baseline) = results[0]
        let (name, figure) = results[1]
        print(String(format: "store: %@ %.0f cycles/s, %@ %.0f cycles/s, ratio %.2fx (%d callers, %d sessions)",
                     name, figure, baselineName, baseline, figure / baseline, callers, sessions))
    }
}
