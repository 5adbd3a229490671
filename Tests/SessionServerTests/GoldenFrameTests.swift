import Foundation
import SessionProtocol
import SessionTesting
import Testing

/// Replays every scenario in `Tests/Fixtures/frames/` (see docs/PROTOCOL.md, "Golden fixtures").
@Suite struct GoldenFrameTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/frames")

    static var files: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).filter { $0.hasSuffix(".json") }
            .sorted()
    }

    @Test func fixturesExist() {
        #expect(Self.files.count >= 8)
    }

    @Test(arguments: files) func replay(_ file: String) async throws {
        let data = try Data(contentsOf: Self.directory.appendingPathComponent(file))
        try await withTestServer { server in
            let scenario = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let steps = try #require(scenario["steps"] as? [[String: Any]])
            let raw = try await RawConnection(port: server.port)
            defer { raw.close() }
            var captures: [String: Any] = [:]
            for (index, step) in steps.enumerated() {
                if let hex = step["sendRaw"] as? String {
                    try await raw.send(Self.bytes(hex: hex))
                } else if let send = step["send"] {
                    let resolved = Self.substitute(send, captures)
                    let payload = try JSONSerialization.data(withJSONObject: resolved)
                    try await raw.send(RawConnection.header(payload.count) + Array(payload))
                }
                if step["expectNothing"] as? Bool == true { continue }
                let expected = try #require(step["expect"], "\(file) step \(index) has no expect")
                let actual = await raw.nextFrame()
                #expect(actual != nil, "\(file) step \(index): no response")
                var problems: [String] = []
                Self.match(expected, actual as Any, path: "", captures: &captures, problems: &problems)
                #expect(problems.isEmpty, "\(file) step \(index): \(problems.joined(separator: "; "))")
                if step["expectClose"] as? Bool == true {
                    #expect(await raw.waitForClose(), "\(file) step \(index): connection stayed open")
                }
            }
        }
    }

    static func bytes(hex: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }

    static func substitute(_ value: Any, _ captures: [String: Any]) -> Any {
        if let text = value as? String, text.hasPrefix("$ref:") { return captures[String(text.dropFirst(5))] ?? NSNull() }
        if let object = value as? [String: Any] { return object.mapValues { substitute($0, captures) } }
        if let array = value as? [Any] { return array.map { substitute($0, captures) } }
        return value
    }

    static func match(_ expected: Any, _ actual: Any?, path: String, captures: inout [String: Any], problems: inout [String]) {
        if let pattern = expected as? String, pattern.hasPrefix("$") {
            switch pattern {
            case "$any": return
            case "$string": if !(actual is String) { problems.append("\(path): expected a string") }
            case "$number": if !(actual is NSNumber) { problems.append("\(path): expected a number") }
            case "$date":
                if (actual as? String).flatMap(WireJSON.parseDate) == nil { problems.append("\(path): expected a date") }
            default:
                if pattern.hasPrefix("$capture:") {
                    if let actual { captures[String(pattern.dropFirst(9))] = actual } else { problems.append("\(path): missing") }
                } else if pattern.hasPrefix("$ref:") {
                    let want = captures[String(pattern.dropFirst(5))]
                    if "\(want ?? "nil")" != "\(actual ?? "nil")" { problems.append("\(path): expected \(want ?? "nil")") }
                } else {
                    problems.append("\(path): unknown pattern \(pattern)")
                }
            }
            return
        }
        if let object = expected as? [String: Any] {
            guard let actualObject = actual as? [String: Any] else {
                problems.append("\(path): expected an object, got \(actual ?? "nothing")")
                return
            }
            for (key, value) in object {
                match(value, actualObject[key], path: path + "." + key, captures: &captures, problems: &problems)
            }
            return
        }
        if let array = expected as? [Any] {
            guard let actualArray = actual as? [Any], actualArray.count == array.count else {
                problems.append("\(path): expected \(array.count) elements, got \(actual ?? "nothing")")
                return
            }
            for (index, value) in array.enumerated() {
                match(value, actualArray[index], path: "\(path)[\(index)]", captures: &captures, problems: &problems)
            }
            return
        }
        if expected is NSNull {
            if !(actual == nil || actual is NSNull) { problems.append("\(path): expected null") }
            return
        }
        if let number = expected as? NSNumber, let actualNumber = actual as? NSNumber {
            if number != actualNumber { problems.append("\(path): expected \(number), got \(actualNumber)") }
            return
        }
        if "\(expected)" != "\(actual ?? "nil")" { problems.append("\(path): expected \(expected), got \(actual ?? "nothing")") }
    }
}
