import Synchronization

/// Wakes `session.acquire` calls that wait for a lease when the lease is given back.
final class LeaseWaiters: Sendable {
    private enum Slot {
        case waiting(CheckedContinuation<Void, Never>)
        case cancelled
    }

    private let slots = Mutex<[String: [UInt64: Slot]]>([:])
    private let nextID = Atomic<UInt64>(0)
    private let stopped = Atomic<Bool>(false)

    /// Whether ``stop()`` was called: waiting is over for good.
    var isStopped: Bool { stopped.load(ordering: .relaxed) }

    /// Wakes every waiter now and makes later waits return at once (on shutdown).
    func stop() {
        stopped.store(true, ordering: .relaxed)
        let names = slots.withLock { Array($0.keys) }
        for name in names { notify(name) }
    }

    /// Suspends until ``notify(_:)`` for `name`, the timeout, or cancellation, whichever comes first.
    func wait(for name: String, timeout: Duration) async {
        let id = nextID.add(1, ordering: .relaxed).newValue
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        let resumeNow = self.slots.withLock { slots -> Bool in
                            if self.isStopped { return true }
                            if case .cancelled = slots[name]?[id] {
                                slots[name]?[id] = nil
                                return true
                            }
                            slots[name, default: [:]][id] = .waiting(continuation)
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    self.cancel(name: name, id: id)
                }
                self.forget(name: name, id: id)
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// Wakes every waiter for `name`.
    func notify(_ name: String) {
        let continuations = slots.withLock { slots -> [CheckedContinuation<Void, Never>] in
            guard let waiting = slots.removeValue(forKey: name) else { return [] }
            return waiting.values.compactMap { slot in
                if case .waiting(let continuation) = slot { return continuation }
                return nil
            }
        }
        for continuation in continuations { continuation.resume() }
    }

    /// Drops a cancellation marker that a late cancel may have left after the wake-up.
    private func forget(name: String, id: UInt64) {
        slots.withLock { slots in
            slots[name]?[id] = nil
            if slots[name]?.isEmpty == true { slots[name] = nil }
        }
    }

    private func cancel(name: String, id: UInt64) {
        let continuation = slots.withLock { slots -> CheckedContinuation<Void, Never>? in
            switch slots[name]?[id] {
            case .waiting(let continuation):
                slots[name]?[id] = nil
                if slots[name]?.isEmpty == true { slots[name] = nil }
                return continuation
            case .cancelled:
                return nil
            case nil:
                slots[name, default: [:]][id] = .cancelled
                return nil
            }
        }
        continuation?.resume()
    }
}
