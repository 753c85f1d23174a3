import Channels
import Domain
import Foundation
import NurtureCore
import Postgres
import Redis
import Store
import Testing
import TestSupport

/// `nurture web` as a real process against real Redis and PostgreSQL: every request goes over TCP, every effect is
/// read back from PostgreSQL and from the events stream.
@Suite struct WebEndpointTests {
    static let human = ["User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"]

    @Test func oneClickUnsubscribe() throws {
        let h = try WebHarness()
        let ann = try h.contact("u-ann", email: "ann@example.com")
        let bob = try h.contact("u-bob", email: "bob@example.com")
        let delivery = try h.delivery(contact: ann, sentAt: Date().addingTimeInterval(-3_600))
        let annLink = path(h.links.unsubscribeURL(contactId: ann, deliveryId: delivery))

        // GET (what a mail client's link preview or a person's click does) shows one button and changes nothing.
        let page = try h.get(annLink)
        #expect(page.status == 200)
        #expect(page.headers["content-type"]?.hasPrefix("text/html") == true)
        #expect(page.text.components(separatedBy: "<button").count == 2, "exactly one button")
        #expect(page.text.contains("<form method=\"post\" action=\"\(annLink)\">"))
        #expect(try h.unsubscribedAt(ann) == nil)
        #expect(try h.eventNames().isEmpty)

        // A POST without the RFC 8058 body is refused.
        #expect(try h.post(annLink, form: "").status == 400)
        #expect(try h.unsubscribedAt(ann) == nil)

        // RFC 8058: the exact body, 200, no page, unsubscribed at once.
        let reply = try h.post(annLink, form: "List-Unsubscribe=One-Click")
        #expect(reply.status == 200)
        #expect(reply.body.isEmpty)
        #expect(try h.unsubscribedAt(ann) != nil)
        #expect(try h.consents(ann) == ["marketing * withdrawn one-click delivery=\(delivery)"])
        let events = try h.events()
        #expect(events.count == 1)
        #expect(events.first?["type"]?.stringValue == "track")
        #expect(events.first?["event"]?.stringValue == "Unsubscribed")
        #expect(events.first?["userId"]?.stringValue == "u-ann")
        #expect(events.first?[path: ["properties", "delivery_id"]]?.stringValue == delivery)
        #expect(events.first?[path: ["properties", "source"]]?.stringValue == "one-click")

        // Idempotent: again → 200, nothing new.
        #expect(try h.post(annLink, form: "List-Unsubscribe=One-Click").status == 200)
        #expect(try h.consents(ann).count == 1)
        #expect(try h.eventNames() == ["Unsubscribed"])
        // The page now says so.
        #expect(try h.get(annLink).text.contains("You are unsubscribed"))
        // The send-time check every worker runs (whatever was enqueued before) now blocks marketing, not transactional.
        let deliveries = DeliveryStore()
        #expect(try deliveries.blockReason(contactId: ann, channel: "email", category: "marketing", address: "ann@example.com", on: h.db) == "unsubscribed")
        #expect(try deliveries.blockReason(contactId: ann, channel: "email", category: "transactional", address: "ann@example.com", on: h.db) == nil)
        // Bob is untouched.
        #expect(try h.unsubscribedAt(bob) == nil)

        // RFC 8058 also allows multipart/form-data.
        let carl = try h.contact("u-carl")
        let boundary = "----nurture"
        let multipart = "--\(boundary)\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--\(boundary)--\r\n"
        #expect(try h.request("POST", path(h.links.unsubscribeURL(contactId: carl, deliveryId: nil)),
                              headers: ["Content-Type": "multipart/form-data; boundary=\(boundary)"], body: Array(multipart.utf8)).status == 200)
        #expect(try h.unsubscribedAt(carl) != nil)
        #expect(try h.eventNames() == ["Unsubscribed", "Unsubscribed"])

        // The page's own button posts the same form and gets a page back.
        let bobLink = path(h.links.unsubscribeURL(contactId: bob, deliveryId: nil))
        let confirmed = try h.post(bobLink, form: "List-Unsubscribe=One-Click&from=page")
        #expect(confirmed.status == 200)
        #expect(confirmed.text.contains("You are unsubscribed"))
        #expect(try h.unsubscribedAt(bob) != nil)
        #expect(try h.consents(bob) == ["marketing * withdrawn unsubscribe-page"])
        #expect(try h.eventNames() == ["Unsubscribed", "Unsubscribed", "Unsubscribed"])
    }

    @Test func tamperedExpiredAndWrongKindLinksChangeNothing() throws {
        let h = try WebHarness()
        let ann = try h.contact("u-ann")
        let delivery = try h.delivery(contact: ann, sentAt: Date().addingTimeInterval(-3_600))
        let good = path(h.links.unsubscribeURL(contactId: ann, deliveryId: delivery))
        var tampered = Array(good)
        tampered[5] = tampered[5] == "A" ? "B" : "A"
        let forged = path(SignedLinks(publicURL: "http://x", secret: "not-the-secret").unsubscribeURL(contactId: ann, deliveryId: nil))
        let expired = path(h.links.unsubscribeURL(contactId: ann, deliveryId: delivery, expiresAt: Date().addingTimeInterval(-60)))
        let preferences = path(h.links.preferencesURL(contactId: ann))
        let wrongKind = "/u/" + preferences.dropFirst(3)
        for link in [String(tampered), forged, expired, wrongKind, "/u/garbage", "/u/a.b"] {
            #expect(try h.get(link).status == 400, "GET \(link)")
            #expect(try h.post(link, form: "List-Unsubscribe=One-Click").status == 400, "POST \(link)")
        }
        let expiredPreferences = path(h.links.preferencesURL(contactId: ann, expiresAt: Date().addingTimeInterval(-1)))
        #expect(try h.get(expiredPreferences).status == 400)
        #expect(try h.post(expiredPreferences, form: "action=unsubscribe_all").status == 400)
        #expect(try h.get("/o/" + good.dropFirst(3)).status == 400)
        #expect(try h.get("/c/" + good.dropFirst(3)).status == 400)
        #expect(try h.unsubscribedAt(ann) == nil)
        #expect(try h.consents(ann).isEmpty)
        #expect(try h.eventNames().isEmpty)
        // A link that expires later works.
        let later = path(h.links.unsubscribeURL(contactId: ann, deliveryId: delivery, expiresAt: Date().addingTimeInterval(3_600)))
        #expect(try h.post(later, form: "List-Unsubscribe=One-Click").status == 200)
        #expect(try h.unsubscribedAt(ann) != nil)
    }

    @Test func linksOfMergedContactsActOnTheSurvivor() throws {
        let h = try WebHarness()
        try h.applyTemplates()
        let survivor = try h.contact("u-cleo", email: "cleo@example.com")
        // The anonymous contact the links were sent to was merged into the known one since (identities moved).
        let merged = try h.contact(nil, anonymousId: "anon-cleo", mergedInto: survivor)
        let delivery = try h.delivery(contact: merged, sentAt: Date().addingTimeInterval(-600))
        #expect(try h.post(path(h.links.unsubscribeURL(contactId: merged, deliveryId: delivery)), form: "List-Unsubscribe=One-Click").status == 200)
        #expect(try h.unsubscribedAt(survivor) != nil)
        #expect(try h.unsubscribedAt(merged) == nil)
        #expect(try h.consents(survivor).count == 1 && h.consents(merged).isEmpty)
        #expect(try h.get(path(h.links.openPixelURL(contactId: merged, deliveryId: delivery)), headers: Self.human).status == 200)
        #expect(try h.get(path(h.links.clickURL(contactId: merged, deliveryId: delivery, url: "https://a.example/"))).status == 302)
        // Preference changes land on the survivor too.
        let prefs = path(h.links.preferencesURL(contactId: merged))
        #expect(try h.post(prefs, form: "c=email%3Amarketing&action=save").status == 303)
        #expect(try h.unsubscribedAt(survivor) == nil, "resubscribed")
        let events = try h.events()
        #expect(events.map { $0["event"]?.stringValue ?? "" } == ["Unsubscribed", "Email Opened", "Email Clicked", "Subscription Changed"])
        #expect(events.allSatisfy { $0["userId"]?.stringValue == "u-cleo" })
    }

    @Test func preferenceCentre() throws {
        let h = try WebHarness()
        try h.applyTemplates()
        let dan = try h.contact("u-dan", email: "dan@example.com")
        let link = path(h.links.preferencesURL(contactId: dan))
        let page = try h.get(link)
        #expect(page.status == 200)
        #expect(page.text.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"))
        #expect(page.text.contains("<html lang=\"en\">"))
        // Categories per channel from the templates; transactional is not a choice.
        #expect(page.text.contains("value=\"email:marketing\" checked") && page.text.contains("value=\"sms:marketing\" checked"))
        #expect(!page.text.contains("transactional\""))
        #expect(page.text.contains("<legend>Email</legend>") && page.text.contains("<legend>Text messages (SMS)</legend>"))
        #expect(page.text.components(separatedBy: "<label for=").count == 3, "each checkbox has a label")

        // Stop SMS, keep email.
        let saved = try h.post(link, form: "c=email%3Amarketing&action=save")
        #expect(saved.status == 303)
        #expect(saved.headers["location"] == link + "?done=saved")
        #expect(try h.consents(dan) == ["marketing sms withdrawn preference-centre"])
        let after = try h.get(link + "?done=saved")
        #expect(after.text.contains("Your preferences are saved."))
        #expect(after.text.contains("value=\"email:marketing\" checked") && after.text.contains("value=\"sms:marketing\">"))
        let deliveries = DeliveryStore()
        #expect(try deliveries.blockReason(contactId: dan, channel: "sms", category: "marketing", address: "+100", on: h.db) != nil)
        #expect(try deliveries.blockReason(contactId: dan, channel: "email", category: "marketing", address: "dan@example.com", on: h.db) == nil)
        // Saving the same again changes nothing.
        #expect(try h.post(link, form: "c=email%3Amarketing&action=save").status == 303)
        #expect(try h.consents(dan).count == 1)

        // Unsubscribe from everything.
        #expect(try h.post(link, form: "c=email%3Amarketing&action=unsubscribe_all").headers["location"] == link + "?done=unsubscribed")
        #expect(try h.unsubscribedAt(dan) != nil)
        let unsubscribed = try h.get(link + "?done=unsubscribed").text
        #expect(unsubscribed.contains("You are unsubscribed from all marketing messages."))
        #expect(!unsubscribed.contains(" checked"))

        // Tick email again: resubscribed to email only.
        #expect(try h.post(link, form: "c=email%3Amarketing&action=save").status == 303)
        #expect(try h.unsubscribedAt(dan) == nil)
        #expect(try deliveries.blockReason(contactId: dan, channel: "email", category: "marketing", address: "dan@example.com", on: h.db) == nil)
        #expect(try deliveries.blockReason(contactId: dan, channel: "sms", category: "marketing", address: "+100", on: h.db) != nil)

        let events = try h.events()
        #expect(events.map { $0["event"]?.stringValue ?? "" } == ["Subscription Changed", "Unsubscribed", "Subscription Changed"])
        #expect(events[0][path: ["properties", "changes"]] == .array([.object(["channel": .string("sms"), "category": .string("marketing"), "subscribed": .bool(false)])]))
        #expect(events[2][path: ["properties", "resubscribed"]] == .bool(true))
        #expect(events.allSatisfy { $0["userId"]?.stringValue == "u-dan" })
    }

    @Test func openPixel() throws {
        let h = try WebHarness()
        let eve = try h.contact("u-eve")
        let delivery = try h.delivery(contact: eve, sentAt: Date().addingTimeInterval(-3_600))
        let pixel = path(h.links.openPixelURL(contactId: eve, deliveryId: delivery))
        let reply = try h.get(pixel, headers: Self.human)
        #expect(reply.status == 200)
        #expect(reply.headers["content-type"] == "image/gif")
        #expect(reply.body.count == 43 && reply.body.starts(with: Array("GIF89a".utf8)))
        #expect(reply.headers["cache-control"]?.contains("no-store") == true)
        // The same person again within the hour: no second event.
        #expect(try h.get(pixel, headers: Self.human).status == 200)
        // A mail proxy fetching the image is flagged (and counted apart from the person).
        #expect(try h.get(pixel, headers: ["User-Agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"]).status == 200)
        #expect(try h.get(pixel, headers: ["User-Agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"]).status == 200)
        // A delivery opened right as it was sent: a prefetch.
        let fresh = try h.delivery(contact: eve, sentAt: Date(), broadcast: 77)
        #expect(try h.get(path(h.links.openPixelURL(contactId: eve, deliveryId: fresh)), headers: Self.human).status == 200)

        let events = try h.events()
        #expect(events.map { $0["event"]?.stringValue ?? "" } == ["Email Opened", "Email Opened", "Email Opened"])
        let person = events[0]["properties"]
        #expect(person == .object(["delivery_id": .string(delivery), "template": .string("news"), "channel": .string("email"),
                                   "machine": .bool(false), "workflow": .string("welcome-series"), "step": .number(2)]))
        #expect(events[0]["userId"]?.stringValue == "u-eve")
        #expect(events[1][path: ["properties", "machine"]] == .bool(true))
        #expect(events[1][path: ["properties", "machine_reason"]]?.stringValue?.contains("googleimageproxy") == true)
        #expect(events[2][path: ["properties", "machine"]] == .bool(true))
        #expect(events[2][path: ["properties", "machine_reason"]]?.stringValue == "within 2 s of sending")
        #expect(events[2][path: ["properties", "broadcast_id"]] == .number(77))
        #expect(events[2][path: ["properties", "delivery_id"]]?.stringValue == fresh)
    }

    @Test func clickRedirectAndNoOpenRedirect() throws {
        let h = try WebHarness()
        let fay = try h.contact("u-fay")
        let delivery = try h.delivery(contact: fay, sentAt: Date().addingTimeInterval(-3_600))
        // As LinkTracking writes it into the email.
        let html = LinkTracking.rewrite(html: "<a href=\"https://shop.example/sale?x=1&amp;y=2#top\">Sale</a>", contactId: fay,
                                        deliveryId: delivery, links: h.links, utm: ["source": "newsletter", "campaign": "spring"],
                                        trackOpens: false)
        let link = try #require(html.firstMatch(of: /href="([^"]+)"/)).1
        let reply = try h.get(path(String(link)))
        #expect(reply.status == 302)
        #expect(reply.headers["location"] == "https://shop.example/sale?x=1&y=2&utm_campaign=spring&utm_source=newsletter#top")
        #expect(reply.headers["referrer-policy"] == "no-referrer")
        let events = try h.events()
        #expect(events.count == 1)
        #expect(events.first?["event"]?.stringValue == "Email Clicked")
        #expect(events.first?["userId"]?.stringValue == "u-fay")
        #expect(events.first?["properties"] == .object(["delivery_id": .string(delivery), "url": .string("https://shop.example/sale?x=1&y=2#top")]))

        // Never an open redirect: another destination under a real signature, another secret, a URL in the query,
        // a token with the destination cut, a non-http destination even when signed.
        let good = path(String(link))
        let evil = path(h.links.clickURL(contactId: fay, deliveryId: delivery, url: "https://evil.example/")).split(separator: "/")[1]
            .split(separator: ".")[0]
        let swapped = "/c/\(evil).\(good.split(separator: ".").last!)"
        let otherSecret = path(SignedLinks(publicURL: "http://x", secret: "guess").clickURL(contactId: fay, deliveryId: delivery, url: "https://evil.example/"))
        let signedJavascript = path(h.links.clickURL(contactId: fay, deliveryId: delivery, url: "javascript:alert(1)"))
        for bad in [swapped, otherSecret, signedJavascript, "/c/x?url=https://evil.example/", String(good.dropLast(2)),
                    path(h.links.openPixelURL(contactId: fay, deliveryId: delivery)).replacingOccurrences(of: "/o/", with: "/c/")] {
            let r = try h.get(bad)
            #expect(r.status == 400, "\(bad): \(r)")
            #expect(r.headers["location"] == nil)
        }
        #expect(try h.get("/c/").status == 404)
        #expect(try h.eventNames() == ["Email Clicked"])
    }

    @Test func refusesToStartWithoutSecretAndStopsOnSIGTERM() throws {
        let h = try WebHarness(start: false)
        var env = h.environment
        env["NURTURE_SECRET"] = nil
        let out = h.scratch + "/nosecret.log"
        let p = try ChildProcess(executable: try WebBinary.path(), arguments: ["web"], environment: env, stdoutPath: out)
        p.wait()
        #expect(p.exitCode == 1)
        #expect(((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains("NURTURE_SECRET is not set"))

        try h.startWeb()
        let ann = try h.contact("u-ann")
        #expect(try h.post(path(h.links.unsubscribeURL(contactId: ann, deliveryId: nil)), form: "List-Unsubscribe=One-Click").status == 200)
        #expect(h.stopWeb() == 0, "exit 0 on SIGTERM: \(h.log())")
        #expect(try h.eventNames() == ["Unsubscribed"])
    }
}
