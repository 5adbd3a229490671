import Foundation

/// Decodes request params through `Decodable`, straight from their JSON bytes.
///
/// `StrictJSONScanner` checks the bytes and records where every value lies (its tape; for a request, the
/// envelope's pass records the params'). The containers then find members by comparing names byte by
/// byte and read each value from its own bytes. It throws
/// the `DecodingError`s that `JSONDecoder` throws, with the path of the value, and for a number that does
/// not fit its field a `dataCorrupted` error whose underlying error is `NumberDoesNotFit`. The first
/// occurrence of a member name counts, as in the envelope. As in `WireJSON.makeDecoder()`, a `Date` is
/// the wire's ISO-8601 text, `Data` is Base64 and a `URL` is its string.
///
/// It replaced `JSONDecoder` on the server, whose decoding was 15 % of the instructions of a turn
/// (Benchmarks/callgrind).
public enum ParamsDecoder {
    /// A number whose value its field cannot hold (not whole, past 64 bits, or past ±1.8e308).
    public struct NumberDoesNotFit: Error {
        public var literal: String
    }

    /// Decodes `type` from the JSON in `bytes`; throws `DecodingError` for any JSON that does not match it.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) throws -> T {
        guard bytes.count <= UInt32.max else {  // the tape's offsets are 32-bit, as a frame's length is
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "JSON past 4 GiB"))
        }
        var scanner = StrictJSONScanner(bytes, recordingTape: true)
        do {
            _ = try scanner.document()
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "not valid JSON: \(error)"))
        }
        return try decode(type, from: bytes, tape: scanner.tape ?? [])
    }

    /// Decodes `type` from checked JSON whose tape the scanner has already recorded.
    static func decode<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer, tape: [StrictJSONScanner.Node]) throws -> T {
        try Document(bytes: bytes, tape: tape).decode(type, at: 0, path: [])
    }
}

/// Reading JSON text that `StrictJSONScanner` has checked.
enum JSONText {
    /// The string that a quoted JSON string stands for, unescaped; `nil` for an escaped lone surrogate.
    static func string(_ quoted: UnsafeRawBufferPointer, hasEscapes: Bool) -> String? {
        let body = UnsafeRawBufferPointer(rebasing: quoted[1..<quoted.count - 1])
        guard hasEscapes else { return String(decoding: body, as: UTF8.self) }
        var utf8: [UInt8] = []
        utf8.reserveCapacity(body.count)
        var index = 0
        func hex(at offset: Int) -> UInt32 {
            (offset..<offset + 4).reduce(0) { value, position in
                let digit = body[position]
                let nibble = digit <= UInt8(ascii: "9") ? digit - UInt8(ascii: "0") : (digit | 0x20) - UInt8(ascii: "a") + 10
                return value << 4 | UInt32(nibble)
            }
        }
        while index < body.count {
            let byte = body[index]
            guard byte == UInt8(ascii: "\\") else {
                utf8.append(byte)
                index += 1
                continue
            }
            let escaped = body[index + 1]
            index += 2
            switch escaped {
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            case UInt8(ascii: "u"):
                var code = hex(at: index)
                index += 4
                if (0xD800...0xDBFF).contains(code) {
                    guard index + 6 <= body.count, body[index] == UInt8(ascii: "\\"), body[index + 1] == UInt8(ascii: "u")
                    else { return nil }
                    let low = hex(at: index + 2)
                    guard (0xDC00...0xDFFF).contains(low) else { return nil }
                    code = 0x10000 + (code - 0xD800) << 10 + (low - 0xDC00)
                    index += 6
                }
                guard let scalar = Unicode.Scalar(code) else { return nil }
                utf8.append(contentsOf: UTF8.encode(scalar)!)
            default: utf8.append(escaped)  // \" \\ \/
            }
        }
        return String(decoding: utf8, as: UTF8.self)
    }
}

/// The checked bytes of one params value and its tape.
private final class Document {
    let bytes: UnsafeRawBufferPointer
    let tape: [StrictJSONScanner.Node]

    init(bytes: UnsafeRawBufferPointer, tape: [StrictJSONScanner.Node]) {
        self.bytes = bytes
        self.tape = tape
    }

    func text(_ node: StrictJSONScanner.Node) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[node.range])
    }

    /// The tape index of the value of the member `name` of the object at `object`, first occurrence first.
    func member(_ name: String, of object: Int) -> Int? {
        var name = name
        return name.withUTF8 { wanted in
            var position = object + 1
            for _ in 0..<tape[object].count {
                let key = tape[position]
                if key.hasEscapes {
                    if JSONText.string(text(key), hasEscapes: true).map({ $0.utf8.elementsEqual(wanted) }) == true {
                        return position + 1
                    }
                } else if key.range.count - 2 == wanted.count,
                    wanted.isEmpty || memcmp(bytes.baseAddress! + key.range.lowerBound + 1, wanted.baseAddress!, wanted.count) == 0
                {
                    return position + 1
                }
                position = tape[position + 1].end
            }
            return nil
        }
    }

    /// The names of the members of the object at `object`, in order.
    func names(of object: Int) -> [String] {
        var names: [String] = []
        var position = object + 1
        for _ in 0..<tape[object].count {
            if let name = JSONText.string(text(tape[position]), hasEscapes: tape[position].hasEscapes) { names.append(name) }
            position = tape[position + 1].end
        }
        return names
    }

    func isNull(_ node: Int) -> Bool { tape[node].kind == .null }

    // MARK: Values

    func decode<T: Decodable>(_ type: T.Type, at node: Int, path: @autoclosure () -> [any CodingKey]) throws -> T {
        // The types JSONDecoder reads from strings: dates as the wire's ISO-8601, data as Base64.
        func fromString<Value>(_ parse: (String) -> Value?, _ expected: String) throws -> T {
            let text = try string(at: node, path: path())
            guard let value = parse(text) else {
                throw DecodingError.dataCorrupted(
                    .init(codingPath: path(), debugDescription: "expected \(expected), got \(text.prefix(40))"))
            }
            return value as! T
        }
        if T.self == Date.self { return try fromString(WireJSON.parseDate, "an ISO-8601 date") }
        if T.self == Data.self {
            if isNull(node) {  // JSONDecoder names Data here, and String for a mismatch or a date
                throw DecodingError.valueNotFound(
                    T.self, .init(codingPath: path(), debugDescription: "Cannot get value of type Data -- found null value instead"))
            }
            return try fromString({ Data(base64Encoded: $0) }, "Base64 data")
        }
        if T.self == URL.self { return try fromString(URL.init(string:), "a URL") }
        return try T(from: TapeDecoder(document: self, node: node, codingPath: path()))
    }

    func bool(at node: Int, path: @autoclosure () -> [any CodingKey]) throws -> Bool {
        try expect(.bool, Bool.self, at: node, path: path())
        return bytes[tape[node].range.lowerBound] == UInt8(ascii: "t")
    }

    func string(at node: Int, path: @autoclosure () -> [any CodingKey]) throws -> String {
        try expect(.string, String.self, at: node, path: path())
        guard let string = JSONText.string(text(tape[node]), hasEscapes: tape[node].hasEscapes) else {
            throw DecodingError.dataCorrupted(.init(codingPath: path(), debugDescription: "an escaped lone surrogate"))
        }
        return string
    }

    func integer<T: FixedWidthInteger>(_ type: T.Type, at node: Int, path: @autoclosure () -> [any CodingKey]) throws -> T {
        try expect(.integer, T.self, at: node, path: path())
        let literal = text(tape[node])
        let value = tape[node].kind == .integer
            ? Self.integer(literal, as: T.self)
            : Double(String(decoding: literal, as: UTF8.self)).flatMap(T.init(exactly:))
        guard let value else { throw doesNotFit(literal, path()) }
        return value
    }

    func double(at node: Int, path: @autoclosure () -> [any CodingKey]) throws -> Double {
        try expect(.number, Double.self, at: node, path: path())
        let literal = text(tape[node])
        guard let value = Double(String(decoding: literal, as: UTF8.self)), value.isFinite else {
            throw doesNotFit(literal, path())
        }
        return value
    }

    func float(at node: Int, path: @autoclosure () -> [any CodingKey]) throws -> Float {
        let value = try double(at: node, path: path())
        guard abs(value) <= Double(Float.greatestFiniteMagnitude) else { throw doesNotFit(text(tape[node]), path()) }
        return Float(value)
    }

    /// Throws unless the value at `node` is of `kind` (an integer counts as a number): `valueNotFound` for
    /// `null`, `typeMismatch` otherwise.
    func expect(_ kind: StrictJSONScanner.Kind, _ type: Any.Type, at node: Int, path: @autoclosure () -> [any CodingKey]) throws {
        let found = tape[node].kind
        if found == kind || (kind == .number && found == .integer) || (kind == .integer && found == .number) { return }
        if found == .null {
            throw DecodingError.valueNotFound(
                type, .init(codingPath: path(), debugDescription: "Cannot get value of type \(type) -- found null value instead"))
        }
        throw DecodingError.typeMismatch(
            type, .init(codingPath: path(), debugDescription: "Expected to decode \(type) but found \(Self.describe(found)) instead."))
    }

    private func doesNotFit(_ literal: UnsafeRawBufferPointer, _ path: [any CodingKey]) -> DecodingError {
        let text = String(decoding: literal, as: UTF8.self)
        return .dataCorrupted(.init(codingPath: path, debugDescription: "\(text) does not fit its field",
                                    underlyingError: ParamsDecoder.NumberDoesNotFit(literal: text)))
    }

    /// A JSON integer literal's value as `T`, or `nil` when `T` cannot hold it.
    private static func integer<T: FixedWidthInteger>(_ literal: UnsafeRawBufferPointer, as: T.Type) -> T? {
        let negative = literal[0] == UInt8(ascii: "-")
        var magnitude: UInt64 = 0
        for digit in literal.dropFirst(negative ? 1 : 0) {
            let (tens, overflow) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, carry) = tens.addingReportingOverflow(UInt64(digit &- UInt8(ascii: "0")))
            guard !overflow, !carry else { return nil }
            magnitude = sum
        }
        guard negative else { return T(exactly: magnitude) }
        guard magnitude <= 1 << 63 else { return nil }
        return T(exactly: Int64(bitPattern: 0 &- magnitude))
    }

    private static func describe(_ kind: StrictJSONScanner.Kind) -> String {
        switch kind {
        case .object: "an object"
        case .array: "an array"
        case .string: "a string"
        case .integer, .number: "a number"
        case .bool: "a boolean"
        case .null: "null"
        }
    }
}

/// An array element's place in a coding path, as `JSONDecoder` names it.
private struct IndexKey: CodingKey {
    var intValue: Int?
    var stringValue: String { "Index \(intValue!)" }
    init(_ index: Int) { intValue = index }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { self.intValue = intValue }
}

private struct TapeDecoder: Decoder {
    let document: Document
    let node: Int
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        try document.expect(.object, [String: Any].self, at: node, path: codingPath)
        return KeyedDecodingContainer(KeyedContainer<Key>(document: document, object: node, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try document.expect(.array, [Any].self, at: node, path: codingPath)
        return UnkeyedContainer(document: document, codingPath: codingPath, count: document.tape[node].count, next: node + 1)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        SingleValueContainer(document: document, node: node, codingPath: codingPath)
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let document: Document
    let object: Int
    let codingPath: [any CodingKey]

    var allKeys: [Key] { document.names(of: object).compactMap(Key.init(stringValue:)) }

    func contains(_ key: Key) -> Bool { document.member(key.stringValue, of: object) != nil }

    /// The tape index of the member's value; `keyNotFound` when it is absent.
    private func value(_ key: Key) throws -> Int {
        guard let node = document.member(key.stringValue, of: object) else {
            throw DecodingError.keyNotFound(
                key, .init(codingPath: codingPath, debugDescription: "No value associated with key \(key) (\"\(key.stringValue)\")."))
        }
        return node
    }

    /// The tape index of the member's value; `nil` when it is absent or `null`.
    private func presentValue(_ key: Key) -> Int? {
        document.member(key.stringValue, of: object).flatMap { document.isNull($0) ? nil : $0 }
    }

    func decodeNil(forKey key: Key) throws -> Bool { document.isNull(try value(key)) }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try document.bool(at: value(key), path: codingPath + [key]) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try document.string(at: value(key), path: codingPath + [key]) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try document.double(at: value(key), path: codingPath + [key]) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try document.float(at: value(key), path: codingPath + [key]) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try integer(key) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try integer(key) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try integer(key) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try integer(key) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try integer(key) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try integer(key) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try integer(key) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try integer(key) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try integer(key) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try integer(key) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try document.decode(type, at: value(key), path: codingPath + [key])
    }

    private func integer<T: FixedWidthInteger>(_ key: Key) throws -> T {
        try document.integer(T.self, at: value(key), path: codingPath + [key])
    }

    // One lookup for an optional member, where the protocol's defaults make three.
    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? {
        guard let node = presentValue(key) else { return nil }
        return try document.string(at: node, path: codingPath + [key])
    }
    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? {
        guard let node = presentValue(key) else { return nil }
        return try document.bool(at: node, path: codingPath + [key])
    }
    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? {
        guard let node = presentValue(key) else { return nil }
        return try document.double(at: node, path: codingPath + [key])
    }
    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? {
        guard let node = presentValue(key) else { return nil }
        return try document.integer(Int.self, at: node, path: codingPath + [key])
    }
    func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? {
        guard let node = presentValue(key) else { return nil }
        return try document.integer(Int64.self, at: node, path: codingPath + [key])
    }
    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let node = presentValue(key) else { return nil }
        return try document.decode(type, at: node, path: codingPath + [key])
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try TapeDecoder(document: document, node: value(key), codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try TapeDecoder(document: document, node: value(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        TapeDecoder(document: document, node: object, codingPath: codingPath)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        TapeDecoder(document: document, node: try value(key), codingPath: codingPath + [key])
    }
}

private struct UnkeyedContainer: UnkeyedDecodingContainer {
    let document: Document
    let codingPath: [any CodingKey]
    let count: Int?
    private(set) var currentIndex = 0
    /// The tape index of the current element.
    private var next: Int

    init(document: Document, codingPath: [any CodingKey], count: Int, next: Int) {
        self.document = document
        self.codingPath = codingPath
        self.count = count
        self.next = next
    }

    var isAtEnd: Bool { currentIndex >= count! }

    /// The path of the element at `index`, built only when asked for (an error, or a nested decoder).
    private func path(_ index: Int) -> () -> [any CodingKey] {
        { [codingPath] in codingPath + [IndexKey(index)] }
    }

    /// The current element's tape index, moving past it; `valueNotFound` at the end.
    private mutating func element(_ type: Any.Type) throws -> Int {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(
                type, .init(codingPath: path(currentIndex)(), debugDescription: "Unkeyed container is at end."))
        }
        let node = next
        next = document.tape[node].end
        currentIndex += 1
        return node
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(
                Any?.self, .init(codingPath: path(currentIndex)(), debugDescription: "Unkeyed container is at end."))
        }
        guard document.isNull(next) else { return false }
        _ = try element(Any?.self)
        return true
    }

    /// Decodes the current element with `read`, moving past it only when it succeeds.
    private mutating func read<T>(_ type: T.Type, _ read: (Document, Int, () -> [any CodingKey]) throws -> T) throws -> T {
        let path = path(currentIndex)
        let node = try element(type)
        do {
            return try read(document, node, path)
        } catch {
            currentIndex -= 1
            next = node
            throw error
        }
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { try read(type) { try $0.bool(at: $1, path: $2()) } }
    mutating func decode(_ type: String.Type) throws -> String { try read(type) { try $0.string(at: $1, path: $2()) } }
    mutating func decode(_ type: Double.Type) throws -> Double { try read(type) { try $0.double(at: $1, path: $2()) } }
    mutating func decode(_ type: Float.Type) throws -> Float { try read(type) { try $0.float(at: $1, path: $2()) } }
    mutating func decode(_ type: Int.Type) throws -> Int { try integer() }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try integer() }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try integer() }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try integer() }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try integer() }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try integer() }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try integer() }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try integer() }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try integer() }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try integer() }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try read(type) { try $0.decode(type, at: $1, path: $2()) }
    }

    private mutating func integer<T: FixedWidthInteger>() throws -> T {
        try read(T.self) { try $0.integer(T.self, at: $1, path: $2()) }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try read(KeyedDecodingContainer<NestedKey>.self) {
            try TapeDecoder(document: $0, node: $1, codingPath: $2()).container(keyedBy: type)
        }
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try read((any UnkeyedDecodingContainer).self) {
            try TapeDecoder(document: $0, node: $1, codingPath: $2()).unkeyedContainer()
        }
    }

    mutating func superDecoder() throws -> any Decoder {
        try read((any Decoder).self) { TapeDecoder(document: $0, node: $1, codingPath: $2()) }
    }
}

private struct SingleValueContainer: SingleValueDecodingContainer {
    let document: Document
    let node: Int
    let codingPath: [any CodingKey]

    func decodeNil() -> Bool { document.isNull(node) }
    func decode(_ type: Bool.Type) throws -> Bool { try document.bool(at: node, path: codingPath) }
    func decode(_ type: String.Type) throws -> String { try document.string(at: node, path: codingPath) }
    func decode(_ type: Double.Type) throws -> Double { try document.double(at: node, path: codingPath) }
    func decode(_ type: Float.Type) throws -> Float { try document.float(at: node, path: codingPath) }
    func decode(_ type: Int.Type) throws -> Int { try document.integer(type, at: node, path: codingPath) }
    func decode(_ type: Int8.Type) throws -> Int8 { try document.integer(type, at: node, path: codingPath) }
    func decode(_ type: Int16.Type) throws -> Int16 { try document.integer(type, at: node, path: codingPath) }
    func decode(_ type: Int32.Type) throws -> Int32 { try document.integer(type, at: node, path: codingPath) }
    func decode(_ type: Int64.Type) throws -> Int64 { try document.integer(type, at: node, path: codingPath) }
    func decode(_ type: UInt.Type) throws -> UInt { try document.integer(type, at: node, path: codingPath) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try document.integer(type, at: node, path: codingPath) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try document.integer(type, at: node, path: codingPath) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try document.integer(type, at: node, path: codingPath) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try document.integer(type, at: node, path: codingPath) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try document.decode(type, at: node, path: codingPath) }
}
