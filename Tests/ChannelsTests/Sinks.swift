import Foundation
import TestSupport

/// A Python sink from `Fixtures/` running on a free loopback port, stopped by `stop()` (or when released).
final class SinkProcess: @unchecked Sendable {
    // Safety: used by one test at a time; `process` is only touched by init and stop on that test's thread.
    let port: Int
    let logPath: String
    private let errorPath: String
    private let process = Process()

    /// Debian's python3 has aiosmtpd (ops/test installs python3-aiosmtpd); a pyenv/venv `python3` first on PATH
    /// may not. `NURTURE_TEST_PYTHON` overrides.
    static var python: String {
        if let explicit = ProcessInfo.processInfo.environment["NURTURE_TEST_PYTHON"] { return explicit }
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") { return "/usr/bin/python3" }
        return "python3"
    }

    static func fixture(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)").path
    }

    /// Starts `Fixtures/<script> PORT LOGFILE <arguments>` and waits until the port accepts connections.
    /// `port`: reuse one (to restart a sink where a client expects it); a free one by default.
    init(script: String, arguments: [String] = [], port requestedPort: Int? = nil) throws {
        port = requestedPort ?? TestEnvironment.freePort()
        let base = TestEnvironment.scratchDirectory + "/" + TestEnvironment.uniqueName("channels_sink")
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
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// The JSON lines the sink wrote so far, decoded.
    func records<Record: Decodable>(_ type: Record.Type) throws -> [Record] {
        let text = try String(contentsOfFile: logPath, encoding: .utf8)
        let decoder = JSONDecoder()
        return try text.split(separator: "\n").map { try decoder.decode(Record.self, from: Data($0.utf8)) }
    }

    static func canConnect(port: Int) -> Bool {
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

    struct SinkFailed: Error, CustomStringConvertible {
        let description: String
    }
}

/// One request as `http_sink.py` recorded it.
struct HTTPRecord: Decodable {
    let method: String
    let path: String
    let headers: [[String]]
    let body_b64: String
    let client_port: Int

    var body: [UInt8] { Array(Data(base64Encoded: body_b64) ?? Data()) }

    func header(_ name: String) -> String? {
        headers.first { $0.count == 2 && $0[0].lowercased() == name.lowercased() }?[1]
    }
}

/// One accepted message as `smtp_sink.py` recorded it.
struct SMTPRecord: Decodable {
    let mail_from: String
    let rcpt_tos: [String]
    let data_b64: String
    let peer_port: Int?
    let login: String?

    var data: [UInt8] { Array(Data(base64Encoded: data_b64) ?? Data()) }
}
