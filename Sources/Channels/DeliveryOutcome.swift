/// What became of one message handed to a provider. Provider failures are outcomes, never thrown errors.
public enum DeliveryOutcome: Sendable, Equatable, CustomStringConvertible {
    /// The provider took the message (2xx, SMTP 250, batch result "accepted" or absent from a 2xx batch reply).
    case accepted(providerMessageId: String?)
    /// Try again later: 429, 5xx, 408, timeouts, connection errors, SMTP 4xx. `afterMilliseconds` is the provider's
    /// `Retry-After` when it sent one (else the caller's backoff decides).
    case retry(reason: String, afterMilliseconds: Int64?)
    /// Will never work: other 4xx, SMTP 5xx, a batch result "rejected", a message the provider cannot take.
    case rejected(reason: String)

    public var isAccepted: Bool { if case .accepted = self { return true }; return false }
    public var isRetry: Bool { if case .retry = self { return true }; return false }
    public var isRejected: Bool { if case .rejected = self { return true }; return false }

    public var description: String {
        switch self {
        case .accepted(let id): return "accepted\(id.map { " (\($0))" } ?? "")"
        case .retry(let reason, let after): return "retry\(after.map { " after \($0) ms" } ?? ""): \(reason)"
        case .rejected(let reason): return "rejected: \(reason)"
        }
    }
}
