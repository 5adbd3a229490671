import Foundation

/// The one JSON configuration used on the wire: ISO-8601 UTC dates with milliseconds, sorted keys.
public enum WireJSON {
    public static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(formatDate(date))
        }
        return encoder
    }

    public static func makeDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = parseDate(text) else {
                throw DecodingError.dataCorruptedError(
                    in: container, debugDescription: "expected an ISO-8601 date, got \(text.prefix(40))")
            }
            return date
        }
        return decoder
    }

    /// `2026-11-21T08:46:19.123Z`
    public static func formatDate(_ date: Date) -> String {
        date.formatted(iso8601WithMilliseconds)
    }

    public static func parseDate(_ text: String) -> Date? {
        (try? iso8601WithMilliseconds.parse(text)) ?? (try? Date.ISO8601FormatStyle().parse(text))
    }

    private static let iso8601WithMilliseconds = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
}
