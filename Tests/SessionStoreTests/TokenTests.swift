import Foundation
import Testing

@testable import SessionStore

@Suite struct TokenTests {
    @Test func tokensAreHexOfTheRequestedLengthAndEveryByteIsDrawn() {
        let tokens = (0..<2000).map { _ in SessionDatabase.randomToken() }
        #expect(Set(tokens).count == tokens.count)
        #expect(tokens.allSatisfy { $0.utf8.count == 32 && $0.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) } })
        let bytes = tokens.map { token in
            stride(from: 0, to: 32, by: 2).map { UInt8(token.dropFirst($0).prefix(2), radix: 16)! }
        }
        for position in 0..<16 {
            // Each of the 16 bytes takes many values, and no two bytes of a token move together.
            #expect(Set(bytes.map { $0[position] }).count > 200, "byte \(position)")
            let same = bytes.filter { $0[position] == $0[(position + 1) % 16] }.count
            #expect(same < 40, "bytes \(position) and \(position + 1)")
        }
        #expect(SessionDatabase.randomToken(bytes: 6).utf8.count == 12)
        #expect(SessionDatabase.randomToken(bytes: 32).utf8.count == 64)
    }
}
