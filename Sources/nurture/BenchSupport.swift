import Domain
import Foundation
import NurtureCore
import Postgres
import Redis
import Store

/// A redis-server of the benchmark's own (no persistence, like the peer harness's), on a free loopback port.
final class PrivateRedis {
    let port: Int
    let directory: String
    let process: ChildProcess
    var url: String { "redis://127.0.0.1:\(port)/0" }

    init() throws {
        port = freeLoopbackPort()
        directory = NSTemporaryDirectory() + "nurture-bench-redis-\(port)"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let binary = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let binary else { throw UserError("redis-server not found (apt-get install redis-server)") }
        process = try ChildProcess(executable: binary, arguments: ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "",
                                                                   "--appendonly", "no", "--dir", directory],
                                   stdoutPath: directory + "/redis.log")
        for _ in 0..<200 {
            if (try? RedisConnection(url: url).execute("PING")) != nil { return }
            usleep(20_000)
        }
        throw UserError("private redis-server did not start (see \(directory)/redis.log)")
    }

    func stop() {
        process.signal(SIGTERM)
        _ = process.wait(milliseconds: 5_000)
        try? FileManager.default.removeItem(atPath: directory)
    }
}

func freeLoopbackPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// VmRSS and VmHWM (peak) of a process in MiB.
func residentMegabytes(pid: pid_t) -> (current: Double, peak: Double) {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return (0, 0) }
    func value(_ key: String) -> Double {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key) }) else { return 0 }
        return (Double(line.split(separator: " ").dropFirst().first { !$0.isEmpty && $0 != "\t" }?.trimmingCharacters(in: .whitespaces) ?? "") ?? 0) / 1024
    }
    return (value("VmRSS:"), value("VmHWM:"))
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    if sorted.isEmpty { return .nan }
    let rank = min(sorted.count - 1, max(0, Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1))
    return sorted[rank]
}

func wallMicros() -> Int64 {
    var tv = timeval()
    gettimeofday(&tv, nil)
    return Int64(tv.tv_sec) * 1_000_000 + Int64(tv.tv_usec)
}

/// `key=value` figures, one line per measurement, machine-readable (like the peer harness).
func emit(_ bench: String, _ fields: [(String, String)]) {
    print(([("bench", bench)] + fields).map { "\($0.0)=\($0.1)" }.joined(separator: " "))
    fflush(nil)
}

func fmt(_ v: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", v) }

/// Path of this executable, to start worker and scheduler processes of the same build.
func ownExecutable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}

/// Applies the definition files or directories in `paths` (comma-separated) as `nurture apply` does; returns how many
/// definitions there were.
func applyDefinitions(_ paths: String, on db: PostgresConnection) throws -> Int {
    let report = try DefinitionFiles.load(paths.split(separator: ",").map(String.init), stored: [:])
    try DefinitionFiles.report(report)
    let records = report.definitions.map {
        DefinitionRecord(kind: $0.kind.rawValue, name: $0.name, checksum: $0.checksum, specJSON: $0.canonicalJSON, source: $0.source)
    }
    _ = try DefinitionStore().apply(records, appliedBy: "bench", at: Date(), on: db)
    return records.count
}

/// CPU seconds so far of worker processes, this process, a redis-server and the PostgreSQL backends of `db`'s
/// database (when the server runs on this host: backends are read from /proc by their pid).
struct CPUTimes {
    var workers: Double
    var bench: Double
    var redis: Double
    var backends: [Int32: Double]
    var postgres: Double { backends.values.reduce(0, +) }

    init(pids: [pid_t], redisPid: pid_t, db: PostgresConnection) {
        var backends: [Int32: Double] = [:]
        let pids2 = (try? db.query("""
            SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'
            """).rows.compactMap { $0[0].int.map { Int32($0) } }) ?? []
        for pid in pids2 {
            let command = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
            if command.hasPrefix("postgres"), let seconds = processCPUSeconds(pid) { backends[pid] = seconds }
        }
        self.workers = pids.compactMap(processCPUSeconds).reduce(0, +)
        self.bench = processCPUSeconds(getpid()) ?? 0
        self.redis = processCPUSeconds(redisPid) ?? 0
        self.backends = backends
    }

    /// What was used since `before` (backends that ended meanwhile are not counted).
    func minus(_ before: CPUTimes) -> (workers: Double, bench: Double, redis: Double, postgres: Double) {
        (workers - before.workers, bench - before.bench, redis - before.redis,
         backends.reduce(0) { $0 + $1.value - (before.backends[$1.key] ?? 0) })
    }
}
