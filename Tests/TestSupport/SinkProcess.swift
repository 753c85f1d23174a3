import Foundation

/// A Python sink from `Tests/TestSupport/Fixtures/` (http_sink.py, smtp_sink.py) running on a free loopback port, stopped by `stop()` (or when released).
public final class SinkProcess: @unchecked Sendable {
    // Safety: used by one test at a time; `process` is only touched by init and stop on that test's thread.
    public let port: Int
    public let logPath: String
    private let errorPath: String
    private let process = Process()

    /// Debian's python3 has aiosmtpd (ops/test installs python3-aiosmtpd); a pyenv/venv `python3` first on PATH
    /// may not. `NURTURE_TEST_PYTHON` overrides.
    public static var python: String {
        if let explicit = ProcessInfo.processInfo.environment["NURTURE_TEST_PYTHON"] { return explicit }
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") { return "/usr/bin/python3" }
        return "python3"
    }

    public static func fixture(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)").path
    }

    /// Starts `Fixtures/<script> PORT LOGFILE <arguments>` and waits until the port accepts connections.
    /// `port`: reuse one (to restart a sink where a client expects it); a free one by default.
    public init(script: String, arguments: [String] = [], port requestedPort: Int? = nil) throws {
        port = requestedPort ?? TestEnvironment.freePort()
        let base = TestEnvironment.scratchDirectory + "/" + TestEnvironment.uniqueName("sink")
        logPath = base + ".jsonl"
        errorPath = base + ".stderr"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
        let python = SinkProcess.python
        if python.hasPrefix("/") {
            process.executableURL = URL(fileURLWithPath: python)
            process.arguments = [SinkProcess.fixture(script), String(port), logPath] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [python, SinkProcess.fixture(script), String(port), logPath] + arguments
        }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: errorPath)
        try process.run()
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if SinkProcess.canConnect(port: port) { return }
            if !process.isRunning { break }
            usleep(20_000)
        }
        let stderr = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
        stop()
        throw SinkFailed(description: "\(script) did not start on 127.0.0.1:\(port) (python: \(python)): \(stderr)")
    }

    deinit { stop() }

    /// SIGKILL, not `terminate()`: a child started from a test thread inherits that thread's signal mask, in
    /// which SIGTERM is blocked. The sink flushes each record as it writes it, so nothing is lost.
    public func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// The JSON lines the sink wrote so far, decoded.
    public func records<Record: Decodable>(_ type: Record.Type) throws -> [Record] {
        let text = try String(contentsOfFile: logPath, encoding: .utf8)
        let decoder = JSONDecoder()
        return try text.split(separator: "\n").map { try decoder.decode(Record.self, from: Data($0.utf8)) }
    }

    public static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return r == 0
    }

    public struct SinkFailed: Error, CustomStringConvertible {
        public let description: String
    }
}

/// One request as `http_sink.py` recorded it.
public struct HTTPRecord: Decodable {
    public let method: String
    public let path: String
    public let headers: [[String]]
    public let body_b64: String
    public let client_port: Int

    public var body: [UInt8] { Array(Data(base64Encoded: body_b64) ?? Data()) }

    public func header(_ name: String) -> String? {
        headers.first { $0.count == 2 && $0[0].lowercased() == name.lowercased() }?[1]
    }
}

/// One accepted message as `smtp_sink.py` recorded it.
public struct SMTPRecord: Decodable {
    public let mail_from: String
    public let rcpt_tos: [String]
    public let data_b64: String
    public let peer_port: Int?
    public let login: String?

    public var data: [UInt8] { Array(Data(base64Encoded: data_b64) ?? Data()) }
}
