import Foundation
import Logging
import Postgres
import Redis

/// The process configuration of contract §2, read from the environment (12-factor); flags may override fields.
public struct NurtureConfig: Sendable {
    public var redisURL: String
    public var databaseURL: String
    public var namespace: String
    public var secret: String?
    public var logLevel: Logger.Level
    public var webPort: Int
    public var publicURL: String
    public var metricsPort: Int?
    /// `NURTURE_ALLOW_TIME_TRAVEL=1`: the installation clock's offset (contract §7) is honoured and may be moved.
    public var allowTimeTravel: Bool

    public struct Invalid: Error, CustomStringConvertible {
        public let variable: String
        public let reason: String
        public var description: String { "\(variable): \(reason)" }
    }

    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> NurtureConfig {
        func port(_ name: String, _ fallback: Int?) throws -> Int? {
            guard let text = env[name], !text.isEmpty else { return fallback }
            guard let value = Int(text), (1...65535).contains(value) else {
                throw Invalid(variable: name, reason: "\"\(text)\" is not a TCP port (1-65535)")
            }
            return value
        }
        let levelText = (env["NURTURE_LOG_LEVEL"] ?? "info").lowercased()
        guard let level = Logger.Level(rawValue: levelText == "warn" ? "warning" : levelText) else {
            throw Invalid(variable: "NURTURE_LOG_LEVEL", reason: "\"\(levelText)\" is not one of trace, debug, info, notice, warning, error, critical")
        }
        let namespace = env["NURTURE_NAMESPACE"].flatMap { $0.isEmpty ? nil : $0 } ?? "nurture"
        guard namespace.utf8.allSatisfy({ $0 > 32 && $0 < 127 && $0 != UInt8(ascii: "{") && $0 != UInt8(ascii: "}") }) else {
            throw Invalid(variable: "NURTURE_NAMESPACE", reason: "\"\(namespace)\" must be printable ASCII without spaces or braces")
        }
        let redisURL = env["NURTURE_REDIS_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? RedisConfig.defaultURL
        do { _ = try RedisConfig(url: redisURL) } catch { throw Invalid(variable: "NURTURE_REDIS_URL", reason: "\(error)") }
        return NurtureConfig(
            redisURL: redisURL,
            databaseURL: PostgresURL.fromEnvironment(env),
            namespace: namespace,
            secret: env["NURTURE_SECRET"].flatMap { $0.isEmpty ? nil : $0 },
            logLevel: level,
            webPort: try port("NURTURE_WEB_PORT", 8080) ?? 8080,
            publicURL: env["NURTURE_PUBLIC_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? "http://127.0.0.1:8080",
            metricsPort: try port("NURTURE_METRICS_PORT", nil),
            allowTimeTravel: env["NURTURE_ALLOW_TIME_TRAVEL"] == "1" || env["NURTURE_ALLOW_TIME_TRAVEL"]?.lowercased() == "true"
        )
    }

    public var redisConfig: RedisConfig {
        // Validated in fromEnvironment; a config built by hand falls back to the default.
        (try? RedisConfig(url: redisURL)) ?? RedisConfig()
    }
}
