import Foundation
import NIOCore
import NIOFoundationCompat
import SessionProtocol
import Testing

/// The results that write their own JSON must write what `JSONEncoder` writes for them: the same members
/// and values (`JSONEncoder` without sorted keys orders members by hash, so the order may differ).
@Suite struct WireWriterTests {
    private let encoder = WireJSON.makeEncoder(sortedKeys: false)
    private let allocator = ByteBufferAllocator()

    /// Text that needs every kind of escaping, and text that needs none.
    private let awkward = ["plain", "quote \" backslash \\ slash / tab \t newline \n return \r", "\u{0}\u{8}\u{c}\u{1f}\u{7f}",
                           "é ü 漢字 🙂 \u{2028}", ""]

    private func session(_ index: Int, full: Bool) -> SessionInfo {
        let text = awkward[index % awkward.count]
        let at = Date(timeIntervalSince1970: 1_800_000_000.123 + Double(index) * 7.001)
        return SessionInfo(
            id: "id-\(index)", tenant: "local", key: "k:\(text)", tool: "claude", cwd: full ? "/work/\(text)" : nil,
            cliSessionId: full ? UUID().uuidString : nil, status: SessionStatus.allCases[index % 4], createdAt: at,
            lastUsedAt: at, expiresAt: at.addingTimeInterval(86_400), ttlSeconds: 86_400, turnCount: index,
            resumeAttempts: index * 3, resumeSuccesses: index, consecutiveFailures: 2, totalFailures: 7,
            lastFailureReason: full ? "No conversation found \(text)" : nil,
            costUsd: [0, 1, 0.12, 0.1 + 0.2, 1e20, 123_456_789.5, 1e-7][index % 7], inputTokens: 1200, outputTokens: 300,
            messageCount: 24, transcriptBytes: 5_364,
            metadata: full
                ? ["team": .string(text), "n": .number(1.5), "ok": .bool(true), "none": .null,
                   "list": .array([.number(1), .string("x"), .object(["deep": .number(-3)])])]
                : [:],
            labels: full ? ["a", text] : [], parentId: full ? "parent" : nil,
            lease: full ? LeaseState(holder: "h \(text)", fence: Int64(index), expiresAt: at) : nil)
    }

    private func expectSameJSON<Result: WireWritable & Encodable>(_ result: Result, id: RPCID?) throws {
        let expected = try JSONSerialization.jsonObject(with: encoder.encode(RPCSuccess(id: id, result: result)))
        let written = WireWriter.success(id: id, result: result, allocator: allocator)
        let parsed = try JSONSerialization.jsonObject(with: Data(buffer: written))
        #expect((parsed as? NSDictionary) == (expected as? NSDictionary), "\(String(buffer: written))")
    }

    @Test func everyTurnResultIsWrittenAsJSONEncoderWritesIt() throws {
        for index in 0..<40 {
            let full = index % 2 == 0
            let lease = Lease(token: "t\(index)", fence: Int64(index), holder: "h", expiresAt: Date(timeIntervalSince1970: 1e9))
            let decision = index % 3 == 0 ? ResumeDecision.fresh(.expired) : .resume("cli-\(index)", fork: index % 4 == 1)
            let ids: [RPCID?] = [.number(Int64(index)), .string("req \"\(index)\""), nil]
            let id = ids[index % 3]
            let info = session(index, full: full)
            try expectSameJSON(
                SessionAcquire.Result(
                    session: info, created: full, lease: lease, decision: decision,
                    transcript: full ? TranscriptState(cliSessionId: "c", size: index) : nil), id: id)
            try expectSameJSON(
                SessionComplete.Result(session: info, chainExtended: !full, lease: full ? lease : nil, decision: full ? decision : nil),
                id: id)
            try expectSameJSON(SessionTouch.Result(session: info), id: id)
            try expectSameJSON(SessionList.Result(sessions: [info, session(index + 1, full: false)], nextCursor: full ? "c" : nil), id: id)
            try expectSameJSON(MessagesAppend.Result(firstSeq: index, lastSeq: index + 2), id: id)
            try expectSameJSON(
                MessagesList.Result(
                    messages: [Message(seq: index, role: .assistant, content: awkward[index % awkward.count],
                                       inputTokens: full ? 3 : nil, outputTokens: nil, at: Date(timeIntervalSince1970: 1e9))],
                    nextAfterSeq: full ? index : nil), id: id)
        }
    }

    /// Integers at their limits, and results far larger than the writer's first allocation (it grows).
    @Test func extremeIntegersAndLargeResultsAreWrittenAsJSONEncoderWritesThem() throws {
        for id: Int64 in [0, -1, 9, 10, -10, 1_000_000_007, .max, .min] {
            try expectSameJSON(MessagesAppend.Result(firstSeq: Int(id), lastSeq: Int(id / 3)), id: .number(id))
        }
        let long = String(repeating: "a\"é\n\u{1}", count: 20_000)
        let messages = (0..<30).map {
            Message(seq: $0, role: .user, content: String(long.prefix($0 * 3_000)), inputTokens: nil, outputTokens: nil,
                    at: Date(timeIntervalSince1970: 1e9))
        }
        try expectSameJSON(MessagesList.Result(messages: messages, nextAfterSeq: nil), id: .number(1))
    }

    /// `JSONEncoder` throws on infinity and NaN; the writer must still write valid JSON.
    @Test func aNumberJSONCannotHoldIsWrittenAsNull() throws {
        var info = session(0, full: false)
        info.costUsd = .infinity
        info.metadata = ["nan": .number(.nan)]
        let written = WireWriter.success(id: .number(1), result: SessionTouch.Result(session: info), allocator: allocator)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(buffer: written)) as? [String: Any])
        let parsed = try #require((object["result"] as? [String: Any])?["session"] as? [String: Any])
        #expect(parsed["costUsd"] is NSNull)
        #expect((parsed["metadata"] as? [String: Any])?["nan"] is NSNull)
    }

    /// Stored JSON (metadata, audit details) is the same writer's text: it reads back as the same value, and
    /// equal values give equal text whatever order their members were built in.
    @Test func storedJSONTextReadsBackAsTheSameValueWithMembersInKeyOrder() throws {
        var members: [String: JSONValue] = [:]
        for (index, text) in awkward.enumerated() { members["k\(index) \(text)"] = .string(text) }
        members["numbers"] = .array([.number(3), .number(-0.5), .number(1e300), .number(123_456_789_012_345)])
        members["nested"] = .object(["b": .bool(true), "a": .null, "c": .array([])])
        let text = WireWriter.text(.object(members))
        let parsed = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        #expect(parsed == .object(members))
        #expect(text.contains(#""numbers":[3,-0.5,1e+300,123456789012345]"#))
        #expect(text.contains(#""nested":{"a":null,"b":true,"c":[]}"#))
        var reversed: [String: JSONValue] = [:]
        for (name, value) in members.reversed() { reversed[name] = value }
        #expect(WireWriter.text(.object(reversed)) == text)
        #expect(WireWriter.text(.object(["x": .number(.infinity)])) == #"{"x":null}"#)
    }

    /// A member added to `SessionInfo` but not to its writer would be missing from this comparison's output.
    @Test func theFullSessionHasEveryMemberSet() throws {
        let info = session(0, full: true)
        let unset = Mirror(reflecting: info).children.filter { child in
            if case Optional<Any>.none = child.value as Any? { return true }
            let mirror = Mirror(reflecting: child.value)
            return mirror.displayStyle == .optional && mirror.children.isEmpty
        }
        #expect(unset.map(\.label) == [])
        let object = try #require(try JSONSerialization.jsonObject(
            with: Data(buffer: WireWriter.success(id: nil, result: SessionTouch.Result(session: info), allocator: allocator)))
            as? [String: Any])
        let written = try #require((object["result"] as? [String: Any])?["session"] as? [String: Any])
        #expect(Set(written.keys) == Set(Mirror(reflecting: info).children.compactMap(\.label)))
    }
}
