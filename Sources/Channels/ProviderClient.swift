import Domain
import Foundation
import Transport

/// Sends messages through one provider (contract §5). One per worker slot thread: it is not `Sendable` and reuses
/// its curl handle (HTTP keep-alive, an open SMTP session) from one send to the next. Every call blocks the calling
/// thread, so call it from a dedicated thread, never from the Swift concurrency pool.
///
/// - `type: http`: one `POST url` per message, or with `batch: N` one POST of `{"messages":[...]}` per N messages
///   (see `HTTPProviderRequest`). With `password_env` the request carries `Authorization: Bearer <password>`, or
///   HTTP Basic when `username_env` is set too.
/// - `type: smtp`: MIME (`MIMEMessage`) through `SMTPClient`; the envelope sender is the address of the provider's
///   `from` (else the message's); the `From` header is the message's `from` (else the provider's); credentials from
///   the environment variables named by `username_env` / `password_env`.
///
/// Outcomes: 2xx / SMTP 250 accepted; 429, 408, 5xx, timeouts, connection and TLS failures and SMTP 4xx retry
/// (`Retry-After` honoured on 429/503); other 4xx and SMTP 5xx rejected — except SMTP authentication failures
/// (530, 534, 535, 538), which retry: they are the provider's configuration, not the message.
public final class ProviderClient {
    public let provider: ProviderDefinition
    private let username: String?
    private let password: String?
    private var http: HTTPClient?
    private var smtp: SMTPClient?
    private var smtpTimeoutMilliseconds: Int64 = 0

    public init(_ provider: ProviderDefinition, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.provider = provider
        self.username = provider.usernameEnv.flatMap { environment[$0] }.flatMap { $0.isEmpty ? nil : $0 }
        self.password = provider.passwordEnv.flatMap { environment[$0] }.flatMap { $0.isEmpty ? nil : $0 }
    }

    deinit { close() }

    /// TCP connections (or SMTP sessions) opened so far: stays 1 while the provider keeps the connection alive.
    public var connectionsOpened: Int { (http?.connectionsOpened ?? 0) + (smtp?.connectionsOpened ?? 0) }

    /// Sends messages (all for this provider). http: one POST per message, or with `batch: N` POSTs of
    /// {"messages":[...]} of up to N; webhook channel: the rendered body as is. smtp: MIME via SMTPClient.
    /// Returns one outcome per message, in order. Never throws for a provider failure (that is an outcome).
    public func send(_ messages: [OutboundMessage], timeoutMilliseconds: Int64 = 10_000) -> [DeliveryOutcome] {
        guard !messages.isEmpty else { return [] }
        switch provider.type {
        case .http:
            if let size = provider.batch, size >= 1 {
                var outcomes: [DeliveryOutcome] = []
                outcomes.reserveCapacity(messages.count)
                var start = 0
                while start < messages.count {
                    let end = min(start + size, messages.count)
                    outcomes += sendBatch(messages[start..<end], timeoutMilliseconds: timeoutMilliseconds)
                    start = end
                }
                return outcomes
            }
            return messages.map { sendOne($0, timeoutMilliseconds: timeoutMilliseconds) }
        case .smtp:
            return messages.map { sendMail($0, timeoutMilliseconds: timeoutMilliseconds) }
        }
    }

    /// Closes the kept-alive connection (HTTP) or ends the SMTP session; the next send opens a new one.
    public func close() {
        http?.close()
        smtp?.close()
    }

    // MARK: - http

    private func httpClient() -> HTTPClient {
        if let http { return http }
        let client = HTTPClient()
        http = client
        return client
    }

    private func authorize(_ request: inout HTTPRequest) {
        guard let password else { return }
        if let username {
            request.setHeader("Authorization", "Basic " + Data("\(username):\(password)".utf8).base64EncodedString())
        } else {
            request.setHeader("Authorization", "Bearer \(password)")
        }
    }

    private func sendOne(_ message: OutboundMessage, timeoutMilliseconds: Int64) -> DeliveryOutcome {
        var request = HTTPProviderRequest.request(url: provider.url, message: message, timeoutMilliseconds: timeoutMilliseconds)
        authorize(&request)
        do throws(TransportError) {
            let response = try httpClient().send(request)
            return HTTPProviderRequest.outcome(response)
        } catch {
            return ProviderClient.outcome(of: error)
        }
    }

    private func sendBatch(_ messages: ArraySlice<OutboundMessage>, timeoutMilliseconds: Int64) -> [DeliveryOutcome] {
        var request = HTTPProviderRequest.batchRequest(url: provider.url, messages: messages, timeoutMilliseconds: timeoutMilliseconds)
        authorize(&request)
        do throws(TransportError) {
            let response = try httpClient().send(request)
            return HTTPProviderRequest.batchOutcomes(response, deliveryIds: messages.map(\.deliveryId))
        } catch {
            return Array(repeating: ProviderClient.outcome(of: error), count: messages.count)
        }
    }

    // MARK: - smtp

    private func smtpClient(timeoutMilliseconds: Int64) -> SMTPClient {
        if let smtp, smtpTimeoutMilliseconds == timeoutMilliseconds { return smtp }
        smtp?.close()
        let config = SMTPConfig(url: provider.url, username: username, password: password,
                                connectTimeoutMilliseconds: min(5_000, max(timeoutMilliseconds, 1)),
                                timeoutMilliseconds: timeoutMilliseconds)
        let client = SMTPClient(config: config)
        smtp = client
        smtpTimeoutMilliseconds = timeoutMilliseconds
        return client
    }

    private func sendMail(_ message: OutboundMessage, timeoutMilliseconds: Int64) -> DeliveryOutcome {
        guard message.channel == .email else {
            return .rejected(reason: "provider \(provider.name) is smtp: it sends email, not \(message.channel.rawValue)")
        }
        guard let to = message.to, !to.isEmpty else { return .rejected(reason: "no recipient address") }
        let headerFrom = message.from ?? provider.from
        guard let envelopeFrom = (provider.from ?? message.from).map({ MIMEMessage.parseAddress($0).address }), !envelopeFrom.isEmpty else {
            return .rejected(reason: "no sender: set from: on provider \(provider.name), the template or the settings")
        }
        let recipient = MIMEMessage.parseAddress(to).address
        let mime = MIMEMessage.render(message, from: headerFrom, date: Date())
        do throws(TransportError) {
            try smtpClient(timeoutMilliseconds: timeoutMilliseconds).send(from: envelopeFrom, to: [recipient], message: mime)
            return .accepted(providerMessageId: MIMEMessage.messageID(deliveryId: message.deliveryId, from: envelopeFrom))
        } catch {
            return ProviderClient.outcome(of: error)
        }
    }

    // MARK: - errors

    /// A transport failure as an outcome: bad URLs and invalid requests are rejected (they will never work),
    /// SMTP 5xx replies rejected (authentication failures retry), everything else retries.
    public static func outcome(of error: TransportError) -> DeliveryOutcome {
        switch error.kind {
        case .invalidURL, .other:
            return .rejected(reason: error.description)
        case .rejected:
            if let code = error.smtpCode {
                if (400..<500).contains(code) || [530, 534, 535, 538].contains(code) {
                    return .retry(reason: error.description, afterMilliseconds: nil)
                }
                return .rejected(reason: error.description)
            }
            return .retry(reason: error.description, afterMilliseconds: nil)
        case .connect, .timeout, .tls, .protocolError:
            return .retry(reason: error.description, afterMilliseconds: nil)
        }
    }
}
