import Domain
import Foundation
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// One request the sink received (handed to `DevSink.onRequest`, e.g. so a benchmark can timestamp arrivals).
public struct SinkRecord: Sendable {
    /// When the whole request had arrived.
    public let at: Date
    public let method: String
    /// The request path, without the query string.
    public let path: String
    /// The `Idempotency-Key` header (the delivery id for `type: http` providers).
    public let idempotencyKey: String?
    /// The status the sink answered.
    public let status: Int
    public let body: [UInt8]
    /// The body parsed as JSON; nil when it is empty or not JSON, or when the sink does not parse bodies
    /// (`parseBodies: false`: only the message ids are read).
    public let json: Value?
    /// `id`s of the messages: every element of a batch body (`{"messages":[...]}`), else the body's own `id`.
    public let messageIDs: [String]
    /// Messages in the request: the batch size for `{"messages":[...]}`, else 1.
    public let messageCount: Int
}

/// `nurture sink`: a local HTTP server standing in for email/SMS/push/webhook providers in demos and benchmarks.
///
/// Accepts any method on any path and answers `200 {"status":"accepted"}`; a batch body `{"messages":[...]}` gets
/// `{"results":[{"id":ID,"status":"accepted"},...]}` (contract §5). Each request can be appended to a JSON-lines log
/// (`{"at","path","idempotency_key","body","method","status"}`, written with one `write(2)` per line so a reader can
/// tail it) and summarised on stdout. `failEvery` answers 503 to every Nth request; `statusForPath` forces a status
/// for a path (e.g. `/sms` → 500 to watch retries, 400 for permanent failures).
///
/// In-process use (benchmarks): `let sink = try DevSink(port: 0)`, run `sink.run()` in a task, `await
/// sink.waitUntilListening()` for the bound port, read `acceptedCount` / `acceptedMessageCount`, cancel the task to stop.
/// It is also a swift-service-lifecycle `Service`: in a `ServiceGroup` it stops on graceful shutdown.
public final class DevSink: Service, Sendable {
    public let host: String
    /// The port asked for (0 = any free port; see `listeningPort`).
    public let port: Int
    public let quiet: Bool
    /// Answer 503 to every Nth request (0 = never).
    public let failEvery: Int
    /// Paths answered with a fixed status instead of 200 (a 2xx status still accepts).
    public let statusForPath: [String: Int]
    /// False: without a log or stdout, only the message ids are read from a body (`MessageIDScan`), not a `Value`
    /// tree (a benchmark's sink, so its CPU stays out of the measured fleet's way).
    public let parseBodies: Bool
    private let onRequest: (@Sendable (SinkRecord) -> Void)?
    private let log: LineWriter?
    private let stdout: LineWriter?

    private let requests = Atomic<Int>(0)
    private let accepted = Atomic<Int>(0)
    private let acceptedMessages = Atomic<Int>(0)
    private let rejected = Atomic<Int>(0)
    private let bound = Atomic<Int>(0)

    /// Bodies larger than this are refused (413) rather than buffered.
    public static let maximumBodyBytes = 64 << 20

    /// - Parameters:
    ///   - logPath: a JSON-lines file to append to (created if missing); nil = no log.
    ///   - quiet: no per-request line on stdout.
    ///   - onRequest: called for every request, on the server's threads, after the answer is decided: keep it short.
    /// - Throws: `DevSink.LogFileError` when the log file cannot be opened for appending.
    public init(host: String = "127.0.0.1", port: Int = 8025, logPath: String? = nil, quiet: Bool = true,
                failEvery: Int = 0, statusForPath: [String: Int] = [:], parseBodies: Bool = true,
                onRequest: (@Sendable (SinkRecord) -> Void)? = nil) throws {
        self.host = host
        self.parseBodies = parseBodies
        self.port = port
        self.quiet = quiet
        self.failEvery = max(0, failEvery)
        self.statusForPath = statusForPath
        self.onRequest = onRequest
        if let logPath {
            let fd = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw LogFileError(path: logPath, reason: String(cString: strerror(errno))) }
            log = LineWriter(fd: fd, owned: true)
        } else {
            log = nil
        }
        stdout = quiet ? nil : LineWriter(fd: 1, owned: false)
    }

    public struct LogFileError: Error, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "cannot open \(path) for appending: \(reason)" }
    }

    public struct NotListening: Error, CustomStringConvertible {
        public var description: String { "the sink is not listening (stopped, could not bind, or timed out)" }
    }

    // MARK: counters (thread-safe)

    /// Requests received (any status).
    public var requestCount: Int { requests.load(ordering: .relaxed) }
    /// Requests answered 2xx.
    public var acceptedCount: Int { accepted.load(ordering: .relaxed) }
    /// Messages in requests answered 2xx: each element of a batch counts, a plain request counts 1.
    public var acceptedMessageCount: Int { acceptedMessages.load(ordering: .relaxed) }
    /// Requests answered with anything but 2xx (`failEvery`, `statusForPath`, oversized bodies).
    public var rejectedCount: Int { rejected.load(ordering: .relaxed) }
    /// The port the server is bound to while it runs (useful with `port: 0`); nil before it listens and after it stops.
    public var listeningPort: Int? { let p = bound.load(ordering: .acquiring); return p > 0 ? p : nil }

    /// Waits until the server listens and returns its port; throws `NotListening` when `run()` ended first (e.g. the
    /// address is in use) or after the timeout.
    public func waitUntilListening(timeoutSeconds: Double = 10) async throws -> Int {
        let deadline = ContinuousClock.now + .milliseconds(Int(timeoutSeconds * 1000))
        while ContinuousClock.now < deadline {
            let p = bound.load(ordering: .acquiring)
            if p > 0 { return p }
            if p < 0 { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw NotListening()
    }

    // MARK: serving

    /// Serves until the task is cancelled (or, inside a `ServiceGroup`, until graceful shutdown: idle keep-alive
    /// connections are closed, requests in flight are answered). Throws when the address cannot be bound.
    ///
    /// The server is HummingbirdCore's `Server` (binding, quiescing, service lifecycle) with a synchronous SwiftNIO
    /// HTTP/1.1 pipeline per connection: each request is answered on its event loop without a hop to the Swift
    /// concurrency pool, which roughly doubles the requests a 2-core box sustains compared with an async responder.
    public func run() async throws {
        var logger = Logger(label: "nurture.sink")
        logger.logLevel = .critical   // HummingbirdCore logs a cancelled accept loop as an error; bind failures are thrown
        let server = Server(
            childChannelSetup: SinkChildChannel(sink: self),
            configuration: ServerConfiguration(address: .hostname(host, port: port), serverName: "nurture-sink", backlog: 1024),
            onServerRunning: { [self] channel in
                self.bound.store(channel.localAddress?.port ?? self.port, ordering: .releasing)
            },
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
            logger: logger)
        defer { bound.store(-1, ordering: .releasing) }   // stopped (or could not bind): waiters give up
        try await server.run()
    }

    /// Decides the answer to one request, counts it, logs it and reports it (everything but the HTTP plumbing).
    func handle(method: String, path: String, idempotencyKey: String?, body: [UInt8], forcedStatus: Int? = nil) -> (status: Int, body: [UInt8]) {
        let arrived = Date()
        let n = requests.wrappingAdd(1, ordering: .relaxed).newValue
        var status = 200
        var error: String? = nil
        if let forcedStatus {
            status = forcedStatus
            error = "body larger than \(DevSink.maximumBodyBytes) bytes"
        } else if failEvery > 0 && n % failEvery == 0 {
            status = 503
            error = "nurture sink: --fail-every \(failEvery) (request \(n))"
        } else if let code = statusForPath[path] {
            status = code
            if !(200..<300).contains(code) { error = "nurture sink: --status-for \(path)=\(code)" }
        }
        let ok = (200..<300).contains(status)

        var json: Value? = nil
        var ids: [Value] = []
        var batch: [Value]? = nil
        var batchCount: Int? = nil
        if !parseBodies && log == nil && stdout == nil, let scan = MessageIDScan.scan(body) {
            // Nobody looks at the messages but their ids: no `Value` tree per message.
            ids = scan.ids.map { $0.map(Value.string) ?? .null }
            if scan.isBatch { batchCount = ids.count }
        } else {
            json = body.isEmpty ? nil : (try? ValueJSON.parse(body))
            if case .object(let object)? = json {
                if case .array(let messages)? = object["messages"] {
                    batch = messages
                    batchCount = messages.count
                    ids = messages.map { $0["id"] ?? .null }
                } else if let id = object["id"] {
                    ids = [id]
                }
            }
        }
        let messageCount = batchCount ?? 1

        var reply: [UInt8] = []
        reply.reserveCapacity(64)
        if !ok {
            reply += Array(#"{"status":"rejected","error":"#.utf8)
            ValueJSON.write(.string(error ?? "status \(status)"), into: &reply)
            reply.append(UInt8(ascii: "}"))
        } else if batchCount != nil {
            reply += Array(#"{"results":["#.utf8)
            for (i, id) in ids.enumerated() {
                if i > 0 { reply.append(UInt8(ascii: ",")) }
                reply += Array(#"{"id":"#.utf8)
                ValueJSON.write(id, into: &reply)
                reply += Array(#","status":"accepted"}"#.utf8)
            }
            reply += Array("]}".utf8)
        } else {
            reply += Array(#"{"status":"accepted"}"#.utf8)
        }

        if ok {
            accepted.wrappingAdd(1, ordering: .relaxed)
            acceptedMessages.wrappingAdd(messageCount, ordering: .relaxed)
        } else {
            rejected.wrappingAdd(1, ordering: .relaxed)
        }

        if let log {
            var line: [UInt8] = []
            line.reserveCapacity(body.count + 160)
            line += Array(#"{"at":""#.utf8)
            line += Array(DevSink.iso8601Milliseconds(arrived).utf8)
            line += Array(#"","path":"#.utf8)
            ValueJSON.write(.string(path), into: &line)
            line += Array(#","idempotency_key":"#.utf8)
            ValueJSON.write(idempotencyKey.map(Value.string) ?? .null, into: &line)
            line += Array(#","body":"#.utf8)
            if json != nil {
                DevSink.appendCompactJSON(body, into: &line)
            } else {
                ValueJSON.write(.string(String(decoding: body, as: UTF8.self)), into: &line)
            }
            line += Array(#","method":"#.utf8)
            ValueJSON.write(.string(method), into: &line)
            line += Array(#","status":"#.utf8)
            line += Array(String(status).utf8)
            line += Array("}\n".utf8)
            log.write(line)
        }

        if let stdout {
            let summary = DevSink.summary(at: arrived, method: method, path: path, status: status, body: body, json: json,
                                          batch: batch)
            stdout.write(Array((summary + "\n").utf8))
        }

        if let onRequest {
            onRequest(SinkRecord(at: arrived, method: method, path: path, idempotencyKey: idempotencyKey, status: status,
                                 body: body, json: json, messageIDs: ids.compactMap { $0.stringValue ?? $0.numberValue.map { Value.format(number: $0) } },
                                 messageCount: messageCount))
        }
        return (status, reply)
    }

    // MARK: formatting

    /// `14:02:03 /email  ann@example.com  "Welcome to Acme, Ann!"` (local time; ` → 503` when not accepted).
    static func summary(at: Date, method: String, path: String, status: Int, body: [UInt8], json: Value?, batch: [Value]?) -> String {
        var parts = [localTime(at) + " " + (method == "POST" ? path : method + " " + path)]
        func describe(_ message: Value) -> [String] {
            var out: [String] = []
            if let to = message["to"], !to.isNull { out.append(to.stringValue ?? to.jsonText) }
            if let title = (message["subject"] ?? message["text"])?.stringValue {
                out.append("\"" + clip(title, 70) + "\"")
            }
            if out.isEmpty { out.append(clip(message.jsonText, 100)) }
            return out
        }
        if let batch {
            parts.append("batch of \(batch.count)")
            if let first = batch.first {
                parts += describe(first)
                if batch.count > 1 { parts.append("(+\(batch.count - 1) more)") }
            }
        } else if let json {
            parts += describe(json)
        } else if !body.isEmpty {
            parts.append("\(body.count) bytes")
        }
        if !(200..<300).contains(status) { parts.append("→ \(status)") }
        return parts.joined(separator: "  ")
    }

    private static func clip(_ text: String, _ limit: Int) -> String {
        let flat = text.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
        return flat.count <= limit ? flat : String(flat.prefix(limit - 1)) + "…"
    }

    /// `2026-11-22T14:02:03.123Z`.
    static func iso8601Milliseconds(_ date: Date) -> String {
        let interval = date.timeIntervalSince1970
        var seconds = time_t(interval.rounded(.down))
        let millis = min(999, Int((interval - Double(seconds)) * 1000))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var out = ""
        out.reserveCapacity(24)
        func pad(_ n: Int, _ width: Int) {
            let digits = String(n)
            if digits.count < width { out += String(repeating: "0", count: width - digits.count) }
            out += digits
        }
        pad(Int(parts.tm_year) + 1900, 4); out += "-"; pad(Int(parts.tm_mon) + 1, 2); out += "-"; pad(Int(parts.tm_mday), 2)
        out += "T"; pad(Int(parts.tm_hour), 2); out += ":"; pad(Int(parts.tm_min), 2); out += ":"; pad(Int(parts.tm_sec), 2)
        out += "."; pad(millis, 3); out += "Z"
        return out
    }

    /// `14:02:03` in the process's local time zone.
    static func localTime(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        localtime_r(&seconds, &parts)
        return String(format: "%02d:%02d:%02d", Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    }

    /// Appends valid JSON text without the whitespace between tokens (keeps key order and number spelling).
    static func appendCompactJSON(_ json: [UInt8], into out: inout [UInt8]) {
        var inString = false, escaped = false
        for b in json {
            if inString {
                out.append(b)
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
            } else {
                switch b {
                case 0x20, 0x09, 0x0A, 0x0D: continue
                case UInt8(ascii: "\""): inString = true; out.append(b)
                default: out.append(b)
                }
            }
        }
    }
}

// MARK: - the HTTP/1.1 pipeline

/// One accepted connection (what HummingbirdCore's `Server` hands to `SinkChildChannel.handle`).
private struct SinkConnection: ServerChildChannelValue {
    let channel: any NIOCore.Channel
}

/// Sets up each connection with SwiftNIO's HTTP/1.1 server pipeline (parsing, pipelining, quiescing on graceful
/// shutdown, 400 on garbage) and a `SinkHTTPHandler`, then just waits for the connection to close.
private struct SinkChildChannel: ServerChildChannel {
    let sink: DevSink

    func setup(channel: any NIOCore.Channel, logger: Logger) -> EventLoopFuture<SinkConnection> {
        let sink = self.sink
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
            try channel.pipeline.syncOperations.addHandler(SinkHTTPHandler(sink: sink))
            return SinkConnection(channel: channel)
        }
    }

    func handle(value: SinkConnection, logger: Logger) async {
        let channel = value.channel
        await withTaskCancellationHandler {
            try? await channel.closeFuture.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }
}

/// Collects one request (head, body, end) and answers it from `DevSink.handle`, all on the connection's event loop.
private final class SinkHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let sink: DevSink
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(sink: DevSink) {
        self.sink = sink
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body.removeAll(keepingCapacity: body.capacity <= 1 << 20)
            tooLarge = false
        case .body(let buffer):
            if tooLarge || body.count + buffer.readableBytes > DevSink.maximumBodyBytes {
                tooLarge = true
                body.removeAll()
            } else {
                body.append(contentsOf: buffer.readableBytesView)
            }
        case .end:
            guard let requestHead = head else { return }
            head = nil
            let uri = requestHead.uri
            let path = uri.firstIndex(of: "?").map { String(uri[..<$0]) } ?? uri
            let answer = sink.handle(method: requestHead.method.rawValue, path: path,
                                     idempotencyKey: requestHead.headers.first(name: "Idempotency-Key"),
                                     body: body, forcedStatus: tooLarge ? 413 : nil)
            let keepAlive = requestHead.isKeepAlive && !tooLarge
            var headers = HTTPHeaders()
            headers.reserveCapacity(4)
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Content-Length", value: String(answer.body.count))
            headers.add(name: "Server", value: "nurture-sink")
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            let responseHead = HTTPResponseHead(version: requestHead.version, status: HTTPResponseStatus(statusCode: answer.status),
                                                headers: headers)
            context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
            if requestHead.method != .HEAD {
                var buffer = context.channel.allocator.buffer(capacity: answer.body.count)
                buffer.writeBytes(answer.body)
                context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            }
            if keepAlive {
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            } else {
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }
}

@available(*, unavailable)
extension SinkHTTPHandler: Sendable {}

/// Writes whole lines to a file descriptor, one at a time (a line is never interleaved with another).
private final class LineWriter: Sendable {
    private let fd: Mutex<Int32>
    private let owned: Bool

    init(fd: Int32, owned: Bool) {
        self.fd = Mutex(fd)
        self.owned = owned
    }

    func write(_ bytes: [UInt8]) {
        fd.withLock { fd in
            bytes.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = systemWrite(fd, raw.baseAddress! + offset, raw.count - offset)
                    if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { return }
                }
            }
        }
    }

    deinit {
        if owned { fd.withLock { fd in _ = close(fd) } }
    }
}

/// `write(2)` (a free function so `LineWriter.write` does not shadow it).
private func systemWrite(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, pointer, count)
}
