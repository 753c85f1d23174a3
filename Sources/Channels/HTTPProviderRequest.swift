import Domain
import Foundation
import Transport

/// The generic HTTP provider of contract §5, as pure functions: request bodies and headers, status classification,
/// batch response parsing. `ProviderClient` sends what these build.
///
/// One message: `POST url`, `Content-Type: application/json`, `Idempotency-Key: <delivery id>`, body
/// `{"id","channel","to","contact_id","from","subject","html","text","headers":{...},"source":{...}}` with nil
/// fields left out (`to` is always written for email, sms and push). A webhook message's body is its rendered
/// `body`, sent as is. A batch (`batch: N`): `{"messages":[...]}` of those objects (webhook elements: the rendered
/// body itself when it is JSON, else the body as a JSON string); its Idempotency-Key is the delivery id of a
/// one-message batch, else `batch-` + a hash of the delivery ids in order (stable when the same batch is retried).
public enum HTTPProviderRequest {
    /// The JSON object describing one message (contract §5).
    public static func messageJSON(_ message: OutboundMessage) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256 + (message.html?.utf8.count ?? 0) + (message.text?.utf8.count ?? 0) + (message.subject?.utf8.count ?? 0))
        appendMessageJSON(message, into: &out)
        return out
    }

    static func appendMessageJSON(_ message: OutboundMessage, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        var first = true
        func key(_ name: StaticString) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
            out.append(UInt8(ascii: "\""))
            out.append(UInt8(ascii: ":"))
        }
        func string(_ name: StaticString, _ value: String?) {
            guard let value else { return }
            key(name)
            ValueJSON.write(.string(value), into: &out)
        }
        string("id", message.deliveryId)
        string("channel", message.channel.rawValue)
        if message.channel == .webhook {
            string("to", message.to)
        } else {
            key("to")
            if let to = message.to { ValueJSON.write(.string(to), into: &out) } else { out.append(contentsOf: Array("null".utf8)) }
        }
        string("contact_id", message.contactId)
        string("from", message.from)
        string("subject", message.subject)
        string("html", message.html)
        string("text", message.text)
        string("body", message.body)
        if !message.headers.isEmpty {
            key("headers")
            out.append(UInt8(ascii: "{"))
            for (index, header) in message.headers.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                ValueJSON.write(.string(header.name), into: &out)
                out.append(UInt8(ascii: ":"))
                ValueJSON.write(.string(header.value), into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
        key("source")
        switch message.source {
        case .workflow(let name, let step):
            out.append(contentsOf: Array("{\"workflow\":".utf8))
            ValueJSON.write(.string(name), into: &out)
            out.append(contentsOf: Array(",\"step\":\(step)}".utf8))
        case .broadcast(let id, let name):
            out.append(contentsOf: Array("{\"broadcast\":\(id),\"name\":".utf8))
            ValueJSON.write(.string(name), into: &out)
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "}"))
    }

    /// The request body for one message: the webhook body as is, else `messageJSON`.
    public static func body(_ message: OutboundMessage) -> [UInt8] {
        if message.channel == .webhook { return Array((message.body ?? "").utf8) }
        return messageJSON(message)
    }

    /// `{"messages":[...]}` for a batch.
    public static func batchBody<C: Collection>(_ messages: C) -> [UInt8] where C.Element == OutboundMessage {
        var out: [UInt8] = []
        out.reserveCapacity(64 + messages.count * 512)
        out.append(contentsOf: Array("{\"messages\":[".utf8))
        var first = true
        for message in messages {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            if message.channel == .webhook {
                let body = Array((message.body ?? "").utf8)
                if (try? ValueJSON.parse(body)) != nil {
                    out.append(contentsOf: trimmedJSON(body))
                } else {
                    ValueJSON.write(.string(message.body ?? ""), into: &out)
                }
            } else {
                appendMessageJSON(message, into: &out)
            }
        }
        out.append(contentsOf: Array("]}".utf8))
        return out
    }

    /// Valid JSON without its surrounding whitespace (a rendered YAML block body ends in a newline).
    private static func trimmedJSON(_ bytes: [UInt8]) -> ArraySlice<UInt8> {
        func space(_ b: UInt8) -> Bool { b == 32 || b == 9 || b == 10 || b == 13 }
        var start = 0, end = bytes.count
        if end >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { start = 3 }
        while start < end && space(bytes[start]) { start += 1 }
        while end > start && space(bytes[end - 1]) { end -= 1 }
        return bytes[start..<end]
    }

    /// The headers every provider request carries.
    public static func headers(idempotencyKey: String) -> [HTTPHeader] {
        [HTTPHeader("Content-Type", "application/json"), HTTPHeader("Idempotency-Key", idempotencyKey)]
    }

    /// The request for one message.
    public static func request(url: String, message: OutboundMessage, timeoutMilliseconds: Int64? = nil) -> HTTPRequest {
        HTTPRequest(method: "POST", url: url, headers: headers(idempotencyKey: message.deliveryId), body: body(message),
                    timeoutMilliseconds: timeoutMilliseconds)
    }

    /// The request for a batch.
    public static func batchRequest<C: Collection>(url: String, messages: C, timeoutMilliseconds: Int64? = nil) -> HTTPRequest
    where C.Element == OutboundMessage {
        HTTPRequest(method: "POST", url: url, headers: headers(idempotencyKey: batchKey(messages.map(\.deliveryId))),
                    body: batchBody(messages), timeoutMilliseconds: timeoutMilliseconds)
    }

    /// The Idempotency-Key of a batch: the one delivery id, or `batch-` + 32 hex digits of SHA-256 over the ids.
    public static func batchKey(_ deliveryIds: [String]) -> String {
        if deliveryIds.count == 1 { return deliveryIds[0] }
        var hash = SHA256()
        for id in deliveryIds {
            hash.update(id)
            hash.update(CollectionOfOne(UInt8(10)))
        }
        return "batch-" + SHA256.hexString(Array(hash.finalize().prefix(16)))
    }

    // MARK: - responses

    /// Maps a response for one message: 2xx accepted; 429, 408 and 5xx retry (with `Retry-After` on 429/503);
    /// anything else rejected. A 2xx JSON body's `message_id`/`provider_message_id`/`id` (string) is the provider's id.
    public static func outcome(_ response: HTTPResponse, now: Date = Date()) -> DeliveryOutcome {
        if response.isSuccess { return .accepted(providerMessageId: providerMessageId(in: response.body)) }
        return failure(response, now: now)
    }

    /// The outcome of a non-2xx response (shared by single and batch requests).
    public static func failure(_ response: HTTPResponse, now: Date = Date()) -> DeliveryOutcome {
        let reason = "HTTP \(response.status)\(snippet(response.body))"
        switch response.status {
        case 429, 408, 500..<600:
            var after: Int64? = nil
            if response.status == 429 || response.status == 503, let header = response.header("Retry-After") {
                after = retryAfterMilliseconds(header, now: now)
            }
            return .retry(reason: reason, afterMilliseconds: after)
        case 300..<400:
            return .rejected(reason: "\(reason) (redirects are not followed: check the provider url)")
        default:
            return .rejected(reason: reason)
        }
    }

    /// `Retry-After`: delay-seconds, or an HTTP-date (delay from `now`, at least 0).
    public static func retryAfterMilliseconds(_ value: String, now: Date = Date()) -> Int64? {
        let text = value.trimmingCharacters(in: .whitespaces)
        if let seconds = Double(text), seconds.isFinite, seconds >= 0 { return Int64((seconds * 1000).rounded()) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
            formatter.dateFormat = format
            if let date = formatter.date(from: text) {
                return max(0, Int64((date.timeIntervalSince(now) * 1000).rounded(.up)))
            }
        }
        return nil
    }

    /// Maps a batch response to one outcome per message, in order. A 2xx with `{"results":[...]}` maps each result
    /// by `id` (status `accepted` or `rejected` with its `error`; any other status retries); a message missing from
    /// the results, or a 2xx without results, is accepted. A non-2xx applies to every message.
    public static func batchOutcomes(_ response: HTTPResponse, deliveryIds: [String], now: Date = Date()) -> [DeliveryOutcome] {
        guard response.isSuccess else { return Array(repeating: failure(response, now: now), count: deliveryIds.count) }
        guard !response.body.isEmpty, let parsed = try? ValueJSON.parse(response.body),
              case .array(let results)? = parsed["results"] else {
            return Array(repeating: .accepted(providerMessageId: nil), count: deliveryIds.count)
        }
        var byId: [String: DeliveryOutcome] = [:]
        byId.reserveCapacity(results.count)
        for result in results {
            guard let id = result["id"]?.stringValue else { continue }
            let status = result["status"]?.stringValue?.lowercased() ?? "accepted"
            let error = result["error"].flatMap { $0.isNull ? nil : $0.description }
            switch status {
            case "accepted", "ok", "queued", "sent":
                byId[id] = .accepted(providerMessageId: (result["message_id"] ?? result["provider_message_id"])?.stringValue)
            case "rejected", "failed", "invalid":
                byId[id] = .rejected(reason: error ?? "rejected by the provider")
            default:
                byId[id] = .retry(reason: "batch result \(status)\(error.map { ": \($0)" } ?? "")", afterMilliseconds: nil)
            }
        }
        return deliveryIds.map { byId[$0] ?? .accepted(providerMessageId: nil) }
    }

    static func providerMessageId(in body: [UInt8]) -> String? {
        guard body.count > 1, body.count < 65_536, body.first == UInt8(ascii: "{") || body.first == 32 || body.first == 10,
              let value = try? ValueJSON.parse(body) else { return nil }
        for key in ["message_id", "provider_message_id", "id"] {
            if let id = value[key]?.stringValue, !id.isEmpty { return id }
        }
        return nil
    }

    /// `: <first 200 characters of the body>` (one line), or nothing for an empty body.
    static func snippet(_ body: [UInt8]) -> String {
        guard !body.isEmpty else { return "" }
        var text = String(decoding: body.prefix(600), as: UTF8.self)
        text = String(text.unicodeScalars.map { $0.value < 32 ? " " : Character($0) }).trimmingCharacters(in: .whitespaces)
        if text.count > 200 { text = String(text.prefix(200)) + "…" }
        return text.isEmpty ? "" : ": \(text)"
    }
}
