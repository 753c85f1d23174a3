import Channels
import Domain
import Foundation
import Testing

@Suite struct MessageComposerTests {
    static let now = Date(timeIntervalSince1970: 1_780_000_000)

    static func envelope(to: String? = "ann@example.com", unsubscribe: String? = "https://mail.acme.test/u/tok") -> Envelope {
        Envelope(deliveryId: "d-1", to: to, contactId: "u-42", from: "Acme <hello@acme.test>",
                 source: .workflow(name: "welcome", step: 1), unsubscribeURL: unsubscribe)
    }

    static let context: Value = .object([
        "contact": .object(["first_name": .string("Tom & <Jerry>"), "bio": .string("<b>bold</b>"),
                            "email": .string("tom@example.com"), "score": .number(42.6), "stage": .string("lead")]),
    ])

    @Test func htmlIsEscapedButSubjectAndTextAreNot() throws {
        let template = try Definitions.template("""
        kind: template
        name: t
        channel: email
        subject: "Hi {{ contact.first_name }}"
        html: '<p>{{ contact.first_name }}</p><p>{{ contact.bio | raw }}</p><p>{{ contact.bio }}</p>'
        text: "Hi {{ contact.first_name }} {{ contact.bio }}"
        """)
        let message = try MessageComposer.compose(template, context: Self.context, envelope: Self.envelope(), now: Self.now)
        #expect(message.subject == "Hi Tom & <Jerry>")
        #expect(message.html == "<p>Tom &amp; &lt;Jerry&gt;</p><p><b>bold</b></p><p>&lt;b&gt;bold&lt;/b&gt;</p>")
        #expect(message.text == "Hi Tom & <Jerry> <b>bold</b>")
        #expect(message.to == "ann@example.com")
        #expect(message.contactId == "u-42")
        #expect(message.deliveryId == "d-1")
        #expect(message.from == "Acme <hello@acme.test>")
        #expect(message.channel == .email)
        #expect(message.source == .workflow(name: "welcome", step: 1))
    }

    @Test func subjectIsOneLine() throws {
        let template = try Definitions.template("""
        kind: template
        name: t
        channel: email
        subject: "  Hello\\n  {{ contact.stage }}  "
        text: x
        """)
        let message = try MessageComposer.compose(template, context: Self.context, envelope: Self.envelope(), now: Self.now)
        #expect(message.subject == "Hello lead")
    }

    @Test func listUnsubscribeOnlyForMarketingEmail() throws {
        let marketing = try Definitions.template("""
        kind: template
        name: m
        channel: email
        subject: s
        html: '<a href="{{ unsubscribe_url }}">Unsubscribe</a>'
        """)
        let message = try MessageComposer.compose(marketing, context: Self.context, envelope: Self.envelope(), now: Self.now)
        #expect(message.header("List-Unsubscribe") == "<https://mail.acme.test/u/tok>")
        #expect(message.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click")
        #expect(message.headers.map(\.name) == ["List-Unsubscribe", "List-Unsubscribe-Post"])
        // The envelope's URL is offered to the template when the context has none.
        #expect(message.html == "<a href=\"https://mail.acme.test/u/tok\">Unsubscribe</a>")

        let noURL = try MessageComposer.compose(marketing, context: Self.context, envelope: Self.envelope(unsubscribe: nil), now: Self.now)
        #expect(noURL.headers.isEmpty)

        let transactional = try Definitions.template("""
        kind: template
        name: receipt
        channel: email
        category: transactional
        subject: Your receipt
        text: Thanks
        """)
        let receipt = try MessageComposer.compose(transactional, context: Self.context, envelope: Self.envelope(), now: Self.now)
        #expect(receipt.category == .transactional)
        #expect(receipt.headers.isEmpty)

        let sms = try Definitions.template("""
        kind: template
        name: s
        channel: sms
        text: "Reply STOP"
        """)
        let text = try MessageComposer.compose(sms, context: Self.context, envelope: Self.envelope(to: "+15550100"), now: Self.now)
        #expect(text.headers.isEmpty)
    }

    @Test func webhookBodyIsRenderedPlain() throws {
        let templates = try Definitions.load(try String(contentsOfFile: Self.examplesPath, encoding: .utf8))
        var notify: TemplateDefinition?
        for d in templates { if case .template(let t) = d.body, t.name == "notify-sales" { notify = t } }
        let template = try #require(notify)
        let message = try MessageComposer.compose(template, context: Self.context, envelope: Self.envelope(to: nil), now: Self.now)
        #expect(message.channel == .webhook)
        #expect(message.to == nil)
        #expect(message.subject == nil && message.html == nil && message.text == nil)
        #expect(message.body == "{\"text\": \"Hot lead: tom@example.com (score 43, stage lead)\"}\n")
        #expect(message.headers.isEmpty)
        let parsed = try ValueJSON.parse(try #require(message.body))
        #expect(parsed["text"]?.stringValue == "Hot lead: tom@example.com (score 43, stage lead)")
    }

    @Test func smsTextAndPhone() throws {
        let template = try Definitions.template("""
        kind: template
        name: cart-sms
        channel: sms
        text: "Acme: {{ event.properties.product_name | truncate: 10 }} & more"
        """)
        let context: Value = .object(["event": .object(["properties": .object(["product_name": .string("Noise-cancelling headphones")])])])
        let message = try MessageComposer.compose(template, context: context, envelope: Self.envelope(to: "+15550100"), now: Self.now)
        #expect(message.channel == .sms)
        #expect(message.to == "+15550100")
        #expect(message.text == "Acme: Noise-c... & more")
        #expect(message.html == nil && message.subject == nil)

        #expect(throws: ComposeError.self) {
            _ = try MessageComposer.compose(template, context: context, envelope: Self.envelope(to: nil), now: Self.now)
        }
    }

    @Test func pushGoesToTheContactId() throws {
        let template = try Definitions.template("""
        kind: template
        name: p
        channel: push
        text: "Like what you read?"
        """)
        let message = try MessageComposer.compose(template, context: Self.context, envelope: Self.envelope(to: nil), now: Self.now)
        #expect(message.to == "u-42")
        #expect(message.text == "Like what you read?")
    }

    @Test func emailWithoutAddressIsAComposeError() throws {
        let template = try Definitions.template("""
        kind: template
        name: t
        channel: email
        subject: s
        text: t
        """)
        let error = #expect(throws: ComposeError.self) {
            _ = try MessageComposer.compose(template, context: Self.context, envelope: Self.envelope(to: nil), now: Self.now)
        }
        #expect(error?.template == "t")
    }

    @Test func nowAndTimeZoneReachTheTemplate() throws {
        let template = try Definitions.template("""
        kind: template
        name: t
        channel: email
        subject: '{{ now | date: "%Y-%m-%d %H:%M" }}'
        text: t
        """)
        var envelope = Self.envelope()
        envelope.timeZone = TimeZone(identifier: "Asia/Tokyo")
        let utc = try MessageComposer.compose(template, context: Self.context, envelope: Self.envelope(), now: Self.now)
        let tokyo = try MessageComposer.compose(template, context: Self.context, envelope: envelope, now: Self.now)
        #expect(utc.subject == "2026-05-28 20:26")
        #expect(tokyo.subject == "2026-05-29 05:26")
    }

    static var examplesPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("examples/templates.yaml").path
    }
}
