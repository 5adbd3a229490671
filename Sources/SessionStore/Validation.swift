import Foundation
import SessionProtocol

/// Checks caller-supplied values before they reach SQL; every failure names the field.
enum Validate {
    /// A key, tool, label or CLI session id: non-empty, bounded, and free of control characters.
    static func name(_ value: String, field: String, maxBytes: Int) throws {
        guard !value.isEmpty else { throw SessionError.invalidParams("\(field) must not be empty") }
        guard value.utf8.count <= maxBytes else {
            throw SessionError(.tooLarge, "\(field) is \(value.utf8.count) bytes; the limit is \(maxBytes)")
        }
        guard !value.containsControlCharacter else {
            throw SessionError.invalidParams("\(field) must not contain control characters")
        }
    }

    static func optionalText(_ value: String?, field: String, maxBytes: Int) throws {
        guard let value else { return }
        guard value.utf8.count <= maxBytes else {
            throw SessionError(.tooLarge, "\(field) is \(value.utf8.count) bytes; the limit is \(maxBytes)")
        }
    }

    static func range(_ value: Int?, field: String, _ range: ClosedRange<Int>) throws {
        guard let value else { return }
        guard range.contains(value) else {
            throw SessionError.invalidParams("\(field) must be between \(range.lowerBound) and \(range.upperBound)")
        }
    }

    /// A cost or other amount: finite, not negative, and small enough that sums stay finite.
    static func nonNegative(_ value: Double?, field: String, max: Double = 1e9) throws {
        guard let value else { return }
        guard value.isFinite, value >= 0, value <= max else {
            throw SessionError.invalidParams("\(field) must be a number from 0 to \(Int(max))")
        }
    }

    static func labels(_ labels: [String]?) throws {
        guard let labels else { return }
        guard labels.count <= 64 else { throw SessionError.invalidParams("labels: at most 64") }
        for label in labels { try name(label, field: "label", maxBytes: 128) }
    }

    static func metadata(_ metadata: [String: JSONValue]?, maxBytes: Int) throws -> String? {
        guard let metadata else { return nil }
        let text = JSONText.encode(metadata)
        guard text.utf8.count <= maxBytes else {
            throw SessionError(.tooLarge, "metadata is \(text.utf8.count) bytes; the limit is \(maxBytes)")
        }
        return text
    }

    static func messages(_ messages: [NewMessage], maxBytes: Int) throws {
        guard messages.count <= 1000 else { throw SessionError.invalidParams("messages: at most 1000 per call") }
        for message in messages {
            guard message.content.utf8.count <= maxBytes else {
                throw SessionError(.tooLarge, "a message is \(message.content.utf8.count) bytes; the limit is \(maxBytes)")
            }
            try range(message.inputTokens, field: "inputTokens", 0...Int(Int32.max))
            try range(message.outputTokens, field: "outputTokens", 0...Int(Int32.max))
        }
    }

    /// Seconds within `1...max`, as milliseconds; `nil` gives the default.
    static func duration(_ seconds: Int?, field: String, default: Duration, max: Duration) throws -> Int64 {
        guard let seconds else { return `default`.milliseconds }
        let maxSeconds = Int(max.milliseconds / 1000)
        try range(seconds, field: field, 1...maxSeconds)
        return Int64(seconds) * 1000
    }
}
