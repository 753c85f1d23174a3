#if canImport(Glibc)
import Glibc
#endif
internal import CHiredis
import Logging
import NurtureCore

/// One connection to Redis over hiredis. Synchronous: every call blocks its thread until the reply arrives
/// (or the timeout), so use it from a dedicated thread (worker slot, scheduler thread, `BlockingExecutor`),
/// never from the Swift concurrency pool.
///
/// When the server goes away, the failing call throws `.connectionLost`/`.timeout`; the next call reconnects
/// with backoff (for up to `reconnectForMilliseconds`) before sending, re-authenticating and re-selecting the db.
public final class RedisConnection: @unchecked Sendable {
    // Safety (@unchecked Sendable): hiredis contexts are not thread-safe. A connection is confined to one user at
    // a time: it is either owned by one thread for its life, or lent out by `RedisPool`, which hands each
    // connection to one borrower at a time under its lock. Nothing here is touched concurrently.
    private var context: UnsafeMutablePointer<redisContext>?
    private var loadedScripts: Set<String> = []
    private var currentTimeout: Int64 = -1
    public let config: RedisConfig
    private let logger: Logger
    /// Incremented every time a new TCP connection is made (tests and metrics read it).
    public private(set) var connectionCount = 0

    /// Connects once; throws `.connect` at once if the server is not there (no retry loop on first contact,
    /// so a CLI pointed at the wrong place fails fast with a clear error).
    public init(config: RedisConfig, logger: Logger = Logger(label: "nurture.redis")) throws(RedisError) {
        self.config = config
        self.logger = logger
        try connectOnce()
    }

    public convenience init(url: String) throws(RedisError) {
        try self.init(config: RedisConfig(url: url))
    }

    deinit { close() }

    public var isConnected: Bool { context != nil }

    /// Closes the TCP connection; the next call reconnects.
    public func close() {
        if let c = context { redisFree(c) }
        context = nil
        loadedScripts.removeAll()
        currentTimeout = -1
    }

    // MARK: - Commands

    /// Sends one command and returns its reply; an error reply is thrown as `.server`.
    @discardableResult
    public func execute(_ command: RedisCommand, timeoutMilliseconds: Int64? = nil) throws(RedisError) -> RedisReply {
        let replies = try roundTrip(command.encoded, count: 1, timeoutMilliseconds: timeoutMilliseconds, name: command.name)
        return try replies[0].orThrow()
    }

    @discardableResult
    public func execute(_ name: String, _ arguments: RedisArgument...) throws(RedisError) -> RedisReply {
        try execute(RedisCommand(name, arguments))
    }

    /// Sends all commands in one write and reads all replies: one round trip. Error replies stay in the result
    /// (`.error`) at their position, so one bad command does not hide the others' outcome.
    public func pipeline(_ commands: [RedisCommand], timeoutMilliseconds: Int64? = nil) throws(RedisError) -> [RedisReply] {
        if commands.isEmpty { return [] }
        if commands.count == 1 {
            return try roundTrip(commands[0].encoded, count: 1, timeoutMilliseconds: timeoutMilliseconds, name: commands[0].name)
        }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(commands.reduce(0) { $0 + $1.encoded.count })
        for command in commands { buffer.append(contentsOf: command.encoded) }
        return try roundTrip(buffer, count: commands.count, timeoutMilliseconds: timeoutMilliseconds, name: "pipeline")
    }

    /// Runs a Lua script by SHA, loading it on `NOSCRIPT`.
    @discardableResult
    public func evaluate(_ script: RedisScript, keys: [RedisArgument], arguments: [RedisArgument]) throws(RedisError) -> RedisReply {
        let command = script.command(keys: keys, arguments: arguments)
        let reply = try roundTrip(command.encoded, count: 1, timeoutMilliseconds: nil, name: script.name)[0]
        if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
            try load(script)
            return try execute(command)
        }
        return try reply.orThrow()
    }

    /// A pipeline of script calls (and other commands): scripts not yet known to this connection are loaded first;
    /// any command that still answers `NOSCRIPT` (a `SCRIPT FLUSH` meanwhile) is loaded and re-run on its own.
    public func pipeline(_ commands: [RedisCommand], scripts: [RedisScript]) throws(RedisError) -> [RedisReply] {
        for script in scripts where !loadedScripts.contains(script.sha) { try load(script) }
        var replies = try pipeline(commands)
        for index in replies.indices {
            if case .error(let message) = replies[index], message.hasPrefix("NOSCRIPT") {
                for script in scripts { try load(script) }
                replies[index] = try roundTrip(commands[index].encoded, count: 1, timeoutMilliseconds: nil, name: commands[index].name)[0]
            }
        }
        return replies
    }

    /// `SCRIPT LOAD`s the script on this connection's server.
    public func load(_ script: RedisScript) throws(RedisError) {
        let reply = try execute(RedisCommand("SCRIPT", "LOAD", .string(script.source)))
        guard reply.string == script.sha else {
            throw RedisError(.unexpectedReply, "SCRIPT LOAD of \(script.name) returned \(reply), expected \(script.sha)")
        }
        loadedScripts.insert(script.sha)
    }

    // MARK: - Wire

    private func roundTrip(_ bytes: [UInt8], count: Int, timeoutMilliseconds: Int64?, name: String) throws(RedisError) -> [RedisReply] {
        try ensureConnected()
        guard let c = context else { throw RedisError(.connect, "not connected to \(config)") }
        let timeout = timeoutMilliseconds.map { $0 + config.commandTimeoutMilliseconds } ?? config.commandTimeoutMilliseconds
        if timeout != currentTimeout {
            _ = nurture_redis_set_timeout_ms(c, Int(timeout))
            currentTimeout = timeout
        }
        let appended = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { chars in
                redisAppendFormattedCommand(c, chars.baseAddress, chars.count)
            }
        }
        if appended != REDIS_OK { throw failure(during: name) }
        var replies: [RedisReply] = []
        replies.reserveCapacity(count)
        for _ in 0..<count {
            var raw: UnsafeMutableRawPointer? = nil
            if redisGetReply(c, &raw) != REDIS_OK || raw == nil { throw failure(during: name) }
            let reply = raw!.assumingMemoryBound(to: redisReply.self)
            replies.append(RedisConnection.convert(reply))
            freeReplyObject(raw)
        }
        return replies
    }

    /// Turns the context's error into a typed error and drops the (now unusable) connection.
    private func failure(during name: String) -> RedisError {
        let savedErrno = errno
        guard let c = context else { return RedisError(.connectionLost, "\(name): no connection") }
        let code = c.pointee.err
        let text = withUnsafePointer(to: &c.pointee.errstr) { pointer in
            pointer.withMemoryRebound(to: CChar.self, capacity: 128) { String(cString: $0) }
        }
        close()
        if code == REDIS_ERR_IO && (savedErrno == EAGAIN || savedErrno == EWOULDBLOCK || text.contains("temporarily unavailable")) {
            return RedisError(.timeout, "\(name) to \(config.host):\(config.port): no reply within \(currentTimeoutText)")
        }
        if code == REDIS_ERR_EOF {
            return RedisError(.connectionLost, "\(name) to \(config.host):\(config.port): server closed the connection")
        }
        return RedisError(.connectionLost, "\(name) to \(config.host):\(config.port): \(text.isEmpty ? "I/O error" : text)")
    }

    private var currentTimeoutText: String { DurationText.format(milliseconds: max(config.commandTimeoutMilliseconds, 0)) }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_STRING:
            return .bulk(r.str == nil ? [] : Array(UnsafeRawBufferPointer(start: r.str, count: r.len)))
        case REDIS_REPLY_STATUS:
            return .status(r.str == nil ? "" : String(decoding: UnsafeRawBufferPointer(start: r.str, count: r.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(r.str == nil ? "" : String(decoding: UnsafeRawBufferPointer(start: r.str, count: r.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(r.integer))
        case REDIS_REPLY_ARRAY:
            var items: [RedisReply] = []
            items.reserveCapacity(r.elements)
            for i in 0..<r.elements { items.append(convert(r.element[i]!)) }
            return .array(items)
        default:
            return .null
        }
    }

    // MARK: - Connecting

    private func ensureConnected() throws(RedisError) {
        if context != nil { return }
        let deadline = monotonicMilliseconds() + config.reconnectForMilliseconds
        let backoff = Backoff(baseMilliseconds: 50, capMilliseconds: 1_000)
        var attempt = 0
        while true {
            do {
                try connectOnce()
                if attempt > 0 { logger.info("redis reconnected", metadata: ["server": "\(config)", "attempts": "\(attempt + 1)"]) }
                return
            } catch {
                let now = monotonicMilliseconds()
                if now >= deadline || config.reconnectForMilliseconds <= 0 { throw error }
                let pause = min(Int64(backoff.delay(attempt: attempt)), deadline - now)
                if attempt == 0 { logger.warning("redis unavailable, reconnecting", metadata: ["server": "\(config)", "error": "\(error)"]) }
                attempt += 1
                sleepMilliseconds(pause)
            }
        }
    }

    private func connectOnce() throws(RedisError) {
        close()
        guard let c = nurture_redis_connect_ms(config.host, Int32(config.port), Int(config.connectTimeoutMilliseconds)) else {
            throw RedisError(.connect, "cannot allocate a hiredis context")
        }
        if c.pointee.err != 0 {
            let text = withUnsafePointer(to: &c.pointee.errstr) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 128) { String(cString: $0) }
            }
            redisFree(c)
            throw RedisError(.connect, "\(config.host):\(config.port): \(text)")
        }
        context = c
        connectionCount += 1
        do {
            if let password = config.password {
                if let user = config.username {
                    try execute(RedisCommand("AUTH", .string(user), .string(password)))
                } else {
                    try execute(RedisCommand("AUTH", .string(password)))
                }
            }
            if config.database != 0 { try execute(RedisCommand("SELECT", .int(Int64(config.database)))) }
        } catch {
            close()
            throw RedisError(.connect, "\(config): \(error)")
        }
    }
}

