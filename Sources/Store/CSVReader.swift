import Foundation

/// One CSV record and the physical line (1-based) it starts on.
public struct CSVRecord: Sendable, Equatable {
    public var line: Int
    public var fields: [String]
    /// Set when the record is malformed (e.g. a quoted field never closed); `fields` is then partial.
    public var error: String?

    public init(line: Int, fields: [String], error: String? = nil) {
        self.line = line
        self.fields = fields
        self.error = error
    }
}

/// One CSV record as raw bytes, reused from record to record by `CSVReader.nextRaw(into:)` (no `String` per
/// field): field `i` is `bytes[start(i)..<end(i)]`, unquoted (`""` already turned into `"`), not decoded.
public struct CSVRawRecord: Sendable {
    public internal(set) var line = 0
    public internal(set) var error: String?
    /// The fields' bytes, one after the other.
    public internal(set) var bytes: [UInt8] = []
    /// End offset in `bytes` of each field.
    public internal(set) var ends: [Int] = []

    public init() {}

    public var count: Int { ends.count }
    @inline(__always) public func start(_ i: Int) -> Int { i == 0 ? 0 : ends[i - 1] }
    @inline(__always) public func end(_ i: Int) -> Int { ends[i] }
    /// Field `i` decoded as UTF-8 (invalid sequences replaced, as `CSVRecord` does).
    public func string(_ i: Int) -> String {
        bytes.withUnsafeBufferPointer { String(decoding: UnsafeBufferPointer(rebasing: $0[start(i)..<end(i)]), as: UTF8.self) }
    }
}

/// A streaming RFC 4180 reader: `,` separated, `"` quoted (`""` is a quote), commas, CR and LF inside quotes,
/// CRLF / LF / CR record ends, a leading UTF-8 BOM skipped, blank lines skipped. Lenient where RFC 4180 is
/// silent: a quote inside an unquoted field, or text after a closing quote, is kept literally.
public final class CSVReader {
    private let source: () throws -> [UInt8]?
    /// The current chunk, copied into memory owned by the reader (no array access per byte).
    private var buffer: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private var count = 0
    private var index = 0
    private var finished = false
    private var started = false
    private var line = 1
    private var raw = CSVRawRecord()

    /// Reads `path` in 1 MiB chunks.
    public convenience init(path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CSVReaderError(message: "cannot open \(path)")
        }
        self.init {
            let data = try handle.read(upToCount: 1 << 20) ?? Data()
            if data.isEmpty { try? handle.close(); return nil }
            return [UInt8](data)
        }
    }

    /// Reads from memory.
    public convenience init(bytes: [UInt8]) {
        var done = false
        self.init {
            if done { return nil }
            done = true
            return bytes
        }
    }

    public init(source: @escaping () throws -> [UInt8]?) {
        self.source = source
        capacity = 64 * 1024
        buffer = .allocate(capacity: capacity)
    }

    deinit { buffer.deallocate() }

    /// Loads the next non-empty chunk; false at the end of the input.
    private func refill() throws -> Bool {
        while index >= count {
            if finished { return false }
            guard let more = try source() else { finished = true; return false }
            if more.count > capacity {
                buffer.deallocate()
                capacity = more.count
                buffer = .allocate(capacity: capacity)
            }
            more.withUnsafeBufferPointer { if let base = $0.baseAddress { buffer.update(from: base, count: $0.count) } }
            count = more.count
            index = 0
            if !started && count > 0 {
                started = true
                if count >= 3 && buffer[0] == 0xEF && buffer[1] == 0xBB && buffer[2] == 0xBF { index = 3 }
            }
        }
        return true
    }

    @inline(__always) private func nextByte() throws -> UInt8? {
        if try index < count || refill() {
            let b = buffer[index]
            index += 1
            return b
        }
        return nil
    }

    @inline(__always) private func peekByte() throws -> UInt8? {
        if try index < count || refill() { return buffer[index] }
        return nil
    }

    /// The next non-blank record, or nil at the end of the input.
    public func next() throws -> CSVRecord? {
        guard try nextRaw(into: &raw) else { return nil }
        var fields: [String] = []
        fields.reserveCapacity(raw.count)
        for i in 0..<raw.count { fields.append(raw.string(i)) }
        return CSVRecord(line: raw.line, fields: fields, error: raw.error)
    }

    /// Like `next()` but without decoding: fills `record` (its storage is reused); false at the end of the input.
    public func nextRaw(into record: inout CSVRawRecord) throws -> Bool {
        record.bytes.removeAll(keepingCapacity: true)
        record.ends.removeAll(keepingCapacity: true)
        record.error = nil
        while true {
            guard var b = try nextByte() else { return false }
            let startLine = line
            // Bytes of the current field start at `fieldStart` in record.bytes.
            var fieldStart = record.bytes.count
            var quotedField = false
            var sawContent = false
            while true {
                if b == UInt8(ascii: "\"") && record.bytes.count == fieldStart && !quotedField {
                    // A quoted field: read up to the closing quote.
                    quotedField = true
                    sawContent = true
                    var closed = false
                    while let q = try nextByte() {
                        if q == UInt8(ascii: "\"") {
                            if try peekByte() == UInt8(ascii: "\"") { index += 1; record.bytes.append(q); continue }
                            closed = true
                            break
                        }
                        if q == 0x0A { line += 1 }
                        record.bytes.append(q)
                    }
                    if !closed {
                        record.ends.append(record.bytes.count)
                        record.line = startLine
                        record.error = "unterminated quoted field"
                        return true
                    }
                } else if b == UInt8(ascii: ",") {
                    record.ends.append(record.bytes.count)
                    fieldStart = record.bytes.count
                    quotedField = false
                    sawContent = true
                } else if b == 0x0A || b == 0x0D {
                    if b == 0x0D, try peekByte() == 0x0A { index += 1 }
                    line += 1
                    break
                } else {
                    // A run of plain bytes, copied at once.
                    let runStart = index - 1
                    var runEnd = index
                    while runEnd < count {
                        let c = buffer[runEnd]
                        if c == UInt8(ascii: ",") || c == 0x0A || c == 0x0D { break }
                        runEnd += 1
                    }
                    record.bytes.append(contentsOf: UnsafeBufferPointer(start: buffer + runStart, count: runEnd - runStart))
                    index = runEnd
                    sawContent = true
                }
                guard let following = try nextByte() else { break }
                b = following
            }
            if !sawContent {  // a blank line
                record.bytes.removeAll(keepingCapacity: true)
                record.ends.removeAll(keepingCapacity: true)
                continue
            }
            record.ends.append(record.bytes.count)
            record.line = startLine
            return true
        }
    }
}

public struct CSVReaderError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}
