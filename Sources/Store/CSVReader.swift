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

/// A streaming RFC 4180 reader: `,` separated, `"` quoted (`""` is a quote), commas, CR and LF inside quotes,
/// CRLF / LF / CR record ends, a leading UTF-8 BOM skipped, blank lines skipped. Lenient where RFC 4180 is
/// silent: a quote inside an unquoted field, or text after a closing quote, is kept literally.
public final class CSVReader {
    private let source: () throws -> [UInt8]?
    private var chunk: [UInt8] = []
    private var index = 0
    private var finished = false
    private var started = false
    private var line = 1

    /// Reads `path` in 256 KiB chunks.
    public convenience init(path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CSVReaderError(message: "cannot open \(path)")
        }
        self.init {
            let data = try handle.read(upToCount: 256 * 1024) ?? Data()
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
    }

    private func nextByte() throws -> UInt8? {
        while index >= chunk.count {
            if finished { return nil }
            guard let more = try source() else { finished = true; return nil }
            chunk = more
            index = 0
            if !started && !chunk.isEmpty {
                started = true
                if chunk.count >= 3 && chunk[0] == 0xEF && chunk[1] == 0xBB && chunk[2] == 0xBF { index = 3 }
            }
        }
        let b = chunk[index]
        index += 1
        return b
    }

    private func peekByte() throws -> UInt8? {
        if index >= chunk.count {
            guard let b = try nextByte() else { return nil }
            index -= 1
            return b
        }
        return chunk[index]
    }

    /// The next non-blank record, or nil at the end of the input.
    public func next() throws -> CSVRecord? {
        while true {
            guard var b = try nextByte() else { return nil }
            let startLine = line
            var fields: [String] = []
            var field: [UInt8] = []
            var quotedField = false
            var sawContent = false
            while true {
                if b == UInt8(ascii: "\"") && field.isEmpty && !quotedField {
                    // A quoted field: read up to the closing quote.
                    quotedField = true
                    sawContent = true
                    var closed = false
                    while let q = try nextByte() {
                        if q == UInt8(ascii: "\"") {
                            if try peekByte() == UInt8(ascii: "\"") { _ = try nextByte(); field.append(q); continue }
                            closed = true
                            break
                        }
                        if q == 0x0A { line += 1 }
                        field.append(q)
                    }
                    if !closed {
                        fields.append(String(decoding: field, as: UTF8.self))
                        return CSVRecord(line: startLine, fields: fields, error: "unterminated quoted field")
                    }
                } else if b == UInt8(ascii: ",") {
                    fields.append(String(decoding: field, as: UTF8.self))
                    field.removeAll(keepingCapacity: true)
                    quotedField = false
                    sawContent = true
                } else if b == 0x0A || b == 0x0D {
                    if b == 0x0D, try peekByte() == 0x0A { _ = try nextByte() }
                    line += 1
                    break
                } else {
                    field.append(b)
                    sawContent = true
                }
                guard let following = try nextByte() else { break }
                b = following
            }
            if !sawContent { continue }  // a blank line
            fields.append(String(decoding: field, as: UTF8.self))
            return CSVRecord(line: startLine, fields: fields)
        }
    }
}

public struct CSVReaderError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}
