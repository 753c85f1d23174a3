import Foundation

/// Where the servers started by `ops/test` are. Tests fail loudly (never skip) when the harness is missing.
public enum TestEnvironment {
    public struct MissingServer: Error, CustomStringConvertible {
        public let variable: String
        public var description: String {
            "\(variable) is not set: run the tests through `ops/test`, which starts Redis and PostgreSQL on loopback"
        }
    }

    public static func redisURL() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["NURTURE_TEST_REDIS_URL"] else { throw MissingServer(variable: "NURTURE_TEST_REDIS_URL") }
        return url
    }

    public static func databaseURL() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["NURTURE_TEST_DATABASE_URL"] ?? ProcessInfo.processInfo.environment["NURTURE_DATABASE_URL"] else {
            throw MissingServer(variable: "NURTURE_TEST_DATABASE_URL")
        }
        return url
    }

    /// A folder for this test run's scratch files (removed by `ops/test`).
    public static var scratchDirectory: String {
        ProcessInfo.processInfo.environment["NURTURE_TEST_TMP"] ?? NSTemporaryDirectory()
    }

    /// A name no other test in this run uses: Redis namespaces, schema names, queue names.
    public static func uniqueName(_ prefix: String) -> String {
        let suffix = UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12).lowercased()
        return "\(prefix)_\(suffix)"
    }

    /// A free TCP port on 127.0.0.1 (bound then released; good enough for a test's own server).
    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
