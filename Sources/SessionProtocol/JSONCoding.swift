import Foundation

/// The one JSON configuration used on the wire: ISO-8601 UTC dates with milliseconds.
public enum WireJSON {
    /// Keys are sorted for output people read or compare; the hot paths (server responses, client requests)
    /// skip the sort, since JSON members have no order.
    public static func makeEncoder(sortedKeys: Bool = true) -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = sortedKeys ? [.sortedKeys, .withoutEscapingSlashes] : [.withoutEscapingSlashes]
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

    /// `2026-11-21T08:46:19.123Z`, rounded to the nearest millisecond.
    ///
    /// Written digit by digit: dates are in every response, and this is several times faster than
    /// `gmtime_r` plus string interpolation or a `FormatStyle`.
    public static func formatDate(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded())
        let days = milliseconds.floorDiv(86_400_000)
        let msOfDay = Int(milliseconds - days * 86_400_000)
        let (year, month, day) = CivilDate.from(daysSinceEpoch: days)
        guard (0...9999).contains(year) else {
            return Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(date)
        }
        return String(unsafeUninitializedCapacity: 24) { buffer in
            func put(_ value: Int, _ width: Int, at offset: Int) {
                var value = value
                for index in stride(from: offset + width - 1, through: offset, by: -1) {
                    buffer[index] = UInt8(ascii: "0") + UInt8(value % 10)
                    value /= 10
                }
            }
            put(Int(year), 4, at: 0)
            buffer[4] = UInt8(ascii: "-")
            put(month, 2, at: 5)
            buffer[7] = UInt8(ascii: "-")
            put(day, 2, at: 8)
            buffer[10] = UInt8(ascii: "T")
            put(msOfDay / 3_600_000, 2, at: 11)
            buffer[13] = UInt8(ascii: ":")
            put(msOfDay / 60_000 % 60, 2, at: 14)
            buffer[16] = UInt8(ascii: ":")
            put(msOfDay / 1000 % 60, 2, at: 17)
            buffer[19] = UInt8(ascii: ".")
            put(msOfDay % 1000, 3, at: 20)
            buffer[23] = UInt8(ascii: "Z")
            return 24
        }
    }

    /// Parses ISO-8601 with or without fractional seconds, to the millisecond.
    ///
    /// The wire's own form (`YYYY-MM-DDTHH:MM:SS[.fff…]Z`) is read directly, and refused when a field is
    /// out of range (Foundation would roll February 30 over into March); anything else (an offset instead
    /// of `Z`, for one) goes through Foundation's parser.
    public static func parseDate(_ text: String) -> Date? {
        switch parseUTC(text) {
        case .milliseconds(let milliseconds): return Date(timeIntervalSince1970: Double(milliseconds) / 1000)
        case .invalid: return nil
        case .otherForm: break
        }
        guard let date = (try? iso8601WithMilliseconds.parse(text)) ?? (try? Date.ISO8601FormatStyle().parse(text))
        else { return nil }
        return Date(timeIntervalSince1970: (date.timeIntervalSince1970 * 1000).rounded() / 1000)
    }

    private enum UTCParse {
        case milliseconds(Int64)
        case invalid
        case otherForm
    }

    /// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fff…]Z`.
    private static func parseUTC(_ text: String) -> UTCParse {
        var text = text
        return text.withUTF8 { bytes -> UTCParse in
            guard bytes.count >= 20, bytes.count <= 32, bytes[bytes.count - 1] == UInt8(ascii: "Z"),
                bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"), bytes[10] == UInt8(ascii: "T"),
                bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":")
            else { return .otherForm }
            func number(_ range: Range<Int>) -> Int? {
                var value = 0
                for index in range {
                    let digit = Int(bytes[index]) - 48
                    guard (0...9).contains(digit) else { return nil }
                    value = value * 10 + digit
                }
                return value
            }
            guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
                let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
                (1...12).contains(month), (1...CivilDate.daysIn(month: month, year: year)).contains(day),
                hour < 24, minute < 60, second < 60
            else { return .invalid }
            // Optional fraction: a dot and at least one digit, rounded to milliseconds.
            var fractionMs = 0.0
            let end = bytes.count - 1
            if end > 19 {
                guard bytes[19] == UInt8(ascii: "."), end > 20, let digits = number(20..<end) else { return .invalid }
                fractionMs = Double(digits) / pow(10, Double(end - 20 - 3))
            } else if end != 19 {
                return .invalid
            }
            let days = CivilDate.daysSinceEpoch(year: year, month: month, day: day)
            let seconds = days * 86_400 + Int64(hour * 3600 + minute * 60 + second)
            return .milliseconds(seconds * 1000 + Int64(fractionMs.rounded()))
        }
    }

    private static let iso8601WithMilliseconds = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
}

extension Int64 {
    fileprivate func floorDiv(_ divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor < 0) ? quotient - 1 : quotient
    }

    fileprivate func floorMod(_ divisor: Int64) -> Int64 {
        let remainder = self % divisor
        return remainder < 0 ? remainder + divisor : remainder
    }
}

/// Proleptic Gregorian calendar arithmetic in UTC (Howard Hinnant's `days_from_civil` and its inverse).
enum CivilDate {
    static func daysSinceEpoch(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let m = Int64(month)
        let dayOfYear = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func from(daysSinceEpoch days: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = Int(dayOfYear - (153 * mp + 2) / 5 + 1)
        let month = Int(mp < 10 ? mp + 3 : mp - 9)
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}
