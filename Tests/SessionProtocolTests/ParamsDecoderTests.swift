import Foundation
import NIOCore
import SessionProtocol
import Testing

/// `ParamsDecoder` must decode what `JSONDecoder` (as `WireJSON.makeDecoder()` sets it up) decodes, and
/// refuse what it refuses with the same error, on the params of real methods and on thousands of
/// variations of them: every member removed, set to `null`, or set to a value of each JSON type, numbers
/// at and past the edges of their fields, escapes, duplicate and unknown members.
@Suite struct ParamsDecoderTests {
    /// A params object as an ordered list of members (name, JSON text), so that variants stay readable.
    struct Params {
        var members: [(String, String)]
        var json: String { "{" + members.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}" }
    }

    /// Values put in place of a member: each JSON type, and numbers and strings at the edges.
    static let replacements = [
        "null", "\"x\"", "\"\"", "0", "5", "-0", "1.0", "1.5", "1e2", "-1e-2", "1e400", "9223372036854775807",
        "9223372036854775808", "-9223372036854775808", "-9223372036854775809", "18446744073709551616", "true", "false",
        "{}", "[]", "[1]", "[\"a\",null]", "{\"a\":1}", #""caf\u00e9 \ud83d\ude00 \n\t\"\\\/""#, #""\ud800""#,
        #""2026-11-21T08:46:19.123Z""#, #""2026-02-30T00:00:00Z""#, #""aGVsbG8=""#, #""not base64!""#,
        #"{"token":"t","fence":7}"#, #"{"token":"t","fence":1e30}"#, #"{"token":5,"fence":7}"#, #"{"fence":7}"#,
        #"[{"role":"user","content":"hi"},{"role":"assistant","content":"yo","inputTokens":3}]"#,
        #"[{"role":"user","content":"hi"},{"role":"robot","content":"x"}]"#,
        #"[{"role":"user","content":"hi","inputTokens":1e19}]"#, #"[{"role":"user"}]"#, "[null]",
        #""non_resumable""#, #""paused""#,
    ]

    /// Every variant of `base`: each member removed or replaced, a duplicate first and last, an unknown
    /// member, and a member whose name is escaped.
    static func variants(of base: Params) -> [String] {
        var variants = [base.json, "{}", "{\"unknown\":[1,{\"x\":null}]}"]
        for (index, (name, _)) in base.members.enumerated() {
            var without = base
            without.members.remove(at: index)
            variants.append(without.json)
            for replacement in replacements {
                var changed = base
                changed.members[index].1 = replacement
                variants.append(changed.json)
            }
            variants.append(Params(members: [(name, "\"first\"")] + base.members).json)
            variants.append(Params(members: base.members + [(name, "\"last\"")]).json)
            var escaped = base
            escaped.members[index].0 = name.unicodeScalars.first.map { String(format: "\\u%04x", $0.value) + name.dropFirst() } ?? name
            variants.append(escaped.json)
        }
        return variants
    }

    /// What a decoder made of one input: the value re-encoded with sorted keys, or the error's case, path
    /// and type.
    static func outcome<T: Codable>(_ type: T.Type, _ json: String, _ decode: (String) throws -> T) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        do {
            let value = try decode(json)
            return "value " + String(decoding: try WireJSON.makeEncoder().encode(value), as: UTF8.self)
        } catch DecodingError.keyNotFound(let key, let context) {
            return "keyNotFound \(path(context)) \(key.stringValue)"
        } catch DecodingError.typeMismatch(let type, let context) {
            return "typeMismatch \(path(context)) \(type)"
        } catch DecodingError.valueNotFound(let type, let context) {
            return "valueNotFound \(path(context)) \(type)"
        } catch DecodingError.dataCorrupted(let context) {
            return "dataCorrupted \(path(context))"
        } catch {
            return "other \(error)"
        }
    }

    func agree<T: Codable>(_ type: T.Type, base: Params) -> Int {
        let foundation = WireJSON.makeDecoder()
        var compared = 0
        for json in Self.variants(of: base) {
            let expected = Self.outcome(type, json) { try foundation.decode(T.self, from: Data($0.utf8)) }
            let actual = Self.outcome(type, json) { text in
                try Array(text.utf8).withUnsafeBytes { try ParamsDecoder.decode(T.self, from: $0) }
            }
            // JSONDecoder does not say which number does not fit its field, nor which string holds a lone
            // surrogate (an empty path); ParamsDecoder names it.
            let unnamed = expected == "dataCorrupted " && actual.hasPrefix("dataCorrupted ")
            #expect(actual == expected || unnamed, "\(T.self) from \(json)")
            compared += 1
        }
        return compared
    }

    @Test func agreesWithJSONDecoderOnTheParamsOfRealMethods() {
        let lease = #"{"token":"t","fence":7}"#
        var compared = 0
        compared += agree(SessionAcquire.Params.self, base: Params(members: [
            ("key", "\"k\""), ("tool", "\"claude\""), ("cwd", "\"/w\""), ("holder", "\"h\""), ("ttlSeconds", "60"),
            ("leaseSeconds", "30"), ("waitMs", "0"), ("metadata", #"{"a":1.5,"b":[true,null,"x"],"c":{"d":-3}}"#),
            ("labels", #"["x","y"]"#),
        ]))
        compared += agree(SessionComplete.Params.self, base: Params(members: [
            ("sessionId", "\"s\""), ("lease", lease), ("outcome", "\"success\""), ("cliSessionId", "\"c\""),
            ("reason", "\"r\""), ("costUsd", "0.25"), ("cliTotalCostUsd", "1"), ("inputTokens", "10"),
            ("outputTokens", "20"),
            ("messages", #"[{"role":"user","content":"hi"},{"role":"assistant","content":"yo","outputTokens":2}]"#),
            ("keepLease", "false"),
        ]))
        compared += agree(AuditList.Params.self, base: Params(members: [
            ("sessionId", "\"s\""), ("since", #""2026-11-21T08:46:19.123Z""#), ("until", #""2026-11-21T09:00:00Z""#),
            ("limit", "10"), ("cursor", "\"c\""),
        ]))
        compared += agree(TranscriptAppend.Params.self, base: Params(members: [
            ("sessionId", "\"s\""), ("lease", lease), ("cliSessionId", "\"c\""), ("offset", "0"), ("data", #""aGVsbG8=""#),
        ]))
        compared += agree(SessionList.Params.self, base: Params(members: [
            ("status", "\"active\""), ("tool", "\"claude\""), ("keyPrefix", "\"k\""), ("limit", "5"),
        ]))
        compared += agree(MessagesAppend.Params.self, base: Params(members: [
            ("sessionId", "\"s\""), ("lease", lease), ("messages", #"[{"role":"user","content":"hi"}]"#),
        ]))
        #expect(compared > 1_500)
    }

    @Test func stringsAreUnescapedAsJSONDecoderDoes() throws {
        let texts = [#""plain""#, #""\"\\\/\b\f\n\r\t""#, #""\u0000\u001f\u00e9\u2028""#, #""\ud83d\ude00 and \uD83D\uDE00""#,
                     "\"raw é 漢字 🙂\""]
        for text in texts {
            let expected = try JSONDecoder().decode([String].self, from: Data("[\(text)]".utf8))
            let actual = try Array("[\(text)]".utf8).withUnsafeBytes { try ParamsDecoder.decode([String].self, from: $0) }
            #expect(actual == expected, "\(text)")
        }
        #expect(throws: DecodingError.self) {
            try Array(#"["\ud800 alone"]"#.utf8).withUnsafeBytes { try ParamsDecoder.decode([String].self, from: $0) }
        }
    }

    @Test func refusesWhatIsNotJSON() {
        for text in ["", "{", #"{"a":1,}"#, "[1 2]", "{\"a\":\"\u{1}\"}"] {
            #expect(throws: DecodingError.self, "\(text)") {
                try Array(text.utf8).withUnsafeBytes { try ParamsDecoder.decode([String: Int].self, from: $0) }
            }
        }
    }
}
