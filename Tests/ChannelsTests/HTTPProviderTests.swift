import Channels
import Domain
import Foundation
import TestSupport
import Testing
import Transport

@Suite(.serialized)
struct HTTPProviderTests {
    let sink: SinkProcess

    init() throws {
        Curl.globalInit()
        sink = try SinkProcess(script: "http_sink.py")
    }

    var base: String { "http://127.0.0.1:\(sink.port)" }

    func json(_ record: HTTPRecord) throws -> Value { try ValueJSON.parse(record.body) }

    @Test func singleMessageBodyAndHeaders() throws {
        let client = ProviderClient(try Definitions.httpProvider("\(base)/email"))
        defer { client.close() }
        let message = emailMessage(id: "0b8e1f4c-1111-4111-8111-000000000001",
                                   headers: [(name: "List-Unsubscribe", value: "<https://x.test/u/t>")])
        #expect(client.send([message]) == [.accepted(providerMessageId: nil)])

        let records = try sink.records(HTTPRecord.self)
        #expect(records.count == 1)
        let record = records[0]
        #expect(record.method == "POST" && record.path == "/email")
        #expect(record.header("Content-Type") == "application/json")
        #expect(record.header("Idempotency-Key") == message.deliveryId)
        let body = try json(record)
        #expect(body["id"]?.stringValue == message.deliveryId)
        #expect(body["id"]?.stringValue == record.header("Idempotency-Key"))
        #expect(body["channel"]?.stringValue == "email")
        #expect(body["to"]?.stringValue == "ann@example.com")
        #expect(body["contact_id"]?.stringValue == "u-42")
        #expect(body["subject"]?.stringValue == "Hello")
        #expect(body["html"]?.stringValue == "<p>Hi</p>")
        #expect(body["text"]?.stringValue == "Hi")
        #expect(body["headers"] == .object(["List-Unsubscribe": .string("<https://x.test/u/t>")]))
        #expect(body["source"] == .object(["workflow": .string("welcome"), "step": .number(2)]))
        // The key order of contract §5.
        let text = String(decoding: record.body, as: UTF8.self)
        #expect(text.hasPrefix("{\"id\":\"\(message.deliveryId)\",\"channel\":\"email\",\"to\":\"ann@example.com\",\"contact_id\":\"u-42\","))
        #expect(text.hasSuffix(",\"source\":{\"workflow\":\"welcome\",\"step\":2}}"))
    }

    @Test func smsPushAndBroadcastBodies() throws {
        let client = ProviderClient(try Definitions.httpProvider("\(base)/sms", channel: "sms"))
        defer { client.close() }
        let sms = OutboundMessage(deliveryId: "s-1", channel: .sms, to: "+15550100", contactId: "7", text: "Hi \"there\"",
                                  source: .broadcast(id: 12, name: "spring sale"))
        let push = OutboundMessage(deliveryId: "p-1", channel: .push, to: "7", contactId: "7", text: "Ping",
                                   source: .workflow(name: "w", step: 0))
        #expect(client.send([sms, push]) == [.accepted(providerMessageId: nil), .accepted(providerMessageId: nil)])
        let records = try sink.records(HTTPRecord.self)
        #expect(records.count == 2)
        let smsBody = try json(records[0])
        #expect(smsBody == .object(["id": .string("s-1"), "channel": .string("sms"), "to": .string("+15550100"),
                                    "contact_id": .string("7"), "text": .string("Hi \"there\""),
                                    "source": .object(["broadcast": .number(12), "name": .string("spring sale")])]))
        let pushBody = try json(records[1])
        #expect(pushBody["to"]?.stringValue == "7")
        #expect(pushBody["subject"] == nil && pushBody["html"] == nil && pushBody["headers"] == nil)
        #expect(records[1].header("Idempotency-Key") == "p-1")
    }

    @Test func webhookBodyIsSentAsIs() throws {
        let client = ProviderClient(try Definitions.httpProvider("\(base)/sales", channel: "webhook"))
        defer { client.close() }
        let body = "{\"text\": \"Hot lead: ann@example.com\"}\n"
        let message = OutboundMessage(deliveryId: "w-1", channel: .webhook, to: nil, contactId: "u-1", body: body,
                                      source: .workflow(name: "sales", step: 1))
        #expect(client.send([message]) == [.accepted(providerMessageId: nil)])
        let record = try #require(try sink.records(HTTPRecord.self).first)
        #expect(record.body == Array(body.utf8))
        #expect(record.header("Idempotency-Key") == "w-1")
        #expect(record.header("Content-Type") == "application/json")
    }

    @Test func batchWithResults() throws {
        let client = ProviderClient(try Definitions.httpProvider("\(base)/batch-results", batch: 2))
        defer { client.close() }
        let messages = ["ok-1", "bad-2", "missing-3", "ok-4", "bad-5"].map { emailMessage(id: $0) }
        let outcomes = client.send(messages)
        #expect(outcomes == [
            .accepted(providerMessageId: "m-ok-1"),
            .rejected(reason: "bad recipient"),
            .accepted(providerMessageId: nil),
            .accepted(providerMessageId: "m-ok-4"),
            .rejected(reason: "bad recipient"),
        ])
        let records = try sink.records(HTTPRecord.self)
        #expect(records.count == 3)   // 2 + 2 + 1
        let first = try json(records[0])
        guard case .array(let items)? = first["messages"] else { Issue.record("no messages array"); return }
        #expect(items.compactMap { $0["id"]?.stringValue } == ["ok-1", "bad-2"])
        #expect(items[0]["channel"]?.stringValue == "email")
        #expect(records[0].header("Idempotency-Key") == HTTPProviderRequest.batchKey(["ok-1", "bad-2"]))
        #expect(records[2].header("Idempotency-Key") == "bad-5")   // a batch of one keeps the delivery id
        // The same batch retried gets the same key; another batch another.
        #expect(HTTPProviderRequest.batchKey(["ok-1", "bad-2"]) == HTTPProviderRequest.batchKey(["ok-1", "bad-2"]))
        #expect(HTTPProviderRequest.batchKey(["ok-1", "bad-2"]) != HTTPProviderRequest.batchKey(["ok-1", "bad-3"]))
    }

    @Test func batchWithoutResultsAcceptsAllAndWebhookElementsAreTheBodies() throws {
        let client = ProviderClient(try Definitions.httpProvider("\(base)/ads", channel: "webhook", batch: 500))
        defer { client.close() }
        let messages = [
            OutboundMessage(deliveryId: "a", channel: .webhook, to: nil, contactId: "1", body: "{\"email_sha256\": \"x\"}\n",
                            source: .workflow(name: "w", step: 1)),
            OutboundMessage(deliveryId: "b", channel: .webhook, to: nil, contactId: "2", body: "not json",
                            source: .workflow(name: "w", step: 1)),
        ]
        #expect(client.send(messages) == [.accepted(providerMessageId: nil), .accepted(providerMessageId: nil)])
        let record = try #require(try sink.records(HTTPRecord.self).first)
        #expect(String(decoding: record.body, as: UTF8.self) == "{\"messages\":[{\"email_sha256\": \"x\"},\"not json\"]}")
    }

    @Test func statusClassification() throws {
        let cases: [(String, DeliveryOutcome)] = [
            ("/status/500", .retry(reason: "HTTP 500: status 500", afterMilliseconds: nil)),
            ("/status/503", .retry(reason: "HTTP 503: status 503", afterMilliseconds: nil)),
            ("/status/408", .retry(reason: "HTTP 408: status 408", afterMilliseconds: nil)),
            ("/status/400", .rejected(reason: "HTTP 400: status 400")),
            ("/status/422", .rejected(reason: "HTTP 422: status 422")),
            ("/retry-after/429/2", .retry(reason: "HTTP 429: status 429", afterMilliseconds: 2000)),
            ("/retry-after/503/7", .retry(reason: "HTTP 503: status 503", afterMilliseconds: 7000)),
            ("/status/429", .retry(reason: "HTTP 429: status 429", afterMilliseconds: nil)),
            ("/provider-id", .accepted(providerMessageId: "prov-1")),
        ]
        for (path, expected) in cases {
            let client = ProviderClient(try Definitions.httpProvider(base + path))
            #expect(client.send([emailMessage()]) == [expected], "\(path)")
            client.close()
        }
        // A failed batch applies to each of its messages.
        let batch = ProviderClient(try Definitions.httpProvider("\(base)/retry-after/429/2", batch: 10))
        #expect(batch.send([emailMessage(), emailMessage()]) == Array(repeating: .retry(reason: "HTTP 429: status 429", afterMilliseconds: 2000), count: 2))
        batch.close()
    }

    @Test func connectionRefusedIsRetry() throws {
        let port = TestEnvironment.freePort()
        let client = ProviderClient(try Definitions.httpProvider("http://127.0.0.1:\(port)/email"))
        defer { client.close() }
        let outcomes = client.send([emailMessage(), emailMessage()])
        #expect(outcomes.count == 2)
        #expect(outcomes.allSatisfy { $0.isRetry })
        // A URL the client cannot speak will never work.
        #expect(ProviderClient.outcome(of: TransportError(.invalidURL, "bad")).isRejected)
        #expect(ProviderClient.outcome(of: TransportError(.timeout, "slow")).isRetry)
        #expect(ProviderClient.outcome(of: TransportError(.rejected, "no", smtpCode: 552)).isRejected)
        #expect(ProviderClient.outcome(of: TransportError(.rejected, "later", smtpCode: 421)).isRetry)
    }

    @Test func keepsTheConnectionOpen() throws {
        let client = ProviderClient(try Definitions.httpProvider("\(base)/email"))
        defer { client.close() }
        for _ in 0..<5 { #expect(client.send([emailMessage()]).allSatisfy { $0.isAccepted }) }
        #expect(client.connectionsOpened == 1)
    }

    @Test func credentialsFromTheEnvironment() throws {
        let provider = try Definitions.provider("""
        kind: provider
        name: api
        channel: email
        type: http
        url: "\(base)/email"
        password_env: TEST_API_KEY
        """)
        let client = ProviderClient(provider, environment: ["TEST_API_KEY": "sekret"])
        defer { client.close() }
        #expect(client.send([emailMessage()]).allSatisfy { $0.isAccepted })
        #expect(try sink.records(HTTPRecord.self).first?.header("Authorization") == "Bearer sekret")
    }

    @Test func retryAfterParsing() {
        let now = Date(timeIntervalSince1970: 1_748_944_800)
        #expect(HTTPProviderRequest.retryAfterMilliseconds("2", now: now) == 2000)
        #expect(HTTPProviderRequest.retryAfterMilliseconds(" 0 ", now: now) == 0)
        #expect(HTTPProviderRequest.retryAfterMilliseconds("Tue, 03 Jun 2025 10:00:30 GMT", now: now) == 30_000)
        #expect(HTTPProviderRequest.retryAfterMilliseconds("soon", now: now) == nil)
    }
}
