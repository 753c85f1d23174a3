/// One argument of a Redis command. Binary-safe: `.bytes` goes on the wire untouched.
public enum RedisArgument: Sendable, Equatable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    case string(String)
    case bytes([UInt8])
    case int(Int64)
    case double(Double)

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
}

/// A command encoded once into RESP (`*N\r\n$len\r\narg\r\n...`), ready to append to a pipeline buffer.
/// Encoding in Swift and handing hiredis pre-formatted bytes avoids its printf-style formatter and lets a whole
/// pipeline go to the socket in one write.
public struct RedisCommand: Sendable, Equatable {
    public private(set) var encoded: [UInt8]
    /// The command name, for errors and logs (never the arguments: they may hold personal data).
    public let name: String

    public init(_ name: String, _ arguments: [RedisArgument]) {
        self.name = name
        var buffer: [UInt8] = []
        buffer.reserveCapacity(16 + name.utf8.count + arguments.count * 24)
        RedisCommand.appendHeader(count: arguments.count + 1, to: &buffer)
        RedisCommand.appendBulk(name.utf8, to: &buffer)
        for argument in arguments {
            switch argument {
            case .string(let s): RedisCommand.appendBulk(s.utf8, to: &buffer)
            case .bytes(let b): RedisCommand.appendBulk(b, to: &buffer)
            case .int(let i): RedisCommand.appendBulk(String(i).utf8, to: &buffer)
            case .double(let d): RedisCommand.appendBulk(String(d).utf8, to: &buffer)
            }
        }
        self.encoded = buffer
    }

    public init(_ name: String, _ arguments: RedisArgument...) { self.init(name, arguments) }

    /// `RedisCommand(["SET", "k", "v"])`: the first string is the command name.
    public init(strings: [String]) {
        precondition(!strings.isEmpty, "a Redis command needs a name")
        self.init(strings[0], strings.dropFirst().map { .string($0) })
    }

    @inline(__always)
    static func appendHeader(count: Int, to buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: "*"))
        appendDecimal(count, to: &buffer)
        buffer.append(13); buffer.append(10)
    }

    @inline(__always)
    static func appendBulk<C: Collection>(_ bytes: C, to buffer: inout [UInt8]) where C.Element == UInt8 {
        buffer.append(UInt8(ascii: "$"))
        appendDecimal(bytes.count, to: &buffer)
        buffer.append(13); buffer.append(10)
        buffer.append(contentsOf: bytes)
        buffer.append(13); buffer.append(10)
    }

    @inline(__always)
    static func appendDecimal(_ value: Int, to buffer: inout [UInt8]) {
        if value < 10 { buffer.append(UInt8(ascii: "0") + UInt8(value)); return }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var v = value
        var n = 0
        withUnsafeMutableBytes(of: &digits) { raw in
            while v > 0 { raw[n] = UInt8(ascii: "0") + UInt8(v % 10); v /= 10; n += 1 }
            for i in stride(from: n - 1, through: 0, by: -1) { buffer.append(raw[i]) }
        }
    }
}
