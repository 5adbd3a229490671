import SessionProtocol
import Testing

@Suite struct ControlCharacterTests {
    /// The byte scan agrees with Unicode's general category for every scalar, alone and after a
    /// two-byte character (so a C2 lead byte is told apart from its neighbours).
    @Test func controlCharactersAreFoundExactlyAsUnicodeDefinesThem() {
        var found = 0
        var disagreements: [String] = []
        for value in UInt32(0)...0x10FFFF {
            guard let scalar = Unicode.Scalar(value) else { continue }
            let expected = scalar.properties.generalCategory == .control
            let alone = String(Character(scalar))
            if alone.containsControlCharacter != expected
                || ("é\u{00A0}" + alone + "¢").containsControlCharacter != expected
            {
                disagreements.append("U+" + String(value, radix: 16))
            }
            if expected { found += 1 }
        }
        #expect(disagreements == [])
        #expect(found == 65)
        #expect(!"repo:main/ünïcode ✓".containsControlCharacter)
    }
}
