import Redis
import Testing

@Suite struct RedisConfigTests {
    @Test func parsesFullURL() throws {
        let c = try RedisConfig(url: "redis://:s%40cret@cache.local:6380/3?timeout=2s&connect_timeout=500ms&reconnect_for=1m")
        #expect(c.host == "cache.local")
        #expect(c.port == 6380)
        #expect(c.password == "s@cret")
        #expect(c.username == nil)
        #expect(c.database == 3)
        #expect(c.commandTimeoutMilliseconds == 2_000)
        #expect(c.connectTimeoutMilliseconds == 500)
        #expect(c.reconnectForMilliseconds == 60_000)
        #expect(c.description == "redis://:***@cache.local:6380/3")
    }

    @Test func parsesUserAndDefaults() throws {
        let c = try RedisConfig(url: "redis://app:pw@10.0.0.1")
        #expect(c.username == "app" && c.password == "pw" && c.port == 6379 && c.database == 0)
        let d = try RedisConfig(url: "redis://127.0.0.1:6379/0")
        #expect(d.password == nil && d.database == 0)
    }

    @Test(arguments: ["http://x", "redis://h:notaport/0", "redis://h:6379/x", "redis://h/0?bogus=1", "rediss://h:6379"])
    func rejectsBadURLs(url: String) {
        #expect(throws: RedisError.self) { try RedisConfig(url: url) }
        do { _ = try RedisConfig(url: url) } catch {
            #expect(error.kind == .invalidURL)
            #expect(error.description.contains("invalid Redis URL"))
        }
    }

    @Test func commandEncodingIsRESP() {
        let c = RedisCommand("SET", "k", .bytes([0, 13, 10, 255]), 42)
        let expected: [UInt8] = Array("*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n".utf8) + [0, 13, 10, 255] + Array("\r\n$2\r\n42\r\n".utf8)
        #expect(c.encoded == expected)
    }
}
