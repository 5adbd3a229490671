import NIOCore
import SessionProtocol
import SessionStore
import Synchronization

/// One client connection: who it is, and how many of its requests, and of their bytes, are unanswered.
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
    /// Requests received and not yet answered (``IdleTimeoutHandler`` counts them in).
    let inFlight = Atomic<Int>(0)
    /// Their bytes (``InboundByteLimitHandler`` counts them in); `nil` for in-process dispatch.
    let budget: InboundBudget?

    init(channel: any Channel, budget: InboundBudget? = nil) {
        self.channel = channel
        self.budget = budget
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
        budget = nil
        self.peer = peer
        peerHost = peer
    }

    /// Counts one request out, answered or dropped, with its `bytes`; returns how many are still in flight.
    @discardableResult
    func answered(bytes: Int) -> Int {
        budget?.answered(bytes)
        return inFlight.subtract(1, ordering: .relaxed).newValue
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
