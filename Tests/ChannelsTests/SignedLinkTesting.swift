import Channels
import Foundation
import Testing

/// What the signed-link tests share: the token of a URL, base64 both ways, and the one-character tampering sweep.
enum SignedLinkTesting {
    /// The last path segment of a signed URL.
    static func token(of url: String) -> String { String(url.split(separator: "/").last!) }

    /// base64url (no padding) → standard base64 with padding, for `Data(base64Encoded:)`.
    static func standardBase64(_ text: Substring) -> String {
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.count % 4 != 0 { s += "=" }
        return s
    }

    /// base64url without padding, as tokens spell it.
    static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Every single-character change of `token` (outside the `.`) is refused by `links`.
    static func expectEveryOneCharacterChangeRefused(_ token: String, by links: SignedLinks,
                                                      sourceLocation: SourceLocation = #_sourceLocation) {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        var characters = Array(token)
        for i in characters.indices where characters[i] != "." {
            let original = characters[i]
            characters[i] = alphabet[(alphabet.firstIndex(of: original)! + 1) % alphabet.count]
            #expect(links.verify(String(characters)) == nil, "changed at \(i)", sourceLocation: sourceLocation)
            characters[i] = original
        }
    }
}
