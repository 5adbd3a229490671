import Foundation
import NIOCore

/// A result that writes its own JSON: the members and values `WireJSON.makeEncoder(sortedKeys: false)`
/// writes, in declaration order (the encoder's order follows hashing).
///
/// Foundation's `JSONEncoder` costs about 40 µs for one acquire result (a session, a lease and a decision),
/// which made it the largest part of the server's work outside SQLite on every turn. The results on a turn's
/// path write themselves instead; a test checks each against `JSONEncoder`, and every other result still
/// goes through it.
public protocol WireWritable {
    func write(to writer: inout WireWriter)
}

/// Writes JSON into memory of its own, then hands it over as one `ByteBuffer`: members in declaration
/// order, `nil` members left out, dates in the wire format, and strings escaped as `JSONEncoder` escapes
/// them (with `.withoutEscapingSlashes`).
///
/// A token (a quote, a comma, a key) costs a bounds check and a store. Into a `ByteBuffer`, each write
/// cost more than the token itself (a third of the pool's time on `session.list`); into an `[UInt8]`, an
/// append still cost about 90 instructions and a member name about 340 (callgrind, tenth session).
/// Noncopyable, so the memory has one owner and is freed once.
public struct WireWriter: ~Copyable {
    private var start: UnsafeMutablePointer<UInt8>
    private var count = 0
    private var capacity: Int
    /// Whether the object being written has a member already.
    private var hasMember = false

    private init(capacity: Int) {
        self.capacity = capacity
        start = .allocate(capacity: capacity)
    }

    deinit {
        start.deallocate()
    }

    /// A JSON-RPC success response with `result`.
    public static func success(id: RPCID?, result: some WireWritable, allocator: ByteBufferAllocator) -> ByteBuffer {
        var writer = WireWriter(capacity: 1024)
        writer.object { writer in
            writer.member("jsonrpc", "2.0")
            writer.key("id")
            switch id {
            case .number(let number)?: writer.integer(number)
            case .string(let string)?: writer.string(string)
            case nil: writer.raw("null")
            }
            writer.member("result", result)
        }
        var buffer = allocator.buffer(capacity: writer.count)
        buffer.writeBytes(UnsafeRawBufferPointer(start: writer.start, count: writer.count))
        return buffer
    }

    private mutating func append(_ byte: UInt8) {
        if count == capacity { grow(by: 1) }
        start[count] = byte
        count += 1
    }

    private mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let source = bytes.baseAddress else { return }
        if capacity - count < bytes.count { grow(by: bytes.count) }
        (start + count).update(from: source, count: bytes.count)
        count += bytes.count
    }

    /// Makes room for `needed` more bytes, at least doubling.
    private mutating func grow(by needed: Int) {
        let newCapacity = max(capacity * 2, count + needed)
        let larger = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        larger.update(from: start, count: count)
        start.deallocate()
        start = larger
        capacity = newCapacity
    }

    private mutating func raw(_ text: StaticString) {
        append(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    private mutating func raw(_ text: String) {
        var text = text
        text.withUTF8 { append($0) }
    }

    /// Decimal digits, without going through a `String`.
    private mutating func integer(_ value: Int64) {
        var magnitude = value.magnitude
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var first = 20
            repeat {
                first -= 1
                digits[first] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            if value < 0 { append(UInt8(ascii: "-")) }
            append(UnsafeBufferPointer(rebasing: digits[first...]))
        }
    }

    /// Writes an object whose members `body` writes.
    public mutating func object(_ body: (inout WireWriter) -> Void) {
        append(UInt8(ascii: "{"))
        let outer = hasMember
        hasMember = false
        body(&self)
        hasMember = outer
        append(UInt8(ascii: "}"))
    }

    public mutating func member(_ name: StaticString, _ value: String?) {
        guard let value else { return }
        key(name)
        string(value)
    }

    public mutating func member(_ name: StaticString, _ value: Int?) {
        guard let value else { return }
        key(name)
        integer(Int64(value))
    }

    public mutating func member(_ name: StaticString, _ value: Int64?) {
        guard let value else { return }
        key(name)
        integer(value)
    }

    public mutating func member(_ name: StaticString, _ value: Double?) {
        guard let value else { return }
        key(name)
        number(value)
    }

    public mutating func member(_ name: StaticString, _ value: Bool?) {
        guard let value else { return }
        key(name)
        raw(value ? "true" : "false")
    }

    public mutating func member(_ name: StaticString, _ value: Date?) {
        guard let value else { return }
        key(name)
        string(WireJSON.formatDate(value))
    }

    public mutating func member<Value: RawRepresentable<String>>(_ name: StaticString, _ value: Value?) {
        member(name, value?.rawValue)
    }

    public mutating func member(_ name: StaticString, _ value: (some WireWritable)?) {
        guard let value else { return }
        key(name)
        value.write(to: &self)
    }

    public mutating func member(_ name: StaticString, _ values: [some WireWritable]) {
        key(name)
        array(values) { writer, value in value.write(to: &writer) }
    }

    public mutating func member(_ name: StaticString, _ values: [String]) {
        key(name)
        array(values) { writer, value in writer.string(value) }
    }

    public mutating func member(_ name: StaticString, _ object: [String: JSONValue]) {
        key(name)
        value(.object(object))
    }

    mutating func key(_ name: StaticString) {
        if hasMember { append(UInt8(ascii: ",")) }
        hasMember = true
        append(UInt8(ascii: "\""))
        raw(name)
        append(UInt8(ascii: "\""))
        append(UInt8(ascii: ":"))
    }

    private mutating func array<Element>(_ values: [Element], _ write: (inout WireWriter, Element) -> Void) {
        append(UInt8(ascii: "["))
        for (index, element) in values.enumerated() {
            if index > 0 { append(UInt8(ascii: ",")) }
            write(&self, element)
        }
        append(UInt8(ascii: "]"))
    }

    /// `value` as JSON text: how metadata, labels and audit details are stored in the database.
    public static func text(_ value: JSONValue) -> String {
        var writer = WireWriter(capacity: 64)
        writer.value(value)
        return String(decoding: UnsafeBufferPointer(start: writer.start, count: writer.count), as: UTF8.self)
    }

    /// A JSON value; object members in key order, so equal values write equal text.
    private mutating func value(_ value: JSONValue) {
        switch value {
        case .null: raw("null")
        case .bool(let flag): raw(flag ? "true" : "false")
        case .number(let number): self.number(number)
        case .string(let text): string(text)
        case .array(let values): array(values) { writer, element in writer.value(element) }
        case .object(let members):
            object { writer in
                for name in members.keys.sorted() {
                    if writer.hasMember { writer.append(UInt8(ascii: ",")) }
                    writer.hasMember = true
                    writer.string(name)
                    writer.append(UInt8(ascii: ":"))
                    writer.value(members[name]!)
                }
            }
        }
    }

    /// A number as `JSONEncoder` writes it: integral values without a fraction. JSON has no infinity or NaN
    /// (the store refuses them on input); should one get here anyway, it is written as `null`, not as
    /// invalid JSON.
    private mutating func number(_ value: Double) {
        guard value.isFinite else {
            raw("null")
            return
        }
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        raw(text)
    }

    /// A string with `"`, `\` and control characters escaped; runs without them are copied whole.
    mutating func string(_ text: String) {
        append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { utf8 in
            var run = 0
            for index in utf8.indices {
                let byte = utf8[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                append(UnsafeBufferPointer(rebasing: utf8[run..<index]))
                run = index + 1
                switch byte {
                case UInt8(ascii: "\""): raw("\\\"")
                case UInt8(ascii: "\\"): raw("\\\\")
                case 0x0A: raw("\\n")
                case 0x0D: raw("\\r")
                case 0x09: raw("\\t")
                case 0x08: raw("\\b")
                case 0x0C: raw("\\f")
                default:
                    let digits: StaticString = "0123456789abcdef"
                    raw("\\u00")
                    append(digits.utf8Start[Int(byte >> 4)])
                    append(digits.utf8Start[Int(byte & 0x0F)])
                }
            }
            append(UnsafeBufferPointer(rebasing: utf8[run...]))
        }
        append(UInt8(ascii: "\""))
    }
}

extension SessionInfo: WireWritable {
    public func write(to writer: inout WireWriter) {
        writer.object { writer in
            writer.member("id", id)
            writer.member("tenant", tenant)
            writer.member("key", key)
            writer.member("tool", tool)
            writer.member("cwd", cwd)
            writer.member("cliSessionId", cliSessionId)
            writer.member("status", status)
            writer.member("createdAt", createdAt)
            writer.member("lastUsedAt", lastUsedAt)
            writer.member("expiresAt", expiresAt)
            writer.member("ttlSeconds", ttlSeconds)
            writer.member("turnCount", turnCount)
            writer.member("resumeAttempts", resumeAttempts)
            writer.member("resumeSuccesses", resumeSuccesses)
            writer.member("consecutiveFailures", consecutiveFailures)
            writer.member("totalFailures", totalFailures)
            writer.member("lastFailureReason", lastFailureReason)
            writer.member("costUsd", costUsd)
            writer.member("inputTokens", inputTokens)
            writer.member("outputTokens", outputTokens)
            writer.member("messageCount", messageCount)
            writer.member("transcriptBytes", transcriptBytes)
            writer.member("metadata", metadata)
            writer.member("labels", labels)
            writer.member("parentId", parentId)
            writer.member("lease", lease)
        }
    }
}

extension LeaseState: WireWritable {
    public func write(to writer: inout WireWriter) {
        writer.object { writer in
            writer.member("holder", holder)
            writer.member("fence", fence)
            writer.member("expiresAt", expiresAt)
        }
    }
}

extension Lease: WireWritable {
    public func write(to writer: inout WireWriter) {
        writer.object { writer in
            writer.member("token", token)
            writer.member("fence", fence)
            writer.member("holder", holder)
            writer.member("expiresAt", expiresAt)
        }
    }
}

extension ResumeDecision: WireWritable {
    public func write(to writer: inout WireWriter) {
        writer.object { writer in
            writer.member("action", action)
            writer.member("cliSessionId", cliSessionId)
            writer.member("reason", reason)
            writer.member("fork", fork)
        }
    }
}

extension TranscriptState: WireWritable {
    public func write(to writer: inout WireWriter) {
        writer.object { writer in
            writer.member("cliSessionId", cliSessionId)
            writer.member("size", size)
        }
    }
}

extension Message: WireWritable {
    public func write(to writer: inout WireWriter) {
        writer.object { writer in
            writer.member("seq", seq)
            writer.member("role", role)
            writer.member("content", content)
            writer.member("inputTokens", inputTokens)
            writer.member("outputTokens", outputTokens)
            writer.member("at", at)
        }
    }
}

extension SessionAcquire.Result: WireWritable {
    public func write(to writer: inout WireWriter) {
        writer.object { writer in
            writer.member("session", session)
            writer.member("created", created)
            writer.member("lease", lease)
            writer.member("decision", decision)
            writer.member("transcript", transcript)
        }
    }
}

extension SessionComplete.Result: WireWritable {
    public func write(to writer: inout WireWriter) {
        writer.object { writer in
            writer.member("session", session)
            writer.member("chainExtended", chainExtended)
            writer.member("lease", lease)
            writer.member("decision", decision)
        }
    }
}

extension SessionTouch.Result: WireWritable {
    public func write(to writer: inout WireWriter) {
        writer.object { writer in writer.member("session", session) }
    }
}

extension SessionList.Result: WireWritable {
    public func write(to writer: inout WireWriter) {
        writer.object { writer in
            writer.member("sessions", sessions)
            writer.member("nextCursor", nextCursor)
        }
    }
}

extension MessagesAppend.Result: WireWritable {
    public func write(to writer: inout WireWriter) {
        writer.object { writer in
            writer.member("firstSeq", firstSeq)
            writer.member("lastSeq", lastSeq)
        }
    }
}

extension MessagesList.Result: WireWritable {
    public func write(to writer: inout WireWriter) {
        writer.object { writer in
            writer.member("messages", messages)
            writer.member("nextAfterSeq", nextAfterSeq)
        }
    }
}
