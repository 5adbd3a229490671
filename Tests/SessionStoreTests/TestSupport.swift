import Foundation
import SessionProtocol
import SessionStore
import Synchronization

/// A clock the tests move by hand instead of sleeping.
final class ManualClock: Sendable {
    private let current = Mutex(Date(timeIntervalSince1970: 1_800_000_000))

    var now: Date { current.withLock { $0 } }
    var storeClock: StoreClock { StoreClock { self.now } }

    func advance(_ duration: Duration) {
        current.withLock { $0 = $0.addingTimeInterval(Double(duration.components.seconds)) }
    }
}

let alice = Caller(tenant: "local", actor: "alice")
let bob = Caller(tenant: "local", actor: "bob")
let otherTenant = Caller(tenant: "acme", actor: "mallory")

func makeStore(
    clock: ManualClock = ManualClock(), _ configure: (inout StoreConfiguration) -> Void = { _ in }
) throws -> SessionDatabase {
    var configuration = StoreConfiguration()
    configure(&configuration)
    return try SessionDatabase.inMemory(configuration: configuration, clock: clock.storeClock)
}

/// A fresh temporary directory, removed by the caller.
func makeTemporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("sessiond-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

extension SessionDatabase {
    /// The CLI session id of every stored chain link, oldest first: what deleting sessions left behind.
    func storedChainLinks() async throws -> [String] {
        let joined: String? = try await readValue(
            sql: "SELECT group_concat(cliSessionId, ' ') FROM (SELECT cliSessionId FROM chainLink ORDER BY id)")
        return joined?.split(separator: " ").map(String.init) ?? []
    }

    /// Acquire, then complete `ok` with `cliSessionId`.
    @discardableResult
    func turn(
        _ key: String, reporting cliSessionId: String, caller: Caller = alice, messages: [NewMessage]? = nil
    ) async throws -> (SessionAcquire.Result, SessionComplete.Result) {
        let acquired = try await acquire(.init(key: key), caller: caller)
        let completed = try await complete(
            .init(
                sessionId: acquired.session.id, lease: acquired.lease.proof, outcome: .ok, cliSessionId: cliSessionId,
                messages: messages), caller: caller)
        return (acquired, completed)
    }
}

func expectError(_ code: SessionError.Code, _ body: () async throws -> Void) async -> SessionError? {
    do {
        try await body()
        return nil
    } catch let error as SessionError {
        return error.code == code ? error : nil
    } catch {
        return nil
    }
}

/// A value shared between tasks in a test.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T: Sendable>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}
