import Foundation

/// The rows of one result, copied out of libpq's `PGresult` into one contiguous buffer (so no C memory outlives
/// the call that produced it). Rows and cells are views into it; values are parsed only when asked for.
final class PostgresResultStorage: Sendable {
    let columns: [String]
    let columnIndex: [String: Int]
    let columnTypes: [UInt32]
    let rowCount: Int
    /// All cell bytes, row-major.
    let bytes: [UInt8]
    /// Start of each cell in `bytes` (row * columnCount + column).
    let offsets: [Int]
    /// Length of each cell, -1 for NULL.
    let lengths: [Int32]

    init(columns: [String], columnTypes: [UInt32], rowCount: Int, bytes: [UInt8], offsets: [Int], lengths: [Int32]) {
        self.columns = columns
        var index: [String: Int] = [:]
        for (i, name) in columns.enumerated() where index[name] == nil { index[name] = i }  // first wins, like SQL
        self.columnIndex = index
        self.columnTypes = columnTypes
        self.rowCount = rowCount
        self.bytes = bytes
        self.offsets = offsets
        self.lengths = lengths
    }

    static let empty = PostgresResultStorage(columns: [], columnTypes: [], rowCount: 0, bytes: [], offsets: [], lengths: [])
}

/// The outcome of one statement.
public struct PostgresResult: Sendable {
    public let columns: [String]
    public let rows: [PostgresRow]
    /// Rows inserted/updated/deleted/copied, or returned by a `SELECT` (the command tag's count; 0 if none).
    public let affectedRows: Int

    init(storage: PostgresResultStorage, affectedRows: Int) {
        self.columns = storage.columns
        var rows: [PostgresRow] = []
        rows.reserveCapacity(storage.rowCount)
        for r in 0..<storage.rowCount { rows.append(PostgresRow(storage: storage, row: r)) }
        self.rows = rows
        self.affectedRows = affectedRows
    }

    /// The first row, if any.
    public var first: PostgresRow? { rows.first }
}

/// One row of a result. Cells are looked up by position or by column name.
public struct PostgresRow: Sendable {
    let storage: PostgresResultStorage
    let row: Int

    /// The result's column names (shared by all rows).
    public var columns: [String] { storage.columns }

    public var count: Int { storage.columns.count }

    /// The cell at `index` (0-based). Out of range traps, like an array.
    public subscript(_ index: Int) -> PostgresCell {
        precondition(index >= 0 && index < storage.columns.count, "column index \(index) out of range 0..<\(storage.columns.count)")
        return PostgresCell(storage: storage, cell: row * storage.columns.count + index, column: index)
    }

    /// The cell of the first column named `column`. A missing column gives a cell that is null and whose
    /// `decode` throws a `.decode` error naming the column (so a typo fails loudly, not as a crash).
    public subscript(_ column: String) -> PostgresCell {
        guard let index = storage.columnIndex[column] else { return PostgresCell(missing: column) }
        return PostgresCell(storage: storage, cell: row * storage.columns.count + index, column: index)
    }
}

/// One value of a row, in PostgreSQL's text format. The accessors parse on demand and return nil for NULL or
/// for text that is not of the asked-for type; `decode(_:)` throws instead.
public struct PostgresCell: Sendable {
    let storage: PostgresResultStorage
    let cell: Int
    let column: Int
    let missingColumn: String?

    init(storage: PostgresResultStorage, cell: Int, column: Int) {
        self.storage = storage
        self.cell = cell
        self.column = column
        self.missingColumn = nil
    }

    init(missing name: String) {
        self.storage = .empty
        self.cell = -1
        self.column = -1
        self.missingColumn = name
    }

    /// The column's name ("?" for a missing column).
    public var columnName: String { missingColumn ?? storage.columns[column] }

    /// The column's type OID (0 for a missing column).
    public var typeOID: UInt32 { missingColumn == nil ? storage.columnTypes[column] : 0 }

    public var isNull: Bool { missingColumn != nil || storage.lengths[cell] < 0 }

    /// Calls `body` with the raw text bytes, or returns nil for NULL.
    @inline(__always)
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R?) -> R? {
        guard missingColumn == nil else { return nil }
        let length = storage.lengths[cell]
        if length < 0 { return nil }
        let offset = storage.offsets[cell]
        return storage.bytes.withUnsafeBytes { raw in
            body(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + Int(length))]))
        }
    }

    /// The value's text (JSON text for `json`/`jsonb`, `\x...` for `bytea`).
    public var string: String? { withBytes { String(decoding: $0, as: UTF8.self) } }
    public var int: Int64? { withBytes(PostgresText.parseInt64) }
    public var double: Double? { withBytes(PostgresText.parseDouble) }
    public var bool: Bool? { withBytes(PostgresText.parseBool) }
    /// `timestamptz`, `timestamp` (read as UTC) or `date` (midnight UTC).
    public var date: Date? { withBytes(PostgresText.parseTimestamp) }
    public var uuid: UUID? { withBytes(PostgresText.parseUUID) }
    /// `bytea` decoded from its hex text; for other types, the text's UTF-8 bytes.
    public var bytes: [UInt8]? {
        let isBytea = typeOID == 17
        return withBytes { isBytea ? PostgresText.parseByteaHex($0) : Array($0) }
    }
    /// Any one-dimensional array (`text[]`, `varchar[]`, `uuid[]`...) as its elements' text.
    public var stringArray: [String?]? {
        withBytes { raw -> [String?]? in
            var out: [String?] = []
            let ok = PostgresText.parseArray(raw) { element in
                out.append(element.map { String(decoding: $0, as: UTF8.self) })
                return true
            }
            return ok ? out : nil
        }
    }
    /// `int2[]`, `int4[]`, `int8[]`.
    public var intArray: [Int64?]? {
        withBytes { raw -> [Int64?]? in
            var out: [Int64?] = []
            let ok = PostgresText.parseArray(raw) { element in
                guard let element else { out.append(nil); return true }
                guard let value = PostgresText.parseInt64(element) else { return false }
                out.append(value)
                return true
            }
            return ok ? out : nil
        }
    }

    /// The value as `T`: `String`, `Int`, `Int64`, `Int32`, `Double`, `Bool`, `Date`, `UUID`, `[UInt8]`,
    /// `[String?]`, `[Int64?]`, any other `PostgresDecodable`, or an `Optional` of one (NULL becomes nil).
    /// Throws `.decode` naming the column and the type for NULL into a non-optional, unparsable text, or an
    /// unsupported `T`.
    public func decode<T>(_ type: T.Type = T.self) throws(PostgresError) -> T {
        guard let decodable = T.self as? any PostgresDecodable.Type else {
            throw PostgresError(.decode, "column \"\(columnName)\": \(T.self) is not PostgresDecodable")
        }
        return try decodable.decode(from: self) as! T
    }

    /// The error `decode` throws: names the column, its type and the wanted Swift type, never the value.
    public func decodeError(_ type: Any.Type) -> PostgresError {
        if let missingColumn {
            return PostgresError(.decode, "no column named \"\(missingColumn)\" in the result")
        }
        if isNull {
            return PostgresError(.decode, "column \"\(columnName)\" is NULL, cannot decode as \(type)")
        }
        return PostgresError(.decode, "column \"\(columnName)\" (type OID \(typeOID)) cannot be decoded as \(type)")
    }
}

/// A type a `PostgresCell` can decode into.
public protocol PostgresDecodable {
    static func decode(from cell: PostgresCell) throws(PostgresError) -> Self
}

extension String: PostgresDecodable {
    public static func decode(from cell: PostgresCell) throws(PostgresError) -> String {
        guard let v = cell.string else { throw cell.decodeError(String.self) }
        return v
    }
}

extension Int64: PostgresDecodable {
    public static func decode(from cell: PostgresCell) throws(PostgresError) -> Int64 {
        guard let v = cell.int else { throw cell.decodeError(Int64.self) }
        return v
    }
}

extension Int: PostgresDecodable {
    public static func decode(from cell: PostgresCell) throws(PostgresError) -> Int {
        guard let v = cell.int, let i = Int(exactly: v) else { throw cell.decodeError(Int.self) }
        return i
    }
}

extension Int32: PostgresDecodable {
    public static func decode(from cell: PostgresCell) throws(PostgresError) -> Int32 {
        guard let v = cell.int, let i = Int32(exactly: v) else { throw cell.decodeError(Int32.self) }
        return i
    }
}

extension Double: PostgresDecodable {
    public static func decode(from cell: PostgresCell) throws(PostgresError) -> Double {
        guard let v = cell.double else { throw cell.decodeError(Double.self) }
        return v
    }
}

extension Bool: PostgresDecodable {
    public static func decode(from cell: PostgresCell) throws(PostgresError) -> Bool {
        guard let v = cell.bool else { throw cell.decodeError(Bool.self) }
        return v
    }
}

extension Date: PostgresDecodable {
    public static func decode(from cell: PostgresCell) throws(PostgresError) -> Date {
        guard let v = cell.date else { throw cell.decodeError(Date.self) }
        return v
    }
}

extension UUID: PostgresDecodable {
    public static func decode(from cell: PostgresCell) throws(PostgresError) -> UUID {
        guard let v = cell.uuid else { throw cell.decodeError(UUID.self) }
        return v
    }
}

extension Array: PostgresDecodable where Element: PostgresArrayElement {
    public static func decode(from cell: PostgresCell) throws(PostgresError) -> [Element] {
        guard let v = Element.decodeArray(from: cell) else { throw cell.decodeError([Element].self) }
        return v
    }
}

/// Element types of arrays `PostgresCell.decode` supports: `[UInt8]` (bytea), `[String?]`, `[Int64?]`.
public protocol PostgresArrayElement {
    static func decodeArray(from cell: PostgresCell) -> [Self]?
}

extension UInt8: PostgresArrayElement {
    public static func decodeArray(from cell: PostgresCell) -> [UInt8]? { cell.bytes }
}

extension Optional: PostgresArrayElement where Wrapped: PostgresArrayOptionalElement {
    public static func decodeArray(from cell: PostgresCell) -> [Wrapped?]? { Wrapped.decodeOptionalArray(from: cell) }
}

/// `String` and `Int64`, for `[String?]` and `[Int64?]`.
public protocol PostgresArrayOptionalElement {
    static func decodeOptionalArray(from cell: PostgresCell) -> [Self?]?
}

extension String: PostgresArrayOptionalElement {
    public static func decodeOptionalArray(from cell: PostgresCell) -> [String?]? { cell.stringArray }
}

extension Int64: PostgresArrayOptionalElement {
    public static func decodeOptionalArray(from cell: PostgresCell) -> [Int64?]? { cell.intArray }
}

extension Optional: PostgresDecodable where Wrapped: PostgresDecodable {
    public static func decode(from cell: PostgresCell) throws(PostgresError) -> Wrapped? {
        if cell.missingColumn != nil { throw cell.decodeError(Wrapped.self) }
        if cell.isNull { return nil }
        return try Wrapped.decode(from: cell)
    }
}
