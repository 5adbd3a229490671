import NIOCore
import SessionProtocol
import SessionStore
import Synchronization

/// One client connection: who it is, and how many of its requests are running.
public final class Connection: Sendable {
    struct Identity {
        var clientName: String?
        var grant: TokenGrant?
    }

    /// The peer as logged, e.g. `127.0.0.1:53211` or `unix`.
    public let peer: String
    /// The peer's host, the unit of the failed-`hello` rate limit.
    let peerHost: String
    /// The socket, or `nil` for requests dispatched in process.
    let channel: (any Channel)?
    private let identity = Mutex(Identity())
    let inFlight = Atomic<Int>(0)

    init(channel: any Channel) {
        self.channel = channel
        if let address = channel.remoteAddress, let ip = address.ipAddress {
            peer = "\(ip):\(address.port ?? 0)"
            peerHost = ip
        } else {
            peer = "unix"
            peerHost = "unix"
        }
    }

    /// A connection with no socket, for in-process dispatch.
    init(peer: String) {
        channel = nil
        self.peer = peer
        peerHost = peer
    }

    func close() {
        channel?.close(promise: nil)
    }

    var grant: TokenGrant? { identity.withLock { $0.grant } }

    func identify(clientName: String, grant: TokenGrant?) {
        identity.withLock { $0 = Identity(clientName: clientName, grant: grant) }
    }

    /// The tenant and audit actor for store calls: the token's tenant, or `local` without auth.
    public var caller: Caller {
        identity.withLock { identity in
            Caller(tenant: identity.grant?.tenant ?? Authenticator.localTenant, actor: identity.clientName ?? "anonymous")
        }
    }
}
