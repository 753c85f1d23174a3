import Foundation

/// A private `redis-server` a test can stop and restart (the shared one from `ops/test` must stay up).
public final class RedisServerProcess: @unchecked Sendable {
    // Safety: used from one test at a time; `process` is only replaced by start/stop on that test's thread.
    public let port: Int
    public let directory: String
    private let extraArguments: [String]
    private var process: ChildProcess?

    public var url: String { "redis://127.0.0.1:\(port)/0" }

    /// `appendOnly`: `appendonly yes, appendfsync always`, so an acknowledged write survives a restart.
    public init(appendOnly: Bool = false, extraArguments: [String] = []) throws {
        port = TestEnvironment.freePort()
        directory = TestEnvironment.scratchDirectory + "/redis-\(port)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var args = ["--save", "", "--appendonly", appendOnly ? "yes" : "no"]
        if appendOnly { args += ["--appendfsync", "always"] }
        self.extraArguments = args + extraArguments
        try start()
    }

    deinit { stop() }

    public func start() throws {
        let binary = ProcessInfo.processInfo.environment["NURTURE_TEST_REDIS_SERVER"] ?? "/usr/bin/redis-server"
        process = try ChildProcess(executable: binary, arguments: ["--port", "\(port)", "--bind", "127.0.0.1", "--dir", directory,
                                                              "--logfile", directory + "/redis.log"] + extraArguments)
        // Wait until it accepts connections.
        for _ in 0..<200 {
            if canConnect() { return }
            usleep(25_000)
        }
        throw TestEnvironment.MissingServer(variable: "redis-server on port \(port) did not start (see \(directory)/redis.log)")
    }

    /// SIGTERM and wait: with appendonly the AOF is fsynced on every write, so nothing acknowledged is lost.
    public func stop() {
        guard let p = process, p.isRunning else { process = nil; return }
        p.signal(SIGTERM)
        p.wait()
        process = nil
    }

    /// SIGKILL: the server dies without a chance to save.
    public func kill() {
        guard let p = process, p.isRunning else { return }
        p.signal(SIGKILL)
        p.wait()
        process = nil
    }

    public func restart() throws { stop(); try start() }

    private func canConnect() -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        return r == 0
    }
}
