import Foundation
import NurtureCore
import Redis
import Testing
import TestSupport

@Suite struct RedisConnectionTests {
    func connect() throws -> (RedisConnection, String) {
        (try RedisConnection(url: try TestEnvironment.redisURL()), TestEnvironment.uniqueName("t"))
    }

    @Test func setGetIsBinarySafe() throws {
        let (redis, key) = try connect()
        let value: [UInt8] = (0...255).map(UInt8.init) + Array("héllo 🎉\r\n".utf8)
        try redis.execute(RedisCommand("SET", .string(key), .bytes(value)))
        let got = try redis.execute(RedisCommand("GET", .string(key)))
        #expect(got.bytes == value)
        #expect(try redis.execute(RedisCommand("GET", .string(key + ":missing"))).isNull)
        try redis.execute("DEL", .string(key))
    }

    @Test func pipelineIsOneRoundTripWithErrorsInPlace() throws {
        let (redis, key) = try connect()
        var commands: [RedisCommand] = []
        for i in 0..<1_000 { commands.append(RedisCommand("RPUSH", .string(key), .int(Int64(i)))) }
        commands.append(RedisCommand("INCR", .string(key)))   // WRONGTYPE: stays in place
        commands.append(RedisCommand("LLEN", .string(key)))
        let replies = try redis.pipeline(commands)
        #expect(replies.count == 1_002)
        #expect(replies[999].int == 1_000)
        guard case .error(let message) = replies[1_000] else { Issue.record("expected an error reply"); return }
        #expect(message.hasPrefix("WRONGTYPE"))
        #expect(replies[1_001].int == 1_000)
        #expect(redis.connectionCount == 1)
        try redis.execute("DEL", .string(key))
    }

    @Test func serverErrorsAreTyped() throws {
        let (redis, key) = try connect()
        try redis.execute("SET", .string(key), "x")
        let error = captureError(RedisError.self) { try redis.execute("INCR", .string(key)) }
        #expect(error?.kind == .server)
        #expect(error?.serverCode == "ERR")
        #expect(error?.isTransient == false)
        // The connection is still usable after a server error.
        #expect(try redis.execute("GET", .string(key)).string == "x")
        try redis.execute("DEL", .string(key))
    }

    @Test func luaScriptBySHAReloadsAfterFlush() throws {
        let (redis, key) = try connect()
        let script = RedisScript(name: "incr-by", source: "return redis.call('INCRBY', KEYS[1], ARGV[1])")
        #expect(try redis.evaluate(script, keys: [.string(key)], arguments: [5]).int == 5)
        // Another client flushes the script cache (or the server restarts): NOSCRIPT → load → run.
        let other = try RedisConnection(url: try TestEnvironment.redisURL())
        try other.execute("SCRIPT", "FLUSH")
        #expect(try redis.evaluate(script, keys: [.string(key)], arguments: [2]).int == 7)
        // Pipelined script calls.
        let replies = try redis.pipeline((0..<10).map { _ in script.command(keys: [.string(key)], arguments: [1]) }, scripts: [script])
        #expect(replies.last?.int == 17)
        try redis.execute("DEL", .string(key))
    }

    @Test func blockingReadTimesOutWithNullNotError() throws {
        let (redis, key) = try connect()
        let started = Date()
        let reply = try redis.execute(RedisCommand("XREAD", "BLOCK", 200, "STREAMS", .string(key), "$"), timeoutMilliseconds: 200)
        #expect(reply.isNull)
        #expect(Date().timeIntervalSince(started) >= 0.15)
    }

    @Test func commandTimeoutIsTypedAndConnectionRecovers() throws {
        let server = try RedisServerProcess(extraArguments: ["--enable-debug-command", "yes"])
        var config = try RedisConfig(url: server.url)
        config.commandTimeoutMilliseconds = 200
        let redis = try RedisConnection(config: config)
        let error = captureError(RedisError.self) { try redis.execute("DEBUG", "SLEEP", "1") }
        #expect(error?.kind == .timeout)
        #expect(error?.isTransient == true)
        sleepMilliseconds(900)
        #expect(try redis.execute("PING").string == "PONG")
        #expect(redis.connectionCount == 2)
    }

    @Test func refusedConnectionFailsFastAndTyped() throws {
        let port = TestEnvironment.freePort()
        let started = Date()
        let error = captureError(RedisError.self) { _ = try RedisConnection(url: "redis://127.0.0.1:\(port)/0") }
        #expect(error?.kind == .connect)
        #expect(error?.description.contains("127.0.0.1:\(port)") == true)
        #expect(Date().timeIntervalSince(started) < 2)
    }

    @Test func passwordAndDatabaseAreApplied() throws {
        let server = try RedisServerProcess(extraArguments: ["--requirepass", "p@ss word"])
        let noAuth = captureError(RedisError.self) { _ = try RedisConnection(url: server.url).execute("PING") }
        #expect(noAuth?.kind == .server)
        #expect(noAuth?.description.contains("NOAUTH") == true)
        let redis = try RedisConnection(url: "redis://:p%40ss%20word@127.0.0.1:\(server.port)/5")
        try redis.execute("SET", "where", "db5")
        #expect(try redis.execute("CLIENT", "INFO").string?.contains("db=5") == true)
        let wrong = captureError(RedisError.self) { _ = try RedisConnection(url: "redis://:wrong@127.0.0.1:\(server.port)/0") }
        #expect(wrong?.kind == .connect)
        #expect(wrong?.description.contains("wrong") == false)
    }

    @Test func reconnectsAfterServerRestart() throws {
        let server = try RedisServerProcess(appendOnly: true)
        var config = try RedisConfig(url: server.url)
        config.reconnectForMilliseconds = 10_000
        let redis = try RedisConnection(config: config)
        try redis.execute("SET", "before", "1")
        server.stop()
        // The in-flight call fails with a typed, transient error...
        let lost = captureError(RedisError.self) { try redis.execute("GET", "before") }
        #expect(lost?.isTransient == true)
        // ...and once the server is back, the next call reconnects by itself (with backoff) and sees the AOF data.
        let restarter = Thread { sleepMilliseconds(300); try? server.start() }
        restarter.start()
        #expect(try redis.execute("GET", "before").string == "1")
        #expect(redis.connectionCount >= 2)
        // Scripts are loaded again on the new server.
        let script = RedisScript(name: "echo", source: "return ARGV[1]")
        #expect(try redis.evaluate(script, keys: [], arguments: ["hi"]).string == "hi")
    }

    @Test func poolLendsOneConnectionPerBorrower() async throws {
        let pool = RedisPool(config: try RedisConfig(url: try TestEnvironment.redisURL()), maximumConnections: 3)
        let key = TestEnvironment.uniqueName("pool")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<20 {
                group.addTask {
                    _ = try await pool.withConnection(on: .shared) { redis in try redis.execute("INCR", .string(key)) }
                }
            }
            try await group.waitForAll()
        }
        let total = try await pool.withConnection(on: .shared) { redis in try redis.execute("GET", .string(key)).int }
        #expect(total == 20)
        pool.close()
    }
}
