import Synchronization

/// Bounds the requests, and their bytes, that run at once on one connection. The connection's reader waits
/// here, so a client that sends faster than it is served stops being read (TCP back-pressure), not buffered.
final class InFlightGate: Sendable {
    private struct State {
        var running = 0
        var bytes = 0
        var waiter: (bytes: Int, continuation: CheckedContinuation<Void, Never>)?
    }

    private let limit: Int
    private let byteLimit: Int
    private let state = Mutex(State())

    init(limit: Int, byteLimit: Int) {
        self.limit = max(1, limit)
        self.byteLimit = max(1, byteLimit)
    }

    /// Waits until a request of `bytes` may run. Only the connection's single reader calls this.
    func enter(bytes: Int) async {
        await withCheckedContinuation { continuation in
            let admitted = state.withLock { state -> Bool in
                if fits(bytes, state) {
                    state.running += 1
                    state.bytes += bytes
                    return true
                }
                state.waiter = (bytes, continuation)
                return false
            }
            if admitted { continuation.resume() }
        }
    }

    /// Frees what a finished request held, admitting the waiting reader once its request fits.
    func leave(bytes: Int) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.running -= 1
            state.bytes -= bytes
            guard let waiter = state.waiter, fits(waiter.bytes, state) else { return nil }
            state.waiter = nil
            state.running += 1
            state.bytes += waiter.bytes
            return waiter.continuation
        }
        waiter?.resume()
    }

    /// A request fits when the counts allow it; one request alone always fits.
    private func fits(_ bytes: Int, _ state: State) -> Bool {
        state.running == 0 || (state.running < limit && state.bytes + bytes <= byteLimit)
    }
}
