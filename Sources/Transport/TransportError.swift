/// Everything that can go wrong sending an HTTP request or an email, typed so callers can tell "try again later"
/// from "this will never work".
///
/// An HTTP status (404, 429, 500, ...) is never an error: `HTTPClient.send` returns it as an `HTTPResponse` and the
/// caller decides. SMTP has no such split: a server reply that refuses the message is thrown as `.rejected` with
/// its reply code in `smtpCode`.
///
/// Messages name the operation and the server (URL without credentials or query string) and curl's own
/// explanation; they never hold request bodies, message contents, recipient addresses or passwords.
public struct TransportError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The URL could not be parsed, or its scheme is not one this client speaks (`http(s)://`, `smtp(s)://`).
        case invalidURL
        /// The TCP connection could not be made (refused, unreachable, name not resolved), or it broke while the
        /// request was in flight (the server may or may not have acted on it).
        case connect
        /// The connect timeout or the whole-request timeout ran out.
        case timeout
        /// The TLS handshake failed, the certificate did not verify, or STARTTLS was required but not offered.
        case tls
        /// The server answered something that is not valid HTTP/SMTP.
        case protocolError
        /// The SMTP server refused: a 5xx reply (permanent, do not retry) or a 4xx reply (transient, retry later;
        /// `isTransient` is true). `smtpCode` holds the reply code. Failed SMTP authentication is `.rejected` too.
        case rejected
        /// Anything else (bad arguments, out of memory, a callback abort, ...).
        case other
    }

    public let kind: Kind
    public let message: String
    /// The `CURLcode` behind this error, when curl reported one.
    public let curlCode: Int?
    /// The SMTP reply code (e.g. 550, 451, 535), when the error came from an SMTP reply.
    public let smtpCode: Int?

    public init(_ kind: Kind, _ message: String, curlCode: Int? = nil, smtpCode: Int? = nil) {
        self.kind = kind
        self.message = message
        self.curlCode = curlCode
        self.smtpCode = smtpCode
    }

    /// True when the same request may succeed later: connect failures, timeouts and 4xx SMTP replies.
    public var isTransient: Bool {
        switch kind {
        case .connect, .timeout: return true
        default:
            if let code = smtpCode, (400..<500).contains(code) { return true }
            return false
        }
    }

    public var description: String {
        switch kind {
        case .invalidURL: return "invalid URL: \(message)"
        case .connect: return "connection failed: \(message)"
        case .timeout: return "timed out: \(message)"
        case .tls: return "TLS failed: \(message)"
        case .protocolError: return "protocol error: \(message)"
        case .rejected: return "rejected\(smtpCode.map { " (\($0))" } ?? ""): \(message)"
        case .other: return "transport error: \(message)"
        }
    }
}
