import Channels
import Domain
import Foundation
import TestSupport
import Testing
import Transport

@Suite(.serialized)
struct SMTPProviderTests {
    let sink: SinkProcess

    init() throws {
        Curl.globalInit()
        sink = try SinkProcess(script: "smtp_sink.py", arguments: ["--reject-rcpt", "nobody:550", "--reject-rcpt", "busy:451"])
    }

    @Test func messageArrivesWithItsHeaders() throws {
        let client = ProviderClient(try Definitions.smtpProvider(port: sink.port))
        defer { client.close() }
        let message = emailMessage(id: "1d9c7a52-2222-4222-8222-000000000001", subject: "Grüße 👋",
                                   html: "<p>Grüße 👋</p>", text: "Grüße 👋\n.a line starting with a dot",
                                   headers: [(name: "List-Unsubscribe", value: "<https://mail.acme.test/u/t>"),
                                             (name: "List-Unsubscribe-Post", value: "List-Unsubscribe=One-Click")])
        let outcomes = client.send([message], timeoutMilliseconds: 10_000)
        #expect(outcomes == [.accepted(providerMessageId: "<1d9c7a52-2222-4222-8222-000000000001@acme.test>")])

        let records = try sink.records(SMTPRecord.self)
        #expect(records.count == 1)
        let record = try #require(records.first)
        #expect(record.mail_from == "hello@acme.test")
        #expect(record.rcpt_tos == ["ann@example.com"])
        let mime = try ParsedMIME(record.data)
        #expect(mime.header("From") == "Acme <hello@acme.test>")
        #expect(mime.header("To") == "ann@example.com")
        #expect(ParsedMIME.decodeEncodedWords(try #require(mime.header("Subject"))) == "Grüße 👋")
        #expect(mime.header("Message-ID") == "<1d9c7a52-2222-4222-8222-000000000001@acme.test>")
        #expect(mime.header("List-Unsubscribe") == "<https://mail.acme.test/u/t>")
        #expect(mime.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click")
        #expect(mime.header("X-Nurture-Delivery-Id") == "1d9c7a52-2222-4222-8222-000000000001")
        #expect(mime.parts.count == 2)
        #expect(mime.parts[0].text == "Grüße 👋\r\n.a line starting with a dot")
        #expect(mime.parts[1].text == "<p>Grüße 👋</p>")
    }

    @Test func rejectedAndRetriedRecipients() throws {
        let client = ProviderClient(try Definitions.smtpProvider(port: sink.port))
        defer { client.close() }
        let outcomes = client.send([emailMessage(to: "nobody@example.com"), emailMessage(to: "busy@example.com"),
                                    emailMessage(to: "ann@example.com")])
        #expect(outcomes.count == 3)
        #expect(outcomes[0].isRejected, "550: \(outcomes[0])")
        #expect(outcomes[1].isRetry, "451: \(outcomes[1])")
        #expect(outcomes[2].isAccepted, "\(outcomes[2])")
        #expect(try sink.records(SMTPRecord.self).map(\.rcpt_tos) == [["ann@example.com"]])
    }

    @Test func connectionRefusedIsRetry() throws {
        let client = ProviderClient(try Definitions.smtpProvider(port: TestEnvironment.freePort()))
        defer { client.close() }
        #expect(client.send([emailMessage()]).allSatisfy { $0.isRetry })
    }

    @Test func credentialsFromTheEnvironment() throws {
        let authSink = try SinkProcess(script: "smtp_sink.py", arguments: ["--auth", "mailer:s3cret"])
        defer { authSink.stop() }
        let provider = try Definitions.smtpProvider(port: authSink.port)
        let client = ProviderClient(provider, environment: ["TEST_SMTP_USER": "mailer", "TEST_SMTP_PASSWORD": "s3cret"])
        defer { client.close() }
        #expect(client.send([emailMessage()]).allSatisfy { $0.isAccepted })
        #expect(try authSink.records(SMTPRecord.self).first?.login == "mailer")

        let wrong = ProviderClient(provider, environment: ["TEST_SMTP_USER": "mailer", "TEST_SMTP_PASSWORD": "nope"])
        defer { wrong.close() }
        let outcome = wrong.send([emailMessage()])
        #expect(outcome.allSatisfy { $0.isRetry }, "authentication failures retry: \(outcome)")
    }

    @Test func nonEmailIsRejected() throws {
        let client = ProviderClient(try Definitions.smtpProvider(port: sink.port))
        defer { client.close() }
        let sms = OutboundMessage(deliveryId: "s", channel: .sms, to: "+1555", contactId: "1", text: "x",
                                  source: .workflow(name: "w", step: 1))
        #expect(client.send([sms]).allSatisfy { $0.isRejected })
    }
}
