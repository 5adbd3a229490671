import Logging
import NIOCore
import SessionProtocol
import SessionStore
import Synchronization
import Testing

@testable import SessionServer

@Suite struct RouterLoggingTests {
    /// Keeps every line logged through it.
    final class Lines: Sendable {
        let lines = Mutex<[Capture.Line]>([])
    }

    struct Capture: LogHandler {
        struct Line: Sendable {
            var level: Logger.Level
            var message: String
            var metadata: Logger.Metadata
        }

        let lines: Lines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let line = Line(level: event.level, message: "\(event.message)", metadata: metadata.merging(event.metadata ?? [:]) { $1 })
            lines.lines.withLock { $0.append(line) }
        }
    }

    struct Broken: Error {}

    /// The lines about a request carry its method, id and session, although the router never sets them on
    /// the logger (a handler like `StreamLogHandler` formats all of its metadata on every set).
    @Test func requestLinesCarryTheMethodTheIdAndTheSession() async throws {
        let store = try SessionDatabase.inMemory()
        var router = Router(authenticator: try await Authenticator(store: store), isShuttingDown: { false })
        router.register(SessionRenew.self) { params, _ in
            if params.sessionId == "broken" { throw Broken() }
            return .init(lease: Lease(token: "t", fence: 1, holder: "h", expiresAt: .init()))
        }
        let capture = Capture(lines: Lines())
        let logger = Logger(label: "tests") { _ in capture }
        func send(_ json: String) async throws -> String {
            let response = await router.respond(to: ByteBuffer(string: json), connection: Connection(peer: "test"), logger: logger)
            return String(buffer: try #require(response))
        }

        let lease = #"{"token":"t","fence":1}"#
        #expect(try await send(#"{"jsonrpc":"2.0","id":7,"method":"session.renew","params":{"sessionId":"s1","lease":\#(lease)}}"#)
            .contains(#""result""#))
        let broken = try await send(#"{"jsonrpc":"2.0","id":"x","method":"session.renew","params":{"sessionId":"broken","lease":\#(lease)}}"#)
        #expect(broken.contains(#""internal""#) || broken.contains("-32603"))

        let lines = capture.lines.lines.withLock { $0 }
        let served = try #require(lines.first { $0.message == "request served" })
        #expect(served.level == .debug)
        #expect(served.metadata["rpc.method"] == "session.renew")
        #expect(served.metadata["rpc.id"] == "7")
        #expect(served.metadata["session.id"] == "s1")
        let failed = try #require(lines.first { $0.level == .error })
        #expect(failed.metadata["rpc.method"] == "session.renew")
        #expect(failed.metadata["rpc.id"] == "x")
        #expect(failed.metadata["session.id"] == "broken")
        #expect(failed.metadata["error"] != nil)
        #expect(!broken.contains("Broken"), "the detail stays in the log")
    }
}
