import Channels
import Domain
import Foundation
import Testing

@Suite struct SignedLinksTests {
    let links = SignedLinks(publicURL: "https://mail.acme.test/", secret: "s3cret-key")

    func token(of url: String) -> String { SignedLinkTesting.token(of: url) }

    @Test func roundTrip() throws {
        let unsubscribe = links.unsubscribeURL(contactId: 42, deliveryId: "6f1c2a4e-0000-4000-8000-000000000001")
        #expect(unsubscribe.hasPrefix("https://mail.acme.test/u/"))
        #expect(links.verify(token(of: unsubscribe)) == SignedLinkPayload(purpose: "u", contactId: 42,
                                                                           deliveryId: "6f1c2a4e-0000-4000-8000-000000000001"))
        let noDelivery = links.unsubscribeURL(contactId: 7, deliveryId: nil)
        #expect(links.verify(token(of: noDelivery)) == SignedLinkPayload(purpose: "u", contactId: 7, deliveryId: nil))
        let preferences = links.preferencesURL(contactId: 9_000_000_000)
        #expect(preferences.hasPrefix("https://mail.acme.test/p/"))
        #expect(links.verify(token(of: preferences)) == SignedLinkPayload(purpose: "p", contactId: 9_000_000_000, deliveryId: nil))
        // URL-safe: no characters that need escaping in a path or an html attribute.
        #expect(token(of: unsubscribe).allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." })
        // The tag is HMAC-SHA256(secret, payload) truncated to 16 bytes (RFC 2104, checked against Domain's HMAC).
        let parts = token(of: unsubscribe).split(separator: ".")
        let payload = try #require(Data(base64Encoded: SignedLinkTesting.standardBase64(parts[0])))
        #expect(String(decoding: payload, as: UTF8.self) == "u:42:6f1c2a4e-0000-4000-8000-000000000001")
        let expected = HMACSHA256.authenticationCode(for: Array(payload), key: Array("s3cret-key".utf8)).prefix(16)
        #expect(try #require(Data(base64Encoded: SignedLinkTesting.standardBase64(parts[1]))) == Data(expected))
        // Deterministic: the same link twice is the same token.
        #expect(links.unsubscribeURL(contactId: 42, deliveryId: "d") == links.unsubscribeURL(contactId: 42, deliveryId: "d"))
    }

    @Test func tamperedTokensAreRefused() throws {
        let good = token(of: links.unsubscribeURL(contactId: 42, deliveryId: "d-1"))
        let parts = good.split(separator: ".").map(String.init)
        // Another contact's payload with this signature.
        let otherPayload = token(of: links.unsubscribeURL(contactId: 43, deliveryId: "d-1")).split(separator: ".")[0]
        #expect(links.verify("\(otherPayload).\(parts[1])") == nil)
        // Every single-character change anywhere.
        SignedLinkTesting.expectEveryOneCharacterChangeRefused(good, by: links)
        #expect(links.verify(good) != nil)
        // Garbage.
        for garbage in ["", ".", "abc", "abc.def", "\(parts[0])", "\(parts[0]).\(parts[1]).x", "\(parts[0])=.\(parts[1])",
                        "\(parts[0]).\(parts[1].dropLast())", "!!!.???"] {
            #expect(links.verify(garbage) == nil, "\(garbage)")
        }
        // A preferences token cannot be turned into an unsubscribe one (the purpose is signed).
        let p = token(of: links.preferencesURL(contactId: 42))
        #expect(links.verify(p)?.purpose == "p")
    }

    @Test func otherSecretIsRefused() {
        let other = SignedLinks(publicURL: "https://mail.acme.test", secret: "another-key")
        let url = links.unsubscribeURL(contactId: 42, deliveryId: "d-1")
        #expect(other.verify(token(of: url)) == nil)
        #expect(links.verify(token(of: other.unsubscribeURL(contactId: 42, deliveryId: "d-1"))) == nil)
    }
}
