import Foundation
@testable import Postgres
import Testing

/// The hand-written text codecs, without a server.
@Suite("Postgres text codecs")
struct CodecTests {
    func parse(_ text: String) -> Date? {
        Array(text.utf8).withUnsafeBytes { PostgresText.parseTimestamp($0) }
    }

    func format(_ date: Date) -> String {
        var buffer: [UInt8] = []
        PostgresText.appendTimestamp(date, to: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }

    @Test("timestamps parse in every form the server prints")
    func timestamps() {
        let base = parse("2026-11-22 10:00:00+00")!
        #expect(base == Date(timeIntervalSince1970: 1_795_341_600))
        #expect(parse("2026-11-22 10:00:00.5+00") == base.addingTimeInterval(0.5))
        #expect(parse("2026-11-22 15:30:00+05:30") == base)
        #expect(parse("2026-11-22 04:00:00-06") == base)
        #expect(parse("2026-11-22 10:00:00") == base)
        #expect(parse("2026-11-22T10:00:00Z") == base)
        #expect(parse("2026-11-22") == base.addingTimeInterval(-36_000))
        #expect(parse("1970-01-01 00:00:00+00") == Date(timeIntervalSince1970: 0))
        #expect(parse("infinity") == .distantFuture)
        #expect(parse("-infinity") == .distantPast)
        #expect(parse("0001-01-01 00:00:00+00 BC") == Date(timeIntervalSinceReferenceDate: -63_145_526_400))
        #expect(parse("garbage") == nil)
        #expect(parse("2026-13-01 00:00:00+00") == nil)
        #expect(parse("2026-11-22 10:00:00+00 trailing") == nil)
    }

    @Test("timestamps format as ISO UTC with microseconds")
    func timestampFormat() {
        #expect(format(Date(timeIntervalSince1970: 0)) == "1970-01-01 00:00:00.000000+00")
        #expect(format(Date(timeIntervalSince1970: 1_795_341_600.123456)) == "2026-11-22 10:00:00.123456+00")
        #expect(format(Date(timeIntervalSince1970: -0.000001)) == "1969-12-31 23:59:59.999999+00")
        #expect(format(Date(timeIntervalSinceReferenceDate: -63_145_526_400)) == "0001-01-01 00:00:00.000000+00 BC")
        for micros in stride(from: Int64(-5_000_000_000_000_000), through: 5_000_000_000_000_000, by: 123_456_789_012_345) {
            let date = PostgresText.date(micros: micros)
            #expect(parse(format(date)) == date)
        }
    }

    @Test("integers parse with overflow checks")
    func integers() {
        func p(_ s: String) -> Int64? { Array(s.utf8).withUnsafeBytes { PostgresText.parseInt64($0) } }
        #expect(p("0") == 0)
        #expect(p("-9223372036854775808") == Int64.min)
        #expect(p("9223372036854775807") == Int64.max)
        #expect(p("9223372036854775808") == nil)
        #expect(p("12a") == nil)
        #expect(p("") == nil)
        #expect(p("-") == nil)
        var buffer: [UInt8] = []
        for value in [Int64.min, -10, -1, 0, 9, 10, Int64.max] {
            buffer.removeAll()
            PostgresText.appendDecimal(value, to: &buffer)
            #expect(String(decoding: buffer, as: UTF8.self) == String(value))
        }
    }

    @Test("array literals escape and parse quotes, backslashes, commas and NULL")
    func arrays() {
        let values: [String?] = ["a", nil, "b c", "q\"uote", "back\\slash", "comma,", "NULL", "", "{}"]
        var buffer: [UInt8] = []
        PostgresText.appendArrayLiteral(values, to: &buffer)
        #expect(String(decoding: buffer, as: UTF8.self) == #"{"a",NULL,"b c","q\"uote","back\\slash","comma,","NULL","","{}"}"#)
        func parse(_ s: String) -> [String?]? {
            Array(s.utf8).withUnsafeBytes { raw in
                var out: [String?] = []
                let ok = PostgresText.parseArray(raw) { out.append($0.map { String(decoding: $0, as: UTF8.self) }); return true }
                return ok ? out : nil
            }
        }
        #expect(parse(String(decoding: buffer, as: UTF8.self)) == values)
        #expect(parse(#"{a,"b c",NULL}"#) == ["a", "b c", nil])
        #expect(parse("{}") == [])
        #expect(parse("[0:1]={x,y}") == ["x", "y"])
        #expect(parse("{{1,2},{3,NULL}}") == ["1", "2", "3", nil])
        #expect(parse("{unterminated") == nil)
    }

    @Test("uuid and bytea text forms")
    func uuidAndBytea() {
        let uuid = UUID()
        var buffer: [UInt8] = []
        PostgresText.appendUUID(uuid, to: &buffer)
        #expect(String(decoding: buffer, as: UTF8.self) == uuid.uuidString.lowercased())
        #expect(buffer.withUnsafeBytes { PostgresText.parseUUID($0) } == uuid)
        let hex = Array(#"\x00ff10Ab"#.utf8)
        #expect(hex.withUnsafeBytes { PostgresText.parseByteaHex($0) } == [0x00, 0xFF, 0x10, 0xAB])
    }

    @Test("COPY text escaping")
    func copyEscaping() {
        var buffer: [UInt8] = []
        PostgresConnection.appendCopyText("a\tb\nc\rd\\e é", to: &buffer)
        #expect(String(decoding: buffer, as: UTF8.self) == #"a\tb\nc\rd\\e é"#)
    }

    @Test("URLs: environment order and password redaction")
    func urls() {
        #expect(PostgresURL.fromEnvironment([:]) == "postgres://127.0.0.1:5432/nurture")
        #expect(PostgresURL.fromEnvironment(["DATABASE_URL": "postgres://a/b"]) == "postgres://a/b")
        #expect(PostgresURL.fromEnvironment(["DATABASE_URL": "postgres://a/b", "NURTURE_DATABASE_URL": "postgres://c/d"]) == "postgres://c/d")
        #expect(PostgresURL.redacted("postgres://user:s3cret@db:5432/app?sslmode=require") == "postgres://user:***@db:5432/app?sslmode=require")
        #expect(PostgresURL.redacted("postgresql://user@db/app") == "postgresql://user@db/app")
        #expect(PostgresURL.redacted("postgres://db/app?user=u&password=s3cret&sslmode=disable") == "postgres://db/app?user=u&password=***&sslmode=disable")
        #expect(PostgresURL.redacted("host=db password='se cret' dbname=app") == "host=db password=*** dbname=app")
        #expect(PostgresURL.redacted("host=db password = s3cret dbname=app") == "host=db password =*** dbname=app")
    }

    @Test("errors: short description, detail only in the debug description, transient classification")
    func errors() {
        let error = PostgresError(.server, "duplicate key value violates unique constraint \"users_email_key\"", sqlState: "23505",
                                  detail: "Key (email)=(someone@example.com) already exists.", constraint: "users_email_key")
        #expect(error.description == "PostgreSQL error 23505: duplicate key value violates unique constraint \"users_email_key\"")
        #expect(!error.description.contains("someone@example.com"))
        #expect(String(reflecting: error).contains("someone@example.com"))
        #expect(error.isUniqueViolation && !error.isTransient && !error.isSerializationFailure)
        #expect(PostgresError(.server, "x", sqlState: "40001").isSerializationFailure)
        #expect(PostgresError(.server, "x", sqlState: "40P01").isTransient)
        #expect(PostgresError(.server, "x", sqlState: "57P01").isTransient)
        #expect(PostgresError(.server, "x", sqlState: "08006").isTransient)
        #expect(PostgresError(.connectionLost, "x").isTransient)
        #expect(!PostgresError(.server, "x", sqlState: "42601").isTransient)
    }
}
