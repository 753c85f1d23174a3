import Foundation

/// A child process started with posix_spawn (benchmarks start servers and workers; tests start sinks) and reaped with waitpid. Foundation's `Process.waitUntilExit` can
/// hang on Linux when several tests spawn and reap children from different threads at once; this does not.
public final class ChildProcess: @unchecked Sendable {
    // Safety: `pid` and `exitStatus` are only written by the owning test's thread (spawn/wait/kill).
    public private(set) var pid: pid_t = 0
    public private(set) var exitStatus: Int32? = nil

    public init(executable: String, arguments: [String], environment: [String: String]? = nil,
                stdoutPath: String? = nil, stderrPath: String? = nil) throws {
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fileActions, 1, stdoutPath ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&fileActions, 2, stderrPath ?? stdoutPath ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        let env = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in env { free(p) } }
        // The test runner's threads block SIGTERM and friends; a child would inherit that mask and ignore SIGTERM.
        // Start every child with an empty mask and default dispositions.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &fileActions, &attributes, argv, env)
        guard rc == 0 else {
            throw SpawnError(executable: executable, message: String(cString: strerror(rc)))
        }
        pid = child
    }

    public var isRunning: Bool {
        guard pid > 0, exitStatus == nil else { return false }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { exitStatus = status; return false }
        return r == 0
    }

    public func signal(_ sig: Int32) {
        if pid > 0 && exitStatus == nil { kill(pid, sig) }
    }

    /// Waits for the child to exit; returns its raw wait status.
    @discardableResult
    public func wait() -> Int32 {
        if let s = exitStatus { return s }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        exitStatus = status
        return status
    }

    /// Exit code if it exited normally.
    public var exitCode: Int32? {
        guard let s = exitStatus, (s & 0x7f) == 0 else { return nil }
        return (s >> 8) & 0xff
    }

    /// Waits up to `milliseconds` for the child to exit; true if it did.
    public func wait(milliseconds: Int) -> Bool {
        let deadline = Date().addingTimeInterval(Double(milliseconds) / 1000)
        while Date() < deadline {
            if !isRunning { return true }
            usleep(10_000)
        }
        return !isRunning
    }

    deinit {
        if isRunning { kill(pid, SIGKILL); wait() }
    }
}

public struct SpawnError: Error, CustomStringConvertible {
    public let executable: String
    public let message: String
    public var description: String { "cannot start \(executable): \(message)" }
}
