import Foundation
import NurtureCore

/// Where and how to reach Redis, parsed from `NURTURE_REDIS_URL`:
/// `redis://[[user]:password@]host[:port][/db][?connect_timeout=2s&timeout=5s&reconnect_for=10s]`.
public struct RedisConfig: Sendable, Equatable, CustomStringConvertible {
    public var host: String = "127.0.0.1"
    public var port: Int = 6379
    public var username: String? = nil
    public var password: String? = nil
    public var database: Int = 0
    /// How long a TCP connect may take.
    public var connectTimeoutMilliseconds: Int64 = 2_000
    /// How long one command may wait for its reply (blocking commands add their own block time to this).
    public var commandTimeoutMilliseconds: Int64 = 5_000
    /// After the server goes away, how long a call keeps reconnecting (with backoff) before it gives up.
    public var reconnectForMilliseconds: Int64 = 10_000

    public init(host: String = "127.0.0.1", port: Int = 6379, database: Int = 0) {
        self.host = host
        self.port = port
        self.database = database
    }

    public static let defaultURL = "redis://127.0.0.1:6379/0"

    public init(url: String) throws(RedisError) {
        func bad(_ why: String) -> RedisError {
            RedisError(.invalidURL, "invalid Redis URL \"\(RedisConfig.redact(url))\": \(why) (expected redis://[:password@]host:port/db)")
        }
        guard url.hasPrefix("redis://") else {
            if url.hasPrefix("rediss://") { throw bad("TLS (rediss://) needs a TLS proxy such as stunnel or spiped with hiredis 0.14; point Nurture at the proxy's redis:// address") }
            throw bad("scheme must be redis://")
        }
        var rest = Substring(url.dropFirst("redis://".count))
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") { query = rest[rest.index(after: q)...]; rest = rest[..<q] }
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") { path = rest[rest.index(after: slash)...]; rest = rest[..<slash] }
        if let at = rest.lastIndex(of: "@") {
            let userinfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userinfo.firstIndex(of: ":") {
                let user = String(userinfo[..<colon])
                username = user.isEmpty ? nil : percentDecode(user)
                password = percentDecode(String(userinfo[userinfo.index(after: colon)...]))
            } else if !userinfo.isEmpty {
                password = percentDecode(String(userinfo))
            }
        }
        if rest.hasPrefix("[") , let close = rest.firstIndex(of: "]") {
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            rest = rest[rest.index(after: close)...]
            if rest.hasPrefix(":") {
                guard let p = Int(rest.dropFirst()), (1...65535).contains(p) else { throw bad("port must be 1-65535") }
                port = p
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else { throw bad("port must be 1-65535") }
            port = p
        } else {
            host = String(rest)
        }
        if host.isEmpty { host = "127.0.0.1" }
        if !path.isEmpty {
            guard let db = Int(path), db >= 0 else { throw bad("database must be a number, got \"\(path)\"") }
            database = db
        }
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1)
            let key = String(parts[0])
            let value = parts.count > 1 ? String(parts[1]) : ""
            let ms: Int64
            do { ms = try DurationText.milliseconds(value) } catch { throw bad("\(key): \(error)") }
            switch key {
            case "connect_timeout": connectTimeoutMilliseconds = ms
            case "timeout": commandTimeoutMilliseconds = ms
            case "reconnect_for": reconnectForMilliseconds = ms
            default: throw bad("unknown option \"\(key)\" (known: connect_timeout, timeout, reconnect_for)")
            }
        }
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    public var description: String {
        let auth = password == nil ? "" : "\(username ?? ""):***@"
        return "redis://\(auth)\(host):\(port)/\(database)"
    }

    static func redact(_ url: String) -> String {
        guard let at = url.lastIndex(of: "@"), let scheme = url.range(of: "://") else { return url }
        return String(url[..<scheme.upperBound]) + "***" + String(url[at...])
    }

    private func percentDecode(_ s: String) -> String {
        var bytes: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == UInt8(ascii: "%"), it.count >= 2, let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(v); it = it.dropFirst(2)
            } else { bytes.append(b) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
