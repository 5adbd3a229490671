import Synchronization

/// Bounds the requests that run at once on one connection. The connection's reader waits here, so a
/// client that sends faster than it is served stops being read (TCP back-pressure), not buffered.
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

    /// Waits for a free slot. Only the connection's single reader calls this.
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

    /// Frees a slot, handing it straight to a waiting reader if there is one.
    func leave() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter  // the slot passes on: `running` stays the same
            }
            state.running -= 1
            return nil
        }
        waiter?.resume()
    }
}
