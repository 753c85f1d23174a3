import Channels
import Domain
import Foundation
import Testing

/// Click, pixel and expiring tokens, and HTML rewriting (issue 7), without servers.
@Suite struct LinkTrackingTests {
    let links = SignedLinks(publicURL: "https://mail.acme.test/", secret: "s3cret-key")

    func token(of url: String) -> String { SignedLinkTesting.token(of: url) }

    @Test func everyKindRoundTrips() throws {
        let expiry = Date(timeIntervalSince1970: 1_900_000_000)
        #expect(links.verify(token(of: links.unsubscribeURL(contactId: 42, deliveryId: "d-1", expiresAt: expiry)))
                == SignedLinkPayload(purpose: "u", contactId: 42, deliveryId: "d-1", expiresAt: expiry))
        #expect(links.verify(token(of: links.preferencesURL(contactId: 7, expiresAt: expiry)))
                == SignedLinkPayload(purpose: "p", contactId: 7, expiresAt: expiry))
        let open = links.openPixelURL(contactId: 9, deliveryId: "6f1c2a4e-0000-4000-8000-000000000001")
        #expect(open.hasPrefix("https://mail.acme.test/o/"))
        #expect(links.verify(token(of: open)) == SignedLinkPayload(purpose: "o", contactId: 9, deliveryId: "6f1c2a4e-0000-4000-8000-000000000001"))
        // A destination with colons, slashes, a query and a fragment survives as is.
        let target = "https://shop.example:8443/a/b?x=1&y=a:b#frag"
        let click = links.clickURL(contactId: 9, deliveryId: "d-2", url: target, utm: "utm_source=news", expiresAt: expiry)
        let payload = try #require(links.verify(token(of: click)))
        #expect(payload == SignedLinkPayload(purpose: "c", contactId: 9, deliveryId: "d-2", expiresAt: expiry, url: target, utm: "utm_source=news"))
        #expect(token(of: click).allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." })
        // Links without an expiry keep the payload format of issue 5 (links already in inboxes stay valid).
        let legacy = token(of: links.unsubscribeURL(contactId: 42, deliveryId: "d"))
        let bytes = try #require(Data(base64Encoded: SignedLinkTesting.standardBase64(legacy.split(separator: ".")[0])))
        #expect(String(decoding: bytes, as: UTF8.self) == "u:42:d")
    }

    @Test func expiry() throws {
        let expiry = Date(timeIntervalSince1970: 1_900_000_000)
        let p = try #require(links.verify(token(of: links.unsubscribeURL(contactId: 1, deliveryId: nil, expiresAt: expiry))))
        #expect(!p.isExpired(at: expiry.addingTimeInterval(-1)))
        #expect(p.isExpired(at: expiry))
        #expect(links.verify(token(of: links.unsubscribeURL(contactId: 1, deliveryId: nil)))?.isExpired(at: .distantFuture) == false)
    }

    @Test func tamperingIsRefused() throws {
        let click = token(of: links.clickURL(contactId: 9, deliveryId: "d-2", url: "https://shop.example/"))
        let parts = click.split(separator: ".").map(String.init)
        // Another destination under the same signature.
        let evil = token(of: links.clickURL(contactId: 9, deliveryId: "d-2", url: "https://evil.example/")).split(separator: ".")[0]
        #expect(links.verify("\(evil).\(parts[1])") == nil)
        // Dropping the expiry from an expiring token.
        let expiring = token(of: links.unsubscribeURL(contactId: 1, deliveryId: nil, expiresAt: Date(timeIntervalSince1970: 1_000)))
        let unexpiring = token(of: links.unsubscribeURL(contactId: 1, deliveryId: nil)).split(separator: ".")[0]
        #expect(links.verify("\(unexpiring).\(expiring.split(separator: ".")[1])") == nil)
        // Every single-character change.
        SignedLinkTesting.expectEveryOneCharacterChangeRefused(click, by: links)
        // Another secret.
        #expect(SignedLinks(publicURL: "https://mail.acme.test", secret: "other").verify(click) == nil)
        // Well-signed but malformed payloads are refused too.
        for text in ["x:1", "o:1", "o:1:", "c:1:d", "c:1:d::", "u@abc:1", "u@-5:1", "p:1:d", ":1"] {
            let bytes = Array(text.utf8)
            let forged = SignedLinkTesting.base64URL(bytes) + "." + SignedLinkTesting.base64URL(
                Array(HMACSHA256.authenticationCode(for: bytes, key: Array("s3cret-key".utf8)).prefix(16)))
            #expect(links.verify(forged) == nil, "\(text)")
        }
    }

    @Test func rewritesLinksAndAddsThePixel() throws {
        let unsubscribe = links.unsubscribeURL(contactId: 5, deliveryId: "d-9")
        let html = """
            <html><body><p>Hi</p>
            <a href="https://shop.example/sale?a=1&amp;b=2">Sale</a>
            <A class="x" HREF='http://blog.example/post'>Post</A>
            <a data-notrack href="https://private.example/x">Private</a>
            <a href="mailto:help@acme.test">Mail</a> <a href="#top">Top</a> <a href="/relative">Rel</a>
            <a href="\(unsubscribe)">Unsubscribe</a>
            <!-- <a href="https://commented.example/">no</a> -->
            <abbr title="x">a</abbr>
            </body></html>
            """
        let out = LinkTracking.rewrite(html: html, contactId: 5, deliveryId: "d-9", links: links,
                                       utm: ["source": "newsletter", "utm_campaign": "spring sale"], trackOpens: true)
        var clicks: [SignedLinkPayload] = []
        for match in out.matches(of: /[hH][rR][eE][fF]="https:\/\/mail\.acme\.test\/c\/([A-Za-z0-9_.\-]+)"/) {
            clicks.append(try #require(links.verify(String(match.1))))
        }
        #expect(clicks.map(\.url) == ["https://shop.example/sale?a=1&b=2", "http://blog.example/post"])
        #expect(clicks.allSatisfy { $0.purpose == "c" && $0.contactId == 5 && $0.deliveryId == "d-9" })
        #expect(clicks.first?.utm == "utm_campaign=spring%20sale&utm_source=newsletter")
        #expect(out.contains("<a data-notrack href=\"https://private.example/x\">"))
        #expect(out.contains("href=\"mailto:help@acme.test\"") && out.contains("href=\"#top\"") && out.contains("href=\"/relative\""))
        #expect(out.contains("href=\"\(unsubscribe)\""))
        #expect(out.contains("<a href=\"https://commented.example/\">"))
        #expect(out.contains("<A class=\"x\" HREF=\"https://mail.acme.test/c/"))
        // The pixel goes right before </body>.
        let pixel = try #require(out.firstMatch(of: /<img src="https:\/\/mail\.acme\.test\/o\/([A-Za-z0-9_.\-]+)" width="1" height="1"[^>]*><\/body>/))
        #expect(links.verify(String(pixel.1)) == SignedLinkPayload(purpose: "o", contactId: 5, deliveryId: "d-9"))
        // Opt-outs.
        #expect(LinkTracking.rewrite(html: html, contactId: 5, deliveryId: "d-9", links: links, trackOpens: false, trackClicks: false) == html)
        #expect(LinkTracking.rewrite(html: "<p>x</p>", contactId: 5, deliveryId: "d", links: links, trackOpens: true).hasPrefix("<p>x</p><img "))
    }

    @Test func utmParametersAreAddedWithoutOverriding() {
        #expect(LinkTracking.addQuery("utm_source=news", to: "https://a.example/") == "https://a.example/?utm_source=news")
        #expect(LinkTracking.addQuery("utm_source=news&utm_medium=email", to: "https://a.example/p?x=1#frag")
                == "https://a.example/p?x=1&utm_source=news&utm_medium=email#frag")
        #expect(LinkTracking.addQuery("utm_source=news&utm_medium=email", to: "https://a.example/?utm_source=own")
                == "https://a.example/?utm_source=own&utm_medium=email")
        #expect(LinkTracking.addQuery("", to: "https://a.example/") == "https://a.example/")
        #expect(LinkTracking.addQuery("utm_source=news", to: "https://a.example/p#top") == "https://a.example/p?utm_source=news#top")
        #expect(LinkTracking.addQuery("utm_source=news", to: "https://a.example/p?") == "https://a.example/p?utm_source=news")
        #expect(LinkTracking.addQuery("utm_source=news", to: "https://a.example/p?x=1&") == "https://a.example/p?x=1&utm_source=news")
        #expect(LinkTracking.addQuery("utm_source=news", to: "https://a.example/p?utm_source") == "https://a.example/p?utm_source")
        #expect(LinkTracking.addQuery("utm_source=news&utm_medium=email", to: "https://a.example/p?utm_medium=x&utm_source=y#f")
                == "https://a.example/p?utm_medium=x&utm_source=y#f")
        // The installation's own links are never tracked; other links on the same host are.
        let links = SignedLinks(publicURL: "https://mail.acme.test", secret: "s")
        #expect(!LinkTracking.isTrackable("https://mail.acme.test/u/abc", links: links))
        #expect(!LinkTracking.isTrackable("https://mail.acme.test/c/abc", links: links))
        #expect(LinkTracking.isTrackable("https://mail.acme.test/blog", links: links))
        #expect(LinkTracking.isTrackable("HTTPS://shop.acme.test/", links: links))
        #expect(!LinkTracking.isTrackable("mailto:a@acme.test", links: links))
        #expect(!LinkTracking.isTrackable("https://shop.acme.test/a b", links: links))
    }

    @Test func templateTrackingOptionsParse() throws {
        let report = DefinitionLoader.load(file: "t.yaml", text: """
            kind: template
            name: a
            channel: email
            subject: s
            html: h
            tracking: {opens: false}
            utm: {source: newsletter, campaign: spring}
            ---
            kind: template
            name: b
            channel: email
            subject: s
            html: h
            tracking: false
            ---
            kind: template
            name: c
            channel: email
            subject: s
            html: h
            """)
        #expect(report.diagnostics.isEmpty, "\(report.diagnostics)")
        var templates: [String: TemplateDefinition] = [:]
        for d in report.definitions { if case .template(let t) = d.body { templates[t.name] = t } }
        #expect(templates["a"]?.trackOpens == false && templates["a"]?.trackClicks == true)
        #expect(templates["a"]?.utm == ["utm_source": "newsletter", "utm_campaign": "spring"])
        #expect(templates["b"]?.trackOpens == false && templates["b"]?.trackClicks == false)
        #expect(templates["c"]?.trackOpens == true && templates["c"]?.trackClicks == true && templates["c"]?.utm == [:])
        let bad = DefinitionLoader.load(file: "t.yaml", text: "kind: template\nname: a\nchannel: email\nsubject: s\nhtml: h\ntracking: {open: false}\n")
        #expect(bad.diagnostics.first?.message.contains("did you mean 'opens'") == true)
    }
}
