import Foundation
import Postgres
import Testing
import TestSupport

/// Every parameter type goes to the server and comes back unchanged, through `SELECT $1` and through a table.
@Suite("Postgres types")
struct TypeRoundTripTests {
    /// A date exactly representable at microsecond precision.
    static func date(micros sinceReferenceDate: Int64) -> Date {
        Date(timeIntervalSinceReferenceDate: Double(sinceReferenceDate) / 1_000_000)
    }

    /// 2026-11-22 10:00:00.123456 UTC.
    static let sampleDate: Date = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let whole = calendar.date(from: DateComponents(year: 2026, month: 11, day: 22, hour: 10))!
        return date(micros: Int64(whole.timeIntervalSinceReferenceDate) * 1_000_000 + 123_456)
    }()

    static let oddText = "tab\tnewline\ncr\rquote\"apostrophe'backslash\\comma,{braces}NULL \u{1}\u{7F}\u{FEFF}"
    static let unicodeText = "héllo wörld 日本語 Ελληνικά עברית 🎉👩‍👩‍👧 \u{10FFFF}"

    /// Decodes a `SELECT $1` column back into the value case its type OID says.
    func decodeLike(_ value: PostgresValue, _ cell: PostgresCell) throws -> PostgresValue {
        if cell.isNull { return .null }
        switch value {
        case .null: return .null
        case .text: return .text(try cell.decode(String.self))
        case .int: return .int(try cell.decode(Int64.self))
        case .double: return .double(try cell.decode(Double.self))
        case .bool: return .bool(try cell.decode(Bool.self))
        case .timestamp: return .timestamp(try cell.decode(Date.self))
        case .jsonb: return .jsonb(try cell.decode(String.self))
        case .uuid: return .uuid(try cell.decode(UUID.self))
        case .bytea: return .bytea(try cell.decode([UInt8].self))
        case .textArray: return .textArray(try cell.decode([String?].self))
        case .intArray: return .intArray(try cell.decode([Int64?].self))
        }
    }

    static let values: [PostgresValue] = [
        .text(""), .text("plain"), .text(unicodeText), .text(oddText), .text(String(repeating: "x", count: 100_000)),
        .int(0), .int(-1), .int(42), .int(Int64.max), .int(Int64.min), .int(-9_007_199_254_740_993),
        .double(0), .double(-0.5), .double(0.1), .double(1.0 / 3.0), .double(-1e300), .double(.leastNonzeroMagnitude),
        .double(Double.greatestFiniteMagnitude), .double(.infinity), .double(-.infinity),
        .bool(true), .bool(false),
        .timestamp(sampleDate),
        .timestamp(date(micros: -1_000_000_000_000_001)),               // 1969-04-23 23:59:59.999999
        .timestamp(date(micros: 0)),                                      // 2001-01-01 00:00:00
        .timestamp(date(micros: -978_307_200_000_000)),                  // 1970-01-01 00:00:00
        .timestamp(date(micros: 1)),
        .timestamp(Date(timeIntervalSinceReferenceDate: 252_423_993_599)),   // 9999-12-31 23:59:59
        .timestamp(Date(timeIntervalSinceReferenceDate: -63_113_904_000)),   // 0001-01-01 00:00:00
        .timestamp(Date(timeIntervalSinceReferenceDate: -63_240_134_400)),   // 0004-01-01 00:00:00 BC
        .jsonb("{}"), .jsonb(#"{"a": 1, "b": [true, null, "x\"y"], "emoji": "🎉"}"#), .jsonb("[1, 2.5, \"é\"]"),
        .uuid(UUID()), .uuid(UUID(uuidString: "00000000-0000-0000-0000-000000000000")!),
        .uuid(UUID(uuidString: "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF")!),
        .bytea([]), .bytea([0, 1, 2, 0x5C, 0x27, 0x22, 0x7F, 0x80, 0xFF]), .bytea(Array(0...255)),
        .textArray([]), .textArray(["a"]),
        .textArray(["a", nil, "b c", "quote\"d", "back\\slash", "comma,", "{brace}", "NULL", "null", "", " padded ", "🎉", "tab\tnl\n"]),
        .intArray([]), .intArray([1, nil, -2, Int64.max, Int64.min, nil]),
    ]

    @Test("every value round-trips through SELECT $1")
    func selectRoundTrip() throws {
        let database = try TestDatabase.create()
        defer { database.drop() }
        let connection = try database.connect()
        for value in TypeRoundTripTests.values {
            let result = try connection.query("SELECT $1 AS v", [value])
            let back = try decodeLike(value, result.rows[0]["v"])
            #expect(back == value, "\(value)")
        }
        // NaN is not equal to itself.
        let nan = try connection.query("SELECT $1 AS v", [.double(.nan)]).rows[0]["v"].double
        #expect(nan?.isNaN == true)
    }

    @Test("every type round-trips through a table, NULLs of each type too")
    func tableRoundTrip() throws {
        try withTestDatabase { db in
            let c = db.connection
            try c.simpleQuery("""
                CREATE TABLE everything (id int8 PRIMARY KEY, t text, i int8, d float8, b bool, ts timestamptz,
                    j jsonb, u uuid, by bytea, ta text[], ia int8[], i4 int4, v varchar(200), dt date, tsn timestamp)
                """)
            let uuid = UUID()
            let row: [PostgresValue] = [1, .text(TypeRoundTripTests.unicodeText), .int(Int64.min), .double(-1.5e-7), true,
                                        .timestamp(TypeRoundTripTests.sampleDate), .jsonb(#"{"k": "v"}"#), .uuid(uuid),
                                        .bytea([0, 255, 10]), .textArray(["x", nil, "y,z"]), .intArray([nil, 7]),
                                        .int(2_147_483_647), .text(TypeRoundTripTests.oddText), .timestamp(TypeRoundTripTests.sampleDate),
                                        .timestamp(TypeRoundTripTests.sampleDate)]
            let inserted = try c.execute("INSERT INTO everything VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14::date,$15)", row)
            #expect(inserted == 1)
            try c.execute("INSERT INTO everything VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)",
                          [2] + Array(repeating: PostgresValue.null, count: 14))
            try c.execute("INSERT INTO everything (id, t, i, d, b, ts, j, u, by, ta, ia) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                          [3, PostgresValue(nil as String?), PostgresValue(nil as Int?), PostgresValue(nil as Double?),
                           PostgresValue(nil as Bool?), PostgresValue(nil as Date?), .null, PostgresValue(nil as UUID?),
                           PostgresValue(nil as [UInt8]?), .null, .null])

            let result = try c.query("SELECT * FROM everything ORDER BY id")
            #expect(result.rows.count == 3)
            #expect(result.columns.first == "id")
            let r = result.rows[0]
            #expect(r["t"].string == TypeRoundTripTests.unicodeText)
            #expect(r["i"].int == Int64.min)
            #expect(r["d"].double == -1.5e-7)
            #expect(r["b"].bool == true)
            #expect(r["ts"].date == TypeRoundTripTests.sampleDate)
            #expect(r["j"].string == #"{"k": "v"}"#)
            #expect(r["u"].uuid == uuid)
            #expect(r["by"].bytes == [0, 255, 10])
            #expect(r["ta"].stringArray == ["x", nil, "y,z"])
            #expect(r["ia"].intArray == [nil, 7])
            #expect(try r["i4"].decode(Int.self) == 2_147_483_647)
            #expect(try r["v"].decode(String.self) == TypeRoundTripTests.oddText)
            // date: midnight UTC of the day; timestamp without time zone: read as UTC.
            #expect(r["dt"].date == Date(timeIntervalSinceReferenceDate: (TypeRoundTripTests.sampleDate.timeIntervalSinceReferenceDate / 86_400).rounded(.down) * 86_400))
            #expect(r["tsn"].date == TypeRoundTripTests.sampleDate)
            #expect(r[0].int == 1)

            for nullRow in result.rows.dropFirst() {
                for column in result.columns.dropFirst() {
                    let cell = nullRow[column]
                    #expect(cell.isNull, "\(column) should be NULL")
                    #expect(cell.string == nil && cell.int == nil && cell.date == nil && cell.bytes == nil)
                    #expect(try cell.decode(String?.self) == nil)
                    #expect(try cell.decode(Int64?.self) == nil)
                    let error = expectPostgresError { _ = try cell.decode(String.self) }
                    #expect(error?.kind == .decode)
                    #expect(error?.message.contains(column) == true)
                }
            }
        }
    }

    @Test("a ~1 MB jsonb document round-trips")
    func largeJSONB() throws {
        try withTestDatabase { db in
            let c = db.connection
            try c.simpleQuery("CREATE TABLE docs (id int8 PRIMARY KEY, body jsonb NOT NULL)")
            // jsonb's own output form (", " between elements), so the text comes back byte for byte.
            let items = (0..<20_000).map { #""item \#($0) – héllo 🎉 \"quoted\" padding-padding-padding""# }
            let json = "[" + items.joined(separator: ", ") + "]"
            #expect(json.utf8.count > 1_000_000)
            try c.execute("INSERT INTO docs VALUES ($1, $2)", [1, .jsonb(json)])
            let row = try c.query("SELECT body, jsonb_array_length(body) AS n, body->>19999 AS last FROM docs WHERE id = $1", [1]).rows[0]
            #expect(row["n"].int == 20_000)
            #expect(row["last"].string == #"item 19999 – héllo 🎉 "quoted" padding-padding-padding"#)
            #expect(row["body"].string == json)
        }
    }

    @Test("literals and optional initializers build the expected values")
    func literals() {
        let values: [PostgresValue] = ["s", 1, 2.5, true, nil]
        #expect(values == [.text("s"), .int(1), .double(2.5), .bool(true), .null])
        #expect(PostgresValue(nil as String?) == .null)
        #expect(PostgresValue(Optional<Int>.some(3)) == .int(3))
        #expect(PostgresValue(Int64(4)) == .int(4))
        #expect(PostgresValue(Date(timeIntervalSince1970: 0)) == .timestamp(Date(timeIntervalSince1970: 0)))
    }

    @Test("decode errors name the column and the type, never crash")
    func decodeErrors() throws {
        let database = try TestDatabase.create()
        defer { database.drop() }
        let c = try database.connect()
        let row = try c.query("SELECT 'abc'::text AS word, 3000000000::int8 AS big").rows[0]
        let notInt = expectPostgresError { _ = try row["word"].decode(Int.self) }
        #expect(notInt?.kind == .decode)
        #expect(notInt?.message.contains("word") == true)
        let missing = expectPostgresError { _ = try row["nope"].decode(String?.self) }
        #expect(missing?.kind == .decode)
        #expect(missing?.message.contains("nope") == true)
        #expect(row["nope"].isNull)
        let narrow = expectPostgresError { _ = try row["big"].decode(Int32.self) }
        #expect(narrow?.kind == .decode)
        let unsupported = expectPostgresError { _ = try row["word"].decode(Float.self) }
        #expect(unsupported?.kind == .decode)
        #expect(try row["big"].decode(Int.self) == 3_000_000_000)
    }

    @Test("NUL characters in text parameters are refused, not truncated")
    func nulInText() throws {
        let database = try TestDatabase.create()
        defer { database.drop() }
        let c = try database.connect()
        let error = expectPostgresError { try c.query("SELECT $1", [.text("a\u{0}b")]) }
        #expect(error?.kind == .usage)
        #expect(try c.query("SELECT 1 AS one").rows[0]["one"].int == 1)
    }
}
