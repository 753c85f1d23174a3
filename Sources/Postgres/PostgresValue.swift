import Foundation

/// One statement parameter. Every value goes to the server with an explicit type OID (so `$1` needs no cast
/// for the common types) in text format, except `bytea`, which goes in binary. Values are never interpolated into
/// SQL text.
///
/// | case        | SQL type      | OID  |
/// |-------------|---------------|------|
/// | `.text`     | `text`        | 25   |
/// | `.int`      | `int8`        | 20   |
/// | `.double`   | `float8`      | 701  |
/// | `.bool`     | `bool`        | 16   |
/// | `.timestamp`| `timestamptz` | 1184 |
/// | `.jsonb`    | `jsonb` (JSON text) | 3802 |
/// | `.uuid`     | `uuid`        | 2950 |
/// | `.bytea`    | `bytea`       | 17   |
/// | `.textArray`| `text[]`      | 1009 |
/// | `.intArray` | `int8[]`      | 1016 |
/// | `.null`     | inferred by the server from context | 0 |
public enum PostgresValue: Sendable, Equatable {
    case null
    case text(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)
    /// Sent as ISO-8601 UTC with microseconds (PostgreSQL's precision: finer digits are rounded).
    case timestamp(Date)
    /// JSON text, parsed and stored by the server as `jsonb`.
    case jsonb(String)
    case uuid(UUID)
    case bytea([UInt8])
    case textArray([String?])
    case intArray([Int64?])

    public init(_ s: String?) { self = s.map { .text($0) } ?? .null }
    public init(_ i: Int?) { self = i.map { .int(Int64($0)) } ?? .null }
    public init(_ i: Int64?) { self = i.map { .int($0) } ?? .null }
    public init(_ d: Double?) { self = d.map { .double($0) } ?? .null }
    public init(_ b: Bool?) { self = b.map { .bool($0) } ?? .null }
    public init(_ d: Date?) { self = d.map { .timestamp($0) } ?? .null }
    public init(_ u: UUID?) { self = u.map { .uuid($0) } ?? .null }
    public init(_ b: [UInt8]?) { self = b.map { .bytea($0) } ?? .null }

    /// The type OID sent with the parameter.
    var typeOID: UInt32 {
        switch self {
        case .null: return 0
        case .text: return 25
        case .int: return 20
        case .double: return 701
        case .bool: return 16
        case .timestamp: return 1184
        case .jsonb: return 3802
        case .uuid: return 2950
        case .bytea: return 17
        case .textArray: return 1009
        case .intArray: return 1016
        }
    }

    /// Appends the wire bytes of a non-null value to `buffer` (text format, not NUL-terminated, except
    /// `bytea` in binary). Returns false for `.null`.
    func encode(into buffer: inout [UInt8]) -> Bool {
        switch self {
        case .null: return false
        case .text(let s): buffer.append(contentsOf: s.utf8)
        case .jsonb(let s): buffer.append(contentsOf: s.utf8)
        case .int(let i): PostgresText.appendDecimal(i, to: &buffer)
        case .double(let d): PostgresText.appendDouble(d, to: &buffer)
        case .bool(let b): buffer.append(b ? UInt8(ascii: "t") : UInt8(ascii: "f"))
        case .timestamp(let d): PostgresText.appendTimestamp(d, to: &buffer)
        case .uuid(let u): PostgresText.appendUUID(u, to: &buffer)
        case .bytea(let b): buffer.append(contentsOf: b)
        case .textArray(let a): PostgresText.appendArrayLiteral(a, to: &buffer)
        case .intArray(let a): PostgresText.appendArrayLiteral(a, to: &buffer)
        }
        return true
    }

    /// 1 (binary) for `bytea`, 0 (text) otherwise.
    var format: Int32 {
        if case .bytea = self { return 1 }
        return 0
    }
}

extension PostgresValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByNilLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByFloatLiteral {
    public init(stringLiteral value: String) { self = .text(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
}
