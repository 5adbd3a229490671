import Foundation
import NIOCore
import NIOPosix
import SessionClient
import SessionProtocol
import SessionServer
import SessionStore
import SessionTesting
import Synchronization
import Testing

/// Every kind of bad input named in the server issue, each against a real server on a real socket.
/// After each, the server must still serve a well-behaved client.
@Suite struct BadInputTests {
    private func reason(_ frame: [String: Any]?) -> String? {
        ((frame?["error"] as? [String: Any])?["data"] as? [String: Any])?["reason"] as? String
    }

    private func assertStillServing(_ server: TestServer) async throws {
        let status = try await SessiondClient.withConnection(server.client("well-behaved").configuration) { client in
            try await client.health().status
        }
        #expect(status == "ok")
    }

    @Test func garbageBytesAreRefusedAndTheConnectionClosed() async throws {
        try await withTestServer { server in
            let raw = try await RawConnection(port: server.port)
            try await raw.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
            let frame = await raw.nextFrame()
            #expect(reason(frame) == "too_large")
            #expect(frame?["id"] is NSNull)
            #expect(await raw.waitForClose())
            raw.close()
            try await assertStillServing(server)
        }
    }

    @Test func aTruncatedFrameThenCloseIsReported() async throws {
        try await withTestServer { server in
            let raw = try await RawConnection(port: server.port)
            // One complete request, then half of another, then end of input.
            try await raw.send(json: #"{"jsonrpc":"2.0","id":1,"method":"health"}"#)
            try await raw.send(RawConnection.header(100) + Array(#"{"jsonrpc":"2.0""#.utf8))
            try await raw.halfClose()
            var frames: [[String: Any]] = []
            while let frame = await raw.nextFrame(timeout: .seconds(5)) { frames.append(frame) }
            #expect(frames.contains { ($0["id"] as? Int) == 1 && $0["result"] != nil })
            #expect(frames.contains { reason($0) == "invalid_request" })
            raw.close()
            try await assertStillServing(server)
        }
    }

    @Test func requestsPipelinedBeforeAHalfCloseAreAllAnsweredThenTheConnectionCloses() async throws {
        try await withTestServer(configure: { $0.maxInFlight = 2 }) { server in
            let raw = try await RawConnection(port: server.port)
            // Far more than may run at once, in one write, then end of input: those past the limit wait.
            var bytes: [UInt8] = []
            for index in 0..<50 {
                let json = Array(#"{"jsonrpc":"2.0","id":\#(index),"method":"session.acquire","params":{"key":"k\#(index)"}}"#.utf8)
                bytes += RawConnection.header(json.count) + json
            }
            try await raw.send(bytes)
            try await raw.halfClose()
            var answered: Set<Int> = []
            while let frame = await raw.nextFrame(timeout: .seconds(10)) {
                if frame["result"] != nil, let id = frame["id"] as? Int { answered.insert(id) }
            }
            #expect(answered == Set(0..<50))
            #expect(await raw.waitForClose(timeout: .seconds(5)))
            raw.close()
            try await assertStillServing(server)
        }
    }

    @Test func deeplyNestedJSONIsAnErrorNotACrash() async throws {
        try await withTestServer { server in
            let raw = try await RawConnection(port: server.port)
            let nested = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
            try await raw.send(json: #"{"jsonrpc":"2.0","id":1,"method":"session.get","params":{"key":\#(nested)}}"#)
            let frame = await raw.nextFrame()
            #expect(["parse_error", "invalid_params"].contains(reason(frame)))
            raw.close()
            try await assertStillServing(server)
        }
    }

    @Test func hugeFieldsAreRefusedWithTooLarge() async throws {
        try await withTestServer { server in
            let client = server.client()
            let hugeKey = String(repeating: "k", count: 1_000_000)
            #expect(await expectCode(.tooLarge) { _ = try await client.acquire(.init(key: hugeKey)) })
            let acquired = try await client.acquire(.init(key: "big"))
            let hugeMessage = String(repeating: "m", count: 5 * 1024 * 1024)
            #expect(await expectCode(.tooLarge) {
                _ = try await client.appendMessages(
                    .init(sessionId: acquired.session.id, messages: [.init(role: .user, content: hugeMessage)]))
            })
            #expect(try await client.session(key: "big").messageCount == 0)
            await client.close()
            try await assertStillServing(server)
        }
    }

    @Test func aFrameOverTheConfiguredCapIsRefusedBeforeItsPayload() async throws {
        try await withTestServer(configure: { $0.maxFrameBytes = 1024 }) { server in
            let raw = try await RawConnection(port: server.port)
            try await raw.send(RawConnection.header(2048) + Array(repeating: UInt8(ascii: " "), count: 10))
            #expect(reason(await raw.nextFrame()) == "too_large")
            #expect(await raw.waitForClose())
            raw.close()
            try await assertStillServing(server)
        }
    }

    @Test func requestsBeforeHelloAndWrongTokensAreUnauthenticated() async throws {
        try await withTestServer { server in
            let setup = server.client("setup")
            _ = try await setup.createToken(tenant: "t", admin: true)
            await setup.close()
            let raw = try await RawConnection(port: server.port)
            try await raw.send(json: #"{"jsonrpc":"2.0","id":1,"method":"session.list"}"#)
            #expect(reason(await raw.nextFrame()) == "unauthenticated")
            // A hello without a token is no login: it says auth is required, and the rest stays refused.
            try await raw.send(json: #"{"jsonrpc":"2.0","id":4,"method":"hello","params":{"client":{"name":"x"}}}"#)
            let hello = await raw.nextFrame()?["result"] as? [String: Any]
            #expect(hello?["authRequired"] as? Bool == true)
            #expect(hello?["tenant"] as? String == "")
            try await raw.send(json: #"{"jsonrpc":"2.0","id":5,"method":"session.list"}"#)
            #expect(reason(await raw.nextFrame()) == "unauthenticated")
            try await raw.send(json: #"{"jsonrpc":"2.0","id":2,"method":"hello","params":{"client":{"name":"x"},"token":"sdt_nope"}}"#)
            #expect(reason(await raw.nextFrame()) == "unauthenticated")
            // health needs no auth.
            try await raw.send(json: #"{"jsonrpc":"2.0","id":3,"method":"health"}"#)
            #expect(await raw.nextFrame()?["result"] != nil)
            raw.close()
        }
    }

    @Test func connectionsPastTheCapAreRefusedAndOthersKeepWorking() async throws {
        try await withTestServer(configure: { $0.maxConnections = 4 }) { server in
            var connections: [RawConnection] = []
            for _ in 0..<4 {
                let raw = try await RawConnection(port: server.port)
                try await raw.send(json: #"{"jsonrpc":"2.0","id":1,"method":"health"}"#)
                #expect(await raw.nextFrame()?["result"] != nil)
                connections.append(raw)
            }
            var refused = 0
            for _ in 0..<6 {
                let extra = try await RawConnection(port: server.port)
                if reason(await extra.nextFrame()) == "overloaded", await extra.waitForClose() { refused += 1 }
                extra.close()
            }
            #expect(refused == 6)
            // The admitted connections still work.
            try await connections[0].send(json: #"{"jsonrpc":"2.0","id":2,"method":"health"}"#)
            #expect(await connections[0].nextFrame()?["result"] != nil)
            for connection in connections { connection.close() }
            try await Task.sleep(for: .milliseconds(200))
            try await assertStillServing(server)
        }
    }

    @Test func aClientThatNeverFinishesItsFrameIsClosedByTheIdleTimeout() async throws {
        try await withTestServer(configure: { $0.idleTimeout = .milliseconds(1000) }) { server in
            let raw = try await RawConnection(port: server.port)
            try await raw.send(RawConnection.header(50) + Array("{\"json".utf8))
            // Trickle one byte at a time: bytes alone do not keep a connection alive.
            for _ in 0..<5 {
                try await Task.sleep(for: .milliseconds(300))
                try? await raw.send([UInt8(ascii: " ")])
            }
            #expect(await raw.waitForClose(timeout: .seconds(5)))
            raw.close()
            try await assertStillServing(server)
        }
    }

    /// A connection runs at most `maxInFlight` requests at once: a request past them waits for one to end,
    /// even one that would answer at once.
    @Test func requestsPastMaxInFlightWaitForARunningOneToEnd() async throws {
        try await withTestServer(configure: { $0.maxInFlight = 2 }) { server in
            try await SessiondClient.withConnection(server.client("holder").configuration) { holder in
                let held = try await holder.acquire(.init(key: "k"))
                let raw = try await RawConnection(port: server.port)
                // Two acquires that wait for the holder's lease fill both places; then a health check.
                for id in 1...2 {
                    try await raw.send(json: #"{"jsonrpc":"2.0","id":\#(id),"method":"session.acquire","params":{"key":"k","waitMs":3000}}"#)
                }
                try await raw.send(json: #"{"jsonrpc":"2.0","id":3,"method":"health"}"#)
                #expect(await raw.nextFrame(timeout: .milliseconds(700)) == nil)
                // The release lets one acquire through, and its place goes to the health check.
                #expect(try await holder.release(sessionId: held.session.id, lease: held.lease.proof))
                let granted = await raw.nextFrame()
                #expect([1, 2].contains(granted?["id"] as? Int) && granted?["result"] != nil)
                let health = await raw.nextFrame(timeout: .seconds(2))
                #expect(health?["id"] as? Int == 3 && health?["result"] != nil)
                // The other acquire waits out its 3 s behind the new holder.
                let refused = await raw.nextFrame(timeout: .seconds(5))
                #expect(refused.map(reason) == "lease_held")
                raw.close()
            }
        }
    }

    /// Answers wait in the server while the client does not read them, and their socket buffers are full:
    /// the server must then stop taking new requests instead of running them and buffering every answer.
    /// Connects a client that does not read, sends `requests` acquires whose answers carry 60 KB each (far more
    /// than the socket buffers hold), and waits until the server stops serving them; returns the channel and
    /// how many sessions were created by then.
    private func floodWithoutReading(
        _ server: TestServer, requests: Int, answers: FrameCounter
    ) async throws -> (channel: any Channel, served: Int) {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addFrameCodec(maxFrameBytes: 1 << 24)
                    try channel.pipeline.syncOperations.addHandler(answers)
                }
            }
            .connect(host: "127.0.0.1", port: server.port).get()
        let metadata = String(repeating: "x", count: 60_000)
        for index in 0..<requests {
            let json = #"{"jsonrpc":"2.0","id":\#(index),"method":"session.acquire","params":{"key":"k\#(index)","metadata":{"m":"\#(metadata)"}}}"#
            channel.write(ByteBuffer(string: json), promise: nil)
        }
        channel.flush()
        // Served until the count, once it started, stops moving for half a second (or 30 seconds pass: a
        // loaded machine may take a while to start).
        var served = 0
        for _ in 0..<60 {
            try await Task.sleep(for: .milliseconds(500))
            let count: Int = try await server.store.readValue(sql: "SELECT COUNT(*) FROM session") ?? 0
            if count > 0, count == served { break }
            served = count
        }
        return (channel, served)
    }

    @Test func aClientThatStopsReadingItsAnswersStopsBeingServedUntilItReadsAgain() async throws {
        try await withTestServer(configure: { $0.maxInFlight = 8 }) { server in
            let answers = FrameCounter()
            let requests = 1000
            let (channel, servedWhileNotReading) = try await floodWithoutReading(
                server, requests: requests, answers: answers)
            #expect(servedWhileNotReading > 0)
            #expect(servedWhileNotReading < requests / 2)
            #expect(answers.count == 0)

            try await channel.setOption(.autoRead, value: true).get()
            channel.read()
            let deadline = ContinuousClock.now + .seconds(60)
            while answers.count < requests, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(answers.count == requests)
            let served: Int = try await server.store.readValue(sql: "SELECT COUNT(*) FROM session") ?? -1
            #expect(served == requests)
            try await channel.close()
        }
    }

    /// Without the grace period, shutdown waits for as long as the client does not read: forever here. The
    /// server runs in a task this test stops waiting for after two minutes, so that a hang fails the test and
    /// does not hold up the run.
    @Test func shutdownClosesAConnectionWhoseClientStoppedReadingOnceTheGraceIsOver() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sessiond-grace-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("db.sqlite").path
        let answers = FrameCounter()
        let requests = 1000
        let store = try SessionDatabase.open(path: path)
        let run = Task {
            try await withTestServer(
                store: store,
                configure: {
                    $0.maxInFlight = 8
                    $0.shutdownGrace = .milliseconds(300)
                }
            ) { server in
                try await floodWithoutReading(server, requests: requests, answers: answers)
            }
        }
        guard let (channel, served) = try await result(of: run, within: .seconds(120)) else {
            Issue.record("the flood and the shutdown after it did not end within two minutes (grace: 0.3 s)")
            return
        }
        // Shutdown returned, and the server closed the connection (with answers unread, the client may see a
        // reset and close at once).
        try? await channel.setOption(.autoRead, value: true).get()
        channel.read()
        try await channel.closeFuture.get()
        #expect(served > 0)
        // The requests held back were dropped, not run once the connection was closed: the database holds the
        // sessions served before shutdown (and any a stalled machine had still running then), far from all.
        let reopened = try SessionDatabase.open(path: path)
        let stored: Int = try await reopened.readValue(sql: "SELECT COUNT(*) FROM session") ?? -1
        #expect(stored >= served)
        #expect(stored < requests / 2)
        #expect(answers.count <= stored)
    }

    @Test func aPipeliningClientThatNeverReadsIsHeldBackNotBuffered() async throws {
        try await withTestServer(configure: { $0.maxInFlight = 8 }) { server in
            let raw = try await RawConnection(port: server.port)
            // 20,000 requests without reading one answer; the server must bound what it takes in.
            let request = Array(#"{"jsonrpc":"2.0","id":1,"method":"session.list","params":{"limit":1000}}"#.utf8)
            let frame = RawConnection.header(request.count) + request
            let sender = Task {
                for _ in 0..<200 { try await raw.send(Array([[UInt8]](repeating: frame, count: 100).joined())) }
            }
            try await Task.sleep(for: .seconds(2))
            try await assertStillServing(server)
            sender.cancel()
            raw.close()
        }
    }
}

/// The task's value, or `nil` when it has not finished within `limit` (the task is left running).
private func result<T: Sendable>(of task: Task<T, any Error>, within limit: Duration) async throws -> T? {
    let deadline = ContinuousClock.now + limit
    let finished = Atomic<Bool>(false)
    Task {
        _ = await task.result
        finished.store(true, ordering: .relaxed)
    }
    while !finished.load(ordering: .relaxed), ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(50))
    }
    return finished.load(ordering: .relaxed) ? try await task.value : nil
}

/// Counts the frames a test's raw client receives.
private final class FrameCounter: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    private let received = Atomic<Int>(0)

    var count: Int { received.load(ordering: .relaxed) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received.add(1, ordering: .relaxed)
    }
}
