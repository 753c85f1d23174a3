/// Everything that can go wrong talking to Redis, typed so callers can tell a dead server from a bad command.
public struct RedisError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// `NURTURE_REDIS_URL` could not be parsed.
        case invalidURL
        /// The TCP connection could not be made (refused, unreachable, connect timeout), even after reconnecting.
        case connect
        /// The connection broke while a command was in flight; the command may or may not have run.
        case connectionLost
        /// No reply within the command timeout.
        case timeout
        /// The server replied with an error (`ERR`, `WRONGTYPE`, `NOSCRIPT`, `BUSYGROUP`, ...).
        case server
        /// The reply did not have the shape the caller expected.
        case unexpectedReply
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// For `.server` errors, the error code Redis put first (`ERR`, `NOSCRIPT`, `BUSYGROUP`, `WRONGTYPE`, ...).
    public var serverCode: String? {
        guard kind == .server else { return nil }
        return message.split(separator: " ", maxSplits: 1).first.map(String.init)
    }

    /// True when retrying on a fresh connection may succeed.
    public var isTransient: Bool { kind == .connect || kind == .connectionLost || kind == .timeout }

    public var description: String {
        switch kind {
        case .invalidURL: return message
        case .connect: return "Redis connect failed: \(message)"
        case .connectionLost: return "Redis connection lost: \(message)"
        case .timeout: return "Redis timed out: \(message)"
        case .server: return "Redis error: \(message)"
        case .unexpectedReply: return "unexpected Redis reply: \(message)"
        }
    }
}
