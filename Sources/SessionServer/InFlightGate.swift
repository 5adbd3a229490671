import Synchronization

/// Bounds the requests that run at once on one connection. The connection's reader waits here, so a client
/// that sends faster than it is served stops being read (TCP back-pressure), not buffered; the bytes it
/// may have outstanding are bounded by ``InboundBudget``.
final class InFlightGate: Sendable {
    private struct State {
        var running = 0
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let limit: Int
    private let state = Mutex(State())

    init(limit: Int) {
        self.limit = max(1, limit)
    }

    /// Waits until one more request may run. Only the connection's single reader calls this.
    func enter() async {
        await withCheckedContinuation { continuation in
            let admitted = state.withLock { state -> Bool in
                if state.running < limit {
                    state.running += 1
                    return true
                }
                state.waiter = continuation
                return false
            }
            if admitted { continuation.resume() }
        }
    }

    /// Frees a finished request's place, admitting the waiting reader.
    func leave() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.running -= 1
                return nil
            }
            // The place passes straight to the waiting reader.
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }
}
