import Foundation
import SessionProtocol
import SessionStore
import Testing

@Suite struct StorageTests {
    /// The size cap (`--max-db-pages`) fails a write with `storage_full`, as a full disk does, whether SQLite
    /// fails only the statement or rolls back the whole batch; what was acknowledged before stays readable.
    @Test func writesPastTheSizeCapFailWithStorageFull() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var configuration = StoreConfiguration()
        configuration.maxPageCount = 80
        let store = try SessionDatabase.open(
            path: directory.appendingPathComponent("capped.sqlite").path, configuration: configuration)
        let acquired = try await store.acquire(.init(key: "k"), caller: alice)
        var acknowledged = 0
        var refusal: (any Error)?
        for index in 0..<200 {
            do {
                _ = try await store.appendMessages(
                    .init(sessionId: acquired.session.id, messages: [.init(role: .user, content: "\(index):" + String(repeating: "x", count: 3000))]),
                    caller: alice)
                acknowledged += 1
            } catch {
                refusal = error
                break
            }
        }
        let error = try #require(refusal as? SessionError, "no SessionError within 200 appends: \(String(describing: refusal))")
        #expect(error.code == .storageFull)
        #expect(acknowledged > 0)
        let listed = try await store.listMessages(.init(sessionId: acquired.session.id, limit: 1000), caller: alice)
        #expect(listed.messages.count == acknowledged)
        #expect(listed.messages.last?.content.hasPrefix("\(acknowledged - 1):") == true)
    }
}
