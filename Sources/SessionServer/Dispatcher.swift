import Logging
import NIOCore
import SessionStore

/// The server's dispatch path without sockets: a frame's payload in, the response payload out.
///
/// The fuzzer drives every decoding, validation and store path through this, and tests replay its
/// crashers; it is the same ``Router`` the network server uses.
public struct Dispatcher: Sendable {
    private let router: Router
    private let connection = Connection(peer: "in-process")
    private let logger: Logger

    public init(
        store: SessionDatabase, logger: Logger = Logger(label: "sessiond.dispatcher", factory: { _ in SwiftLogNoOpLogHandler() })
    ) async throws {
        self.logger = logger
        let authenticator = try await Authenticator(store: store)
        router = Router.sessiond(
            store: store, authenticator: authenticator, configuration: RPCServer.Configuration(),
            startedAt: .now, connectionCount: { 0 }, isShuttingDown: { false })
    }

    /// The response to one frame's JSON, or `nil` for a notification.
    public func respond(to payload: ByteBuffer) async -> ByteBuffer? {
        await router.respond(to: payload, connection: connection, logger: logger)
    }
}
