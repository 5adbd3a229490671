import Foundation
import NIOCore
import NIOFoundationCompat

/// One incoming JSON-RPC request: the whole frame checked against RFC 8259 in a single pass, which also
/// reads the envelope members (`jsonrpc`, `method`, `id`) and finds the bytes of `params`.
///
/// The strict pass decides what is JSON; the params are then decoded from their own bytes by
/// `ParamsDecoder`. For a member given twice, the first occurrence counts, as with the params.
public struct RPCRequestEnvelope: Sendable {
    public var jsonrpc: String?
    public var method: String?
    /// The request id; `nil` for a notification or an explicit `null`.
    public var id: RPCID?
    /// Whether the message had an `id` member at all (absent means notification).
    public var hasID: Bool
    /// Whether `id` is present but neither an integer that fits 64 bits, a string nor `null`.
    public var hasInvalidID: Bool
    /// The bytes of the `params` value; `nil` when it is absent or `null`.
    public var params: ByteBuffer?
    /// Where each value of the params lies, recorded by the strict pass.
    var paramsTape: [StrictJSONScanner.Node] = []

    /// Why a frame is not a request.
    public enum Refusal: Error, Equatable {
        /// Not JSON; the message says what is wrong and where.
        case notJSON(String)
        /// JSON, but not an object: `isArray` for a batch.
        case notAnObject(isArray: Bool)

        public var sessionError: SessionError {
            switch self {
            case .notJSON(let message): SessionError(.parseError, "not valid JSON: \(message)")
            case .notAnObject(let isArray):
                SessionError(
                    .invalidRequest,
                    isArray ? "batches are not supported; send one request per frame" : "a request must be a JSON object")
            }
        }
    }

    /// Reads a frame's JSON, refusing anything RFC 8259 does not allow (including invalid UTF-8).
    public init(parsing frame: ByteBuffer) throws(Refusal) {
        let scanned = frame.withUnsafeReadableBytes { bytes -> Result<StrictJSONScanner.Envelope, Refusal> in
            var scanner = StrictJSONScanner(bytes)
            do throws(StrictJSONScanner.SyntaxError) {
                return .success(try scanner.document())
            } catch {
                return .failure(.notJSON(error.description))
            }
        }
        let envelope = try scanned.get()
        guard let members = envelope.members else { throw .notAnObject(isArray: envelope.isArray) }
        func text(_ token: StrictJSONScanner.Token?) -> String? {
            guard let token, token.kind == .string else { return nil }
            return frame.jsonString(token)
        }
        jsonrpc = text(members.jsonrpc)
        method = text(members.method)
        hasID = members.id != nil
        switch members.id?.kind {
        case .string: id = text(members.id).map(RPCID.string)
        case .integer: id = frame.getString(at: frame.readerIndex + members.id!.range.lowerBound,
                                           length: members.id!.range.count).flatMap(Int64.init).map(RPCID.number)
        default: id = nil
        }
        hasInvalidID = hasID && id == nil && members.id?.kind != StrictJSONScanner.Kind.null
        if let token = members.params, token.kind != .null {
            params = frame.getSlice(at: frame.readerIndex + token.range.lowerBound, length: token.range.count)
            paramsTape = members.paramsTape
        }
    }

    /// Decodes the params (`{}` when absent), or throws `invalid_params` with a message that names the field.
    public func decodeParams<Params: Decodable>(_ type: Params.Type) throws -> Params {
        do {
            guard let params else {
                let empty = UnsafeRawBufferPointer(start: Self.emptyObject.utf8Start, count: Self.emptyObject.utf8CodeUnitCount)
                return try ParamsDecoder.decode(type, from: empty)
            }
            return try params.withUnsafeReadableBytes { try ParamsDecoder.decode(type, from: $0, tape: paramsTape) }
        } catch let error as DecodingError {
            throw SessionError.invalidParams(Self.describe(error))
        } catch {
            throw SessionError.invalidParams("params are not valid")
        }
    }

    private static let emptyObject: StaticString = "{}"

    /// A decoding error as a message that names the field.
    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let names = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return names.isEmpty ? "params" : names.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
        }
        switch error {
        case .keyNotFound(let key, let context):
            let parent = path(context)
            return "\(parent == "params" ? "" : parent + ".")\(key.stringValue) is required"
        case .typeMismatch(let type, let context):
            return "\(path(context)) has the wrong type (expected \(Self.typeName(type)))"
        case .valueNotFound(let type, let context):
            return "\(path(context)) must not be null (expected \(Self.typeName(type)))"
        case .dataCorrupted(let context):
            if let number = context.underlyingError as? ParamsDecoder.NumberDoesNotFit {
                return "\(path(context)) (\(number.literal.prefix(40))) does not fit its field: "
                    + "integers must be whole and within 64 bits, and numbers within ±1.8e308"
            }
            let detail = context.underlyingError.map { "\($0)" } ?? context.debugDescription
            return "\(path(context)): \(detail.prefix(300))"
        @unknown default:
            return "params are not valid"
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "string"
        case is Int.Type, is Int64.Type, is Int32.Type: "integer"
        case is Double.Type: "number"
        case is Bool.Type: "boolean"
        default:
            "\(type)".contains("Dictionary") ? "object" : "\(type)".contains("Array") ? "array" : "\(type)"
        }
    }
}

extension ByteBuffer {
    /// The string a scanned JSON string token stands for, unescaped. `nil` for an escaped lone surrogate.
    fileprivate func jsonString(_ token: StrictJSONScanner.Token) -> String? {
        withUnsafeReadableBytes { bytes in
            JSONText.string(UnsafeRawBufferPointer(rebasing: bytes[token.range]), hasEscapes: token.hasEscapes)
        }
    }
}

/// A strict RFC 8259 reader over a UTF-8 buffer. It checks the syntax (and the UTF-8 of strings), notes
/// where the top-level members `jsonrpc`, `method`, `id` and `params` lie, and records where every value
/// of the params lies (the tape that `ParamsDecoder` reads), or of the whole document when asked.
struct StrictJSONScanner {
    struct SyntaxError: Error, CustomStringConvertible {
        var message: String
        var offset: Int
        var description: String { "\(message) at byte \(offset)" }
    }

    enum Kind: Equatable { case object, array, string, integer, number, bool, null }

    /// A scanned value: its kind and its bytes (a string's quotes included).
    struct Token {
        var kind: Kind
        var range: Range<Int>
        var hasEscapes = false
    }

    struct Members {
        var jsonrpc: Token?
        var method: Token?
        var id: Token?
        var params: Token?
        /// The values of `params`, with ranges from the start of its value.
        var paramsTape: [Node] = []
    }

    /// One value on the tape, which lists a document's values in order. An object's members follow it as
    /// pairs of nodes, the name's (a string) and then the value's; an array's elements follow it.
    ///
    /// 20 bytes a value, in 32-bit fields: a frame's length header caps it at 4 GiB, and a frame of tiny
    /// values (`[0,0,0,…]`) records one node per two bytes.
    struct Node {
        var kind: Kind
        var hasEscapes: Bool
        private var lower: UInt32
        private var upper: UInt32
        private var members: UInt32
        private var next: UInt32

        init(kind: Kind, range: Range<Int>, hasEscapes: Bool, count: Int, end: Int) {
            self.kind = kind
            self.hasEscapes = hasEscapes
            lower = UInt32(truncatingIfNeeded: range.lowerBound)
            upper = UInt32(truncatingIfNeeded: range.upperBound)
            members = UInt32(truncatingIfNeeded: count)
            next = UInt32(truncatingIfNeeded: end)
        }

        /// Its bytes, a string's quotes included.
        var range: Range<Int> { Int(lower)..<Int(upper) }
        /// An object's members or an array's elements.
        var count: Int { Int(members) }
        /// The tape index just past this value and everything inside it.
        var end: Int { Int(next) }
    }

    /// What the document is: the top-level members when it is an object.
    struct Envelope {
        var members: Members?
        var isArray: Bool
    }

    static let maxDepth = 512

    private let bytes: UnsafeRawBufferPointer
    private var index = 0
    private var depth = 0
    private var members = Members()
    /// Every value read so far, when recording.
    private(set) var tape: [Node]?
    /// Where the value being recorded starts: tape ranges count from here.
    private var tapeOrigin = 0

    /// `recordingTape`: record the whole document, not only the params.
    init(_ bytes: UnsafeRawBufferPointer, recordingTape: Bool = false) {
        self.bytes = bytes
        tape = recordingTape ? [] : nil
    }

    /// Reads the whole buffer as one JSON value.
    mutating func document() throws(SyntaxError) -> Envelope {
        skipWhitespace()
        let kind = try value().kind
        skipWhitespace()
        guard index == bytes.count else { throw fail("unexpected \(describeByte()) after the value") }
        return Envelope(members: kind == .object ? members : nil, isArray: kind == .array)
    }

    private mutating func value() throws(SyntaxError) -> Token {
        guard index < bytes.count else { throw fail("unexpected end of input") }
        let start = index
        let slot = tape?.count
        if slot != nil { tape!.append(Node(kind: .null, range: 0..<0, hasEscapes: false, count: 0, end: 0)) }
        var count = 0
        let token: Token
        switch bytes[index] {
        case UInt8(ascii: "{"):
            count = try object()
            token = Token(kind: .object, range: start..<index)
        case UInt8(ascii: "["):
            count = try array()
            token = Token(kind: .array, range: start..<index)
        case UInt8(ascii: "\""):
            let hasEscapes = try string()
            token = Token(kind: .string, range: start..<index, hasEscapes: hasEscapes)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            token = Token(kind: try number(), range: start..<index)
        case UInt8(ascii: "t"):
            try literal("true")
            token = Token(kind: .bool, range: start..<index)
        case UInt8(ascii: "f"):
            try literal("false")
            token = Token(kind: .bool, range: start..<index)
        case UInt8(ascii: "n"):
            try literal("null")
            token = Token(kind: .null, range: start..<index)
        default:
            throw fail("unexpected \(describeByte()) where a value should start")
        }
        if let slot {
            tape![slot] = Node(
                kind: token.kind, range: start - tapeOrigin..<index - tapeOrigin, hasEscapes: token.hasEscapes, count: count,
                end: tape!.count)
        }
        return token
    }

    /// Reads an object from its opening brace; returns its number of members.
    private mutating func object() throws(SyntaxError) -> Int {
        let topLevel = depth == 0
        if try open(closing: UInt8(ascii: "}")) { return 0 }
        var count = 0
        repeat {
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                throw fail("expected a member name in quotes, found \(describeByte())")
            }
            let keyStart = index
            let keyHasEscapes = try string()
            let key = keyStart + 1..<index - 1
            if let next = tape.map({ $0.count + 1 }) {
                tape!.append(Node(kind: .string, range: keyStart - tapeOrigin..<index - tapeOrigin, hasEscapes: keyHasEscapes,
                                  count: 0, end: next))
            }
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else {
                throw fail("expected ':' after a member name, found \(describeByte())")
            }
            index += 1
            skipWhitespace()
            let recordsParams = topLevel && tape == nil && !keyHasEscapes && members.params == nil && member(key, is: "params")
            if recordsParams {
                tape = []
                tapeOrigin = index
            }
            let token = try value()
            if recordsParams {
                members.paramsTape = tape!
                tape = nil
                tapeOrigin = 0
            }
            if topLevel, !keyHasEscapes { note(key: key, token) }
            count += 1
        } while try !closes(UInt8(ascii: "}"), in: "an object")
        return count
    }

    /// Keeps the first occurrence of each envelope member.
    private mutating func note(key: Range<Int>, _ token: Token) {
        if member(key, is: "method") {
            if members.method == nil { members.method = token }
        } else if member(key, is: "id") {
            if members.id == nil { members.id = token }
        } else if member(key, is: "params") {
            if members.params == nil { members.params = token }
        } else if member(key, is: "jsonrpc") {
            if members.jsonrpc == nil { members.jsonrpc = token }
        }
    }

    /// Whether the member name at `key` is `name`.
    private func member(_ key: Range<Int>, is name: StaticString) -> Bool {
        key.count == name.utf8CodeUnitCount && memcmp(bytes.baseAddress! + key.lowerBound, name.utf8Start, key.count) == 0
    }

    /// Reads an array from its opening bracket; returns its number of elements.
    private mutating func array() throws(SyntaxError) -> Int {
        if try open(closing: UInt8(ascii: "]")) { return 0 }
        var count = 0
        repeat {
            _ = try value()
            count += 1
        } while try !closes(UInt8(ascii: "]"), in: "an array")
        return count
    }

    /// Steps into an object or array at its opening byte; true when `close` follows at once (empty).
    private mutating func open(closing close: UInt8) throws(SyntaxError) -> Bool {
        depth += 1
        guard depth <= Self.maxDepth else { throw fail("nesting deeper than \(Self.maxDepth) levels") }
        index += 1
        skipWhitespace()
        guard index < bytes.count, bytes[index] == close else { return false }
        index += 1
        depth -= 1
        return true
    }

    /// After a member or an element: true when `close` ends the container, false after a comma that
    /// another member or element must follow.
    private mutating func closes(_ close: UInt8, in container: StaticString) throws(SyntaxError) -> Bool {
        skipWhitespace()
        guard index < bytes.count else { throw fail("unexpected end of input in \(container)") }
        switch bytes[index] {
        case UInt8(ascii: ","):
            index += 1
            skipWhitespace()
            if index < bytes.count, bytes[index] == close { throw fail("a trailing comma") }
            return false
        case close:
            index += 1
            depth -= 1
            return true
        default:
            throw fail("expected ',' or '\(Character(Unicode.Scalar(close)))' in \(container), found \(describeByte())")
        }
    }

    /// Reads a string from its opening quote; returns whether it has escapes.
    private mutating func string() throws(SyntaxError) -> Bool {
        index += 1
        var hasEscapes = false
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return hasEscapes
            } else if byte == UInt8(ascii: "\\") {
                hasEscapes = true
                try escape()
            } else if byte < 0x20 {
                throw fail("a control character (0x\(String(byte, radix: 16))) inside a string must be escaped")
            } else if byte < 0x80 {
                index += 1
            } else {
                try utf8Sequence()
            }
        }
        throw fail("unexpected end of input in a string")
    }

    private mutating func escape() throws(SyntaxError) {
        guard index + 1 < bytes.count else { throw fail("unexpected end of input in an escape") }
        switch bytes[index + 1] {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
            UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            index += 2
        case UInt8(ascii: "u"):
            guard index + 5 < bytes.count, (index + 2...index + 5).allSatisfy({ bytes[$0].isHexDigit }) else {
                throw fail("\\u must be followed by four hex digits")
            }
            index += 6
        default:
            index += 1
            throw fail("invalid escape '\\\(describeByte(quoted: false))'")
        }
    }

    /// Checks one multi-byte UTF-8 sequence (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF).
    private mutating func utf8Sequence() throws(SyntaxError) {
        func continuation(_ offset: Int, _ range: ClosedRange<UInt8> = 0x80...0xBF) -> Bool {
            index + offset < bytes.count && range.contains(bytes[index + offset])
        }
        let length: Int
        switch bytes[index] {
        case 0xC2...0xDF: length = continuation(1) ? 2 : 0
        case 0xE0: length = continuation(1, 0xA0...0xBF) && continuation(2) ? 3 : 0
        case 0xE1...0xEC, 0xEE...0xEF: length = continuation(1) && continuation(2) ? 3 : 0
        case 0xED: length = continuation(1, 0x80...0x9F) && continuation(2) ? 3 : 0
        case 0xF0: length = continuation(1, 0x90...0xBF) && continuation(2) && continuation(3) ? 4 : 0
        case 0xF1...0xF3: length = continuation(1) && continuation(2) && continuation(3) ? 4 : 0
        case 0xF4: length = continuation(1, 0x80...0x8F) && continuation(2) && continuation(3) ? 4 : 0
        default: length = 0
        }
        guard length > 0 else { throw fail("invalid UTF-8") }
        index += length
    }

    /// Reads `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`; `.integer` when it has no fraction or exponent.
    private mutating func number() throws(SyntaxError) -> Kind {
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count, bytes[index].isDigit else { throw fail("a number needs a digit after '-'") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if index < bytes.count, bytes[index].isDigit { throw fail("a number must not have a leading zero") }
        } else {
            skipDigits()
        }
        var kind = Kind.integer
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard index < bytes.count, bytes[index].isDigit else { throw fail("a number needs a digit after '.'") }
            skipDigits()
            kind = .number
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, bytes[index].isDigit else { throw fail("a number needs a digit in its exponent") }
            skipDigits()
            kind = .number
        }
        return kind
    }

    private mutating func skipDigits() {
        while index < bytes.count, bytes[index].isDigit { index += 1 }
    }

    private mutating func literal(_ word: StaticString) throws(SyntaxError) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count, memcmp(bytes.baseAddress! + index, word.utf8Start, count) == 0 else {
            throw fail("unexpected \(describeByte()) where a value should start")
        }
        index += count
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x0A, 0x0D, 0x09: index += 1
            default: return
            }
        }
    }

    private func fail(_ message: String) -> SyntaxError {
        SyntaxError(message: message, offset: index)
    }

    private func describeByte(quoted: Bool = true) -> String {
        guard index < bytes.count else { return "end of input" }
        let byte = bytes[index]
        let shown = (0x21..<0x7F).contains(byte) ? String(UnicodeScalar(byte)) : "0x" + String(byte, radix: 16)
        return quoted ? "'\(shown)'" : shown
    }
}

extension UInt8 {
    fileprivate var isDigit: Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) }
    fileprivate var isHexDigit: Bool {
        isDigit || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(self) || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(self)
    }
}
