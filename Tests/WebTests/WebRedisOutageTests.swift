import Channels
import Domain
import Foundation
import Redis
import Testing
import TestSupport

/// `nurture web` while its Redis is down: people still get their redirect, their pixel and their unsubscribe (the
/// consent is PostgreSQL's); only the events are lost, and logged. When Redis is back, events flow again.
@Suite struct WebRedisOutageTests {
    @Test func linksKeepWorkingWhileRedisIsDownAndEventsResumeAfter() throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        let h = try WebHarness(redisURL: server.url)
        let gil = try h.contact("u-gil", email: "gil@example.com")
        let delivery = try h.delivery(contact: gil, sentAt: Date().addingTimeInterval(-3_600))
        let click = path(h.links.clickURL(contactId: gil, deliveryId: delivery, url: "https://shop.example/"))
        #expect(try h.get(click).status == 302)
        #expect(try h.eventNames() == ["Email Clicked"])

        server.stop()
        // Redirect, pixel, one-click unsubscribe and health all answer as usual.
        let redirect = try h.get(click)
        #expect(redirect.status == 302)
        #expect(redirect.headers["location"] == "https://shop.example/")
        let pixel = try h.get(path(h.links.openPixelURL(contactId: gil, deliveryId: delivery)), headers: WebEndpointTests.human)
        #expect(pixel.status == 200 && pixel.headers["content-type"] == "image/gif")
        let unsubscribe = try h.post(path(h.links.unsubscribeURL(contactId: gil, deliveryId: delivery)), form: "List-Unsubscribe=One-Click")
        #expect(unsubscribe.status == 200)
        #expect(try h.unsubscribedAt(gil) != nil, "the unsubscribe is PostgreSQL's: it does not wait for Redis")
        #expect(try h.get("/healthz").status == 200)
        #expect(h.log().contains("redis write failed") || h.log().contains("not recorded") || h.log().contains("not written"),
                "the lost events are logged: \(h.log().suffix(2_000))")

        // Redis is back (empty: it kept nothing): the next click's event is written.
        try server.start()
        let fresh = try RedisConnection(url: server.url)
        defer { fresh.close() }
        var written = false
        let deadline = monotonicMilliseconds() + 20_000
        while !written && monotonicMilliseconds() < deadline {
            #expect(try h.get(click).status == 302)
            written = (try fresh.execute(RedisCommand("XLEN", .string("\(h.namespace):events"))).int ?? 0) > 0
            if !written { usleep(200_000) }
        }
        #expect(written, "events are written again once Redis is back: \(h.log().suffix(2_000))")
    }
}
