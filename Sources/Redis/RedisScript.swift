import NurtureCore

/// A Lua script called by SHA (`EVALSHA`). The SHA is computed locally, so pipelines can call scripts without
/// loading them first; a `NOSCRIPT` reply (server restarted, `SCRIPT FLUSH`) loads the source and runs it again.
public struct RedisScript: Sendable, Hashable {
    public let name: String
    public let source: String
    public let sha: String

    public init(name: String, source: String) {
        self.name = name
        self.source = source
        self.sha = SHA1.hex(Array(source.utf8))
    }

    /// The `EVALSHA` command for this script with its keys and arguments.
    public func command(keys: [RedisArgument], arguments: [RedisArgument]) -> RedisCommand {
        var all: [RedisArgument] = [.string(sha), .int(Int64(keys.count))]
        all.append(contentsOf: keys)
        all.append(contentsOf: arguments)
        return RedisCommand("EVALSHA", all)
    }
}
