import Foundation
import NIOCore
import NIOEmbedded
import NIOExtras
import SessionProtocol
import Testing

@Suite struct FrameCodecTests {
    private func makeChannel(maxFrameBytes: Int = 1024) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addFrameCodec(maxFrameBytes: maxFrameBytes)
        return channel
    }

    private func frame(_ text: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(text.utf8.count))
        buffer.writeString(text)
        return buffer
    }

    @Test func aFrameFedOneByteAtATimeDecodes() throws {
        let channel = try makeChannel()
        var input = frame(#"{"a":1}"#)
        while let byte = input.readSlice(length: 1) {
            try channel.writeInbound(byte)
        }
        let decoded = try #require(try channel.readInbound(as: ByteBuffer.self))
        #expect(String(buffer: decoded) == #"{"a":1}"#)
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
        _ = try channel.finish()
    }

    @Test func severalFramesInOneBufferAllDecode() throws {
        let channel = try makeChannel()
        var input = frame("one")
        input.writeImmutableBuffer(frame("two"))
        input.writeImmutableBuffer(frame("three"))
        try channel.writeInbound(input)
        var texts: [String] = []
        while let decoded = try channel.readInbound(as: ByteBuffer.self) { texts.append(String(buffer: decoded)) }
        #expect(texts == ["one", "two", "three"])
        _ = try channel.finish()
    }

    @Test func anOversizedLengthIsRefusedFromTheHeaderAlone() throws {
        let channel = try makeChannel(maxFrameBytes: 1024)
        var header = ByteBuffer()
        header.writeInteger(UInt32(1 << 30))
        #expect(throws: FrameError.frameTooLarge(length: 1 << 30, maxFrameBytes: 1024)) {
            try channel.writeInbound(header)
        }
    }

    @Test func aFrameAtTheLimitIsAcceptedAndOneByteMoreIsNot() throws {
        let channel = try makeChannel(maxFrameBytes: 16)
        try channel.writeInbound(frame(String(repeating: "x", count: 16)))
        #expect(try channel.readInbound(as: ByteBuffer.self)?.readableBytes == 16)
        #expect(throws: FrameError.frameTooLarge(length: 17, maxFrameBytes: 16)) {
            try channel.writeInbound(frame(String(repeating: "x", count: 17)))
        }
    }

    @Test func aZeroLengthFrameIsAnError() throws {
        let channel = try makeChannel()
        var header = ByteBuffer()
        header.writeInteger(UInt32(0))
        #expect(throws: FrameError.emptyFrame) { try channel.writeInbound(header) }
    }

    @Test func endOfInputInsideAFrameIsTruncated() throws {
        let channel = try makeChannel()
        var partial = ByteBuffer()
        partial.writeInteger(UInt32(10))
        partial.writeString("abc")
        try channel.writeInbound(partial)
        #expect(throws: FrameError.truncatedFrame) { _ = try channel.finish() }
    }

    @Test func outboundFramesGetABigEndianLengthHeader() throws {
        let channel = try makeChannel()
        try channel.writeOutbound(ByteBuffer(string: "hi"))
        var written = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&part) }
        #expect(Array(written.readableBytesView) == [0, 0, 0, 2, UInt8(ascii: "h"), UInt8(ascii: "i")])
        _ = try channel.finish()
    }
}

@Suite struct EnvelopeTests {
    @Test func errorsCarryTheirCodeAndReason() throws {
        let error = SessionError(.leaseHeld, "busy", detail: ["holder": "ci"])
        let data = try WireJSON.makeEncoder().encode(RPCFailure(id: .number(7), error: error))
        let text = String(decoding: data, as: UTF8.self)
        #expect(text == #"{"error":{"code":-32002,"data":{"holder":"ci","reason":"lease_held"},"message":"busy"},"id":7,"jsonrpc":"2.0"}"#)
        let decoded = try JSONDecoder().decode(RPCResponseHead.self, from: data)
        #expect(decoded.error?.sessionError == error)
    }

    @Test func everyReasonHasADistinctCode() {
        let codes: [SessionError.Code] = [
            .parseError, .invalidRequest, .methodNotFound, .invalidParams, .internal, .notFound, .leaseHeld,
            .staleLease, .unauthenticated, .forbidden, .tooLarge, .rateLimited, .shuttingDown, .conflict,
            .storageFull, .unavailable, .overloaded, .timeout,
        ]
        #expect(Set(codes.map(\.rpcCode)).count == codes.count)
        for code in codes { #expect(SessionError.Code(rpcCode: code.rpcCode) == code) }
    }

    @Test func requestEnvelopesTellNotificationsNullAndInvalidIdsApart() throws {
        func head(_ json: String) throws -> RPCRequestEnvelope {
            try RPCRequestEnvelope(parsing: ByteBuffer(string: json))
        }
        #expect(try head(#"{"jsonrpc":"2.0","id":"a","method":"m"}"#).id == .string("a"))
        #expect(try head(#"{"jsonrpc":"2.0","id":5,"method":"m"}"#).id == .number(5))
        #expect(try head(#"{"jsonrpc":"2.0","id":-9223372036854775808,"method":"m"}"#).id == .number(.min))
        let absent = try head(#"{"jsonrpc":"2.0","method":"m"}"#)
        #expect(!absent.hasID && !absent.hasInvalidID)
        let null = try head(#"{"jsonrpc":"2.0","id":null,"method":"m"}"#)
        #expect(null.hasID && null.id == nil && !null.hasInvalidID)
        for id in [#"{"x":1}"#, "1.5", "1e2", "9223372036854775808", "true", "[]"] {
            #expect(try head(#"{"jsonrpc":"2.0","id":\#(id),"method":"m"}"#).hasInvalidID, "\(id)")
        }
        // Escaped envelope strings are unescaped; the first of two members counts.
        let escaped = try head(#"{"jsonrpc":"2.0","id":"\u0061","method":"hea\u006cth","method":"other"}"#)
        #expect(escaped.method == "health" && escaped.id == .string("a"))
    }

    @Test func envelopesRefuseWhatRFC8259Refuses() throws {
        let bad = [
            #"{"jsonrpc":"2.0","id":1,"method":"health",}"#, #"{"params":{"a":[1,]}}"#, #"{"x":01}"#,
            #"{"x":"\x41"}"#, #"{"x":1.}"#, #"{"x":1e}"#, #"{"x":-}"#, #"{"x":+1}"#, #"{"x":NaN}"#, #"{"x":.5}"#,
            #"{"x":tru}"#, #"{'a':1}"#, #"{a:1}"#, #"{"a" 1}"#, #"{"a":1"#, #"{"a":"\u12"}"#, "{\"a\":\"\t\"}",
            #"{"a":1} x"#, #"{"a":1}}"#, "", " ", #"{"a":"# + String(repeating: "[", count: 512) + String(repeating: "]", count: 512) + "}",
        ]
        for text in bad {
            #expect(throws: RPCRequestEnvelope.Refusal.self, "\(text.prefix(60))") {
                _ = try RPCRequestEnvelope(parsing: ByteBuffer(string: text))
            }
        }
        let badUTF8: [[UInt8]] = [[0xFF], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]]
        for bytes in badUTF8 {
            var frame = ByteBuffer(string: #"{"a":""#)
            frame.writeBytes(bytes)
            frame.writeString(#""}"#)
            #expect(throws: RPCRequestEnvelope.Refusal.self) { _ = try RPCRequestEnvelope(parsing: frame) }
        }
        let good = [
            #" {"a" : [ 1 , -0.5e+3 , 0 , 1E-2 , true , false , null , "\"\\\/\b\f\n\r\t\u00e9" , {} , [] ] } "#,
            #"{"é€𝄞":"é€𝄞"}"#, #"{"a":"# + String(repeating: "[", count: 511) + String(repeating: "]", count: 511) + "}",
        ]
        for text in good {
            #expect(throws: Never.self) { _ = try RPCRequestEnvelope(parsing: ByteBuffer(string: text)) }
        }
        #expect(throws: RPCRequestEnvelope.Refusal.notAnObject(isArray: true)) {
            _ = try RPCRequestEnvelope(parsing: ByteBuffer(string: "[1]"))
        }
        #expect(throws: RPCRequestEnvelope.Refusal.notAnObject(isArray: false)) {
            _ = try RPCRequestEnvelope(parsing: ByteBuffer(string: "42"))
        }
    }

    /// What a client reads when an object or array is malformed: the fault, and the byte it is at.
    @Test func containerFaultsAreNamedWithTheirOffset() {
        func message(_ text: String) -> String? {
            do {
                _ = try RPCRequestEnvelope(parsing: ByteBuffer(string: text))
                return nil
            } catch {
                guard case .notJSON(let message) = error else { return "\(error)" }
                return message
            }
        }
        #expect(message(#"{"a":1,}"#) == "a trailing comma at byte 7")
        #expect(message(#"{"a":[1,]}"#) == "a trailing comma at byte 8")
        #expect(message(#"{"a":1"#) == "unexpected end of input in an object at byte 6")
        #expect(message(#"{"a":[1"#) == "unexpected end of input in an array at byte 7")
        #expect(message(#"{"a":1 "b":2}"#) == "expected ',' or '}' in an object, found '\"' at byte 7")
        #expect(message(#"{"a":[1 2]}"#) == "expected ',' or ']' in an array, found '2' at byte 8")
        #expect(message(#"{"a":[],"b":{},"c":[{}, [ ]]}"#) == nil)
        #expect(message(#"{"a":"# + String(repeating: "[", count: 512) + String(repeating: "]", count: 512) + "}")?
            .hasPrefix("nesting deeper than 512 levels") == true)
    }

    /// Random JSON that Foundation writes must pass; when one byte of it changes and the scanner still
    /// accepts it, Foundation reads it too. The scanner checks syntax, not range (a number that does not fit
    /// is refused when params are decoded), so no mutation may make a number out of range: bytes do not
    /// change to digits or exponents, and doubles stay within ±1e15, so that even a comma that splits one
    /// (`-2.74e+299` into `-2,74e+299`) cannot overflow.
    @Test func scannerAcceptsWhatFoundationWritesAndNothingFoundationCannotRead() throws {
        var generator = SystemRandomNumberGenerator()
        func randomValue(_ depth: Int) -> Any {
            switch Int.random(in: 0..<(depth > 3 ? 4 : 6), using: &generator) {
            case 0: return Int.random(in: .min ... .max, using: &generator)
            case 1: return Double.random(in: -1e15...1e15, using: &generator)
            case 2: return String((0..<Int.random(in: 0..<8, using: &generator)).map { _ in
                ["a", "\"", "\\", "\n", "\u{1}", "é", "𝄞", "/", " "].randomElement(using: &generator)! }.joined())
            case 3: return [true, false].randomElement(using: &generator)! as Any
            case 4: return (0..<Int.random(in: 0..<4, using: &generator)).map { _ in randomValue(depth + 1) }
            default:
                return Dictionary(uniqueKeysWithValues: (0..<Int.random(in: 0..<4, using: &generator)).map {
                    ("k\($0)", randomValue(depth + 1)) })
            }
        }
        for _ in 0..<300 {
            let data = try JSONSerialization.data(withJSONObject: ["params": randomValue(0)])
            let frame = ByteBuffer(bytes: data)
            #expect(throws: Never.self, "\(String(decoding: data, as: UTF8.self))") {
                _ = try RPCRequestEnvelope(parsing: frame)
            }
            var mutated = Array(data)
            var byte = UInt8.random(in: 0...255, using: &generator)
            while Array("0123456789eE".utf8).contains(byte) { byte = UInt8.random(in: 0...255, using: &generator) }
            mutated[Int.random(in: 0..<mutated.count, using: &generator)] = byte
            if (try? RPCRequestEnvelope(parsing: ByteBuffer(bytes: mutated))) != nil {
                #expect((try? JSONSerialization.jsonObject(with: Data(mutated))) != nil, "\(mutated)")
            }
        }
    }

    @Test func paramsOutOfRangeNameTheirField() throws {
        struct Params: Decodable {
            struct Lease: Decodable { var fence: Int64 }
            struct Message: Decodable { var inputTokens: Int? }
            var lease: Lease?
            var limit: Int?
            var cost: Double?
            var messages: [Message]?
        }
        func message(_ params: String) -> String? {
            let frame = ByteBuffer(string: #"{"jsonrpc":"2.0","id":1,"method":"m","params":\#(params)}"#)
            do {
                _ = try RPCRequestEnvelope(parsing: frame).decodeParams(Params.self)
                return nil
            } catch {
                #expect((error as? SessionError)?.code == .invalidParams)
                return (error as? SessionError)?.message ?? "\(error)"
            }
        }
        #expect(message(#"{"lease":{"fence":1e30}}"#)?.hasPrefix("lease.fence (1e30) does not fit its field") == true)
        #expect(message(#"{"limit":18446744073709551616}"#)?.contains("limit (18446744073709551616)") == true)
        #expect(message(#"{"limit":1.5}"#)?.contains("limit (1.5)") == true)
        #expect(message(#"{"cost":1e400}"#)?.contains("cost (1e400)") == true)
        #expect(message(#"{"messages":[{"inputTokens":5},{"inputTokens":1e19}]}"#)?.contains("messages[1].inputTokens") == true)
        #expect(message(#"{"limit":"x"}"#) == "limit has the wrong type (expected integer)")
        #expect(message(#"{"lease":{}}"#) == "lease.fence is required")
        #expect(message(#"{"limit":2.0,"cost":0.5,"lease":{"fence":-9223372036854775808}}"#) == nil)
        #expect(message("null") == nil)
    }

    @Test func datesAreISO8601WithMilliseconds() throws {
        let date = Date(timeIntervalSince1970: 1_800_000_000.123)
        #expect(WireJSON.formatDate(date) == "2027-01-15T08:00:00.123Z")
        let parsed = try #require(WireJSON.parseDate("2027-01-15T08:00:00.123Z"))
        #expect(abs(parsed.timeIntervalSince1970 - 1_800_000_000.123) < 0.0005)
        #expect(WireJSON.formatDate(Date(timeIntervalSince1970: -0.5)) == "1969-12-31T23:59:59.500Z")
        #expect(WireJSON.parseDate("2027-01-15T08:00:00Z") != nil)
        #expect(WireJSON.parseDate("yesterday") == nil)
    }

    @Test func fastDateCodingAgreesWithFoundation() throws {
        let reference = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        var generator = SystemRandomNumberGenerator()
        // Random instants from 1900 to 2200, plus leap days and the ends of years and months.
        var samples = (0..<2_000).map { _ in Int64.random(in: -2_208_988_800_000...7_258_118_400_000, using: &generator) }
        samples += [951_782_400_000, 1_709_164_800_000, 4_107_542_399_999, 0, -1, 1_800_000_000_123]
        for milliseconds in samples {
            let date = Date(timeIntervalSince1970: Double(milliseconds) / 1000)
            let text = WireJSON.formatDate(date)
            // Foundation truncates the fraction, so nudge it past the float error to name the same millisecond.
            #expect(text == reference.format(date.addingTimeInterval(0.0002)), "\(milliseconds)")
            let parsed = try #require(WireJSON.parseDate(text))
            #expect(Int64((parsed.timeIntervalSince1970 * 1000).rounded()) == milliseconds, "\(text)")
        }
        #expect(WireJSON.parseDate("2026-11-21T08:46:19.1234567Z").map { $0.timeIntervalSince1970 } == 1_795_250_779.123)
        #expect(WireJSON.parseDate("2026-11-21T08:46:19.5Z").map { $0.timeIntervalSince1970 } == 1_795_250_779.5)
        // An offset goes through Foundation's parser; impossible fields are refused.
        #expect(WireJSON.parseDate("2026-11-21T09:46:19.000+01:00").map { $0.timeIntervalSince1970 } == 1_795_250_779)
        for bad in ["2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z", "2026-11-21T24:00:00Z", "2026-11-21T08:46:19.Z",
                    "2026-11-21T08:46:19.12xZ", "2026-11-21 08:46:19Z"] {
            #expect(WireJSON.parseDate(bad) == nil, "\(bad)")
        }
    }

    @Test func missingParamsDecodeAsDefaults() throws {
        let list = try RPCRequestEnvelope(parsing: ByteBuffer(string: #"{"jsonrpc":"2.0","id":1,"method":"session.list"}"#))
            .decodeParams(SessionList.Params.self)
        #expect(list.limit == nil)
        #expect(throws: SessionError.self) {
            _ = try RPCRequestEnvelope(parsing: ByteBuffer(string: #"{"jsonrpc":"2.0","id":1,"method":"stats","params":"x"}"#))
                .decodeParams(Empty.self)
        }
    }
}
