import Channels
import Domain
import Foundation
import Testing

@Suite struct MIMEMessageTests {
    static let date = Date(timeIntervalSince1970: 1_748_944_800)   // Tue, 03 Jun 2025 10:00:00 +0000

    @Test func multipartStructureAndHeaders() throws {
        let html = "<p>Grüße 👋</p>\n<p>" + String(repeating: "a long line of html ", count: 20) + "</p>"
        let text = "Grüße 👋\nsecond line\n.leading dot"
        let message = emailMessage(id: "6f1c2a4e-0000-4000-8000-000000000001", subject: "Grüße 👋 from Acme",
                                   html: html, text: text,
                                   headers: [(name: "List-Unsubscribe", value: "<https://mail.acme.test/u/abc>"),
                                             (name: "List-Unsubscribe-Post", value: "List-Unsubscribe=One-Click")])
        let bytes = MIMEMessage.render(message, date: Self.date)
        let mime = try ParsedMIME(bytes)

        #expect(mime.header("Date") == "Tue, 03 Jun 2025 10:00:00 +0000")
        #expect(mime.header("From") == "Acme <hello@acme.test>")
        #expect(mime.header("To") == "ann@example.com")
        #expect(mime.header("Message-ID") == "<6f1c2a4e-0000-4000-8000-000000000001@acme.test>")
        #expect(mime.header("MIME-Version") == "1.0")
        #expect(mime.header("List-Unsubscribe") == "<https://mail.acme.test/u/abc>")
        #expect(mime.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click")
        #expect(mime.header("X-Nurture-Delivery-Id") == "6f1c2a4e-0000-4000-8000-000000000001")
        let subject = try #require(mime.header("Subject"))
        #expect(subject.hasPrefix("=?UTF-8?B?"))
        #expect(ParsedMIME.decodeEncodedWords(subject) == "Grüße 👋 from Acme")
        #expect(try #require(mime.header("Content-Type")).hasPrefix("multipart/alternative; boundary=\""))

        #expect(mime.parts.count == 2)
        #expect(mime.parts[0].header("Content-Type") == "text/plain; charset=utf-8")
        #expect(mime.parts[1].header("Content-Type") == "text/html; charset=utf-8")
        #expect(mime.parts[0].text == text.replacingOccurrences(of: "\n", with: "\r\n"))
        #expect(mime.parts[1].text == html.replacingOccurrences(of: "\n", with: "\r\n"))
        // Mostly-ASCII html is quoted-printable; every header line is within 998 (checked by ParsedMIME).
        #expect(mime.parts[1].header("Content-Transfer-Encoding") == "quoted-printable")
    }

    @Test func singlePartWhenOnlyOneBody() throws {
        let message = emailMessage(subject: "Plain", html: nil, text: "Only text")
        let mime = try ParsedMIME(MIMEMessage.render(message, date: Self.date))
        #expect(mime.header("Content-Type") == "text/plain; charset=utf-8")
        #expect(mime.parts.count == 1)
        #expect(mime.parts[0].text == "Only text")
        #expect(mime.header("Subject") == "Plain")
        #expect(mime.header("List-Unsubscribe") == nil)
    }

    @Test func quotedPrintableAndBase64RoundTrip() throws {
        let samples = [
            "Grüße 👋",
            "Grüße 👋 " + String(repeating: "x", count: 200) + " end \t\nnext line = 100% \n trailing space \n",
            String(repeating: "👋", count: 60),
            "=3D literally, and a tab\tthen\r\ncrlf line\nlf line",
            "",
        ]
        for sample in samples {
            let bytes = Array(sample.utf8)
            let crlf = Array(sample.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\n", with: "\r\n").utf8)
            let qp = MIMEMessage.quotedPrintable(bytes)
            #expect(try ParsedMIME.decodeQuotedPrintable(qp) == crlf, "qp: \(sample)")
            #expect(qp.utf8.allSatisfy { $0 < 128 })
            let b64 = MIMEMessage.base64Lines(crlf)
            #expect(b64.components(separatedBy: "\r\n").allSatisfy { $0.utf8.count <= 76 })
            #expect(Array(Data(base64Encoded: b64.replacingOccurrences(of: "\r\n", with: "")) ?? Data()) == crlf)
        }
        // Text that is mostly non-ASCII goes base64, and decodes back through a whole message.
        #expect(MIMEMessage.transferEncoding(for: Array("Grüße 👋".utf8)) == .base64)
        #expect(MIMEMessage.transferEncoding(for: Array("Hello, Grüße".utf8)) == .quotedPrintable)
        let message = emailMessage(subject: "x", html: "<p>Grüße 👋</p>", text: "Grüße 👋")
        let mime = try ParsedMIME(MIMEMessage.render(message, date: Self.date))
        #expect(mime.parts[0].header("Content-Transfer-Encoding") == "base64")
        #expect(mime.parts[0].text == "Grüße 👋")
        #expect(mime.parts[1].text == "<p>Grüße 👋</p>")
    }

    @Test func encodedWordsStayShortAndKeepCharactersWhole() throws {
        let subject = String(repeating: "Grüße 👋 ", count: 20)
        let message = emailMessage(subject: subject)
        let mime = try ParsedMIME(MIMEMessage.render(message, date: Self.date))
        #expect(ParsedMIME.decodeEncodedWords(try #require(mime.header("Subject"))) == subject)
        let subjectLines = mime.rawHeaderLines.drop { !$0.hasPrefix("Subject:") }.prefix { $0.hasPrefix("Subject:") || $0.hasPrefix(" ") }
        #expect(subjectLines.count > 1)
        for line in subjectLines {
            let word = line.hasPrefix("Subject: ") ? line.dropFirst(9) : line.dropFirst()
            #expect(word.count <= 75)
            // Each word decodes to valid UTF-8 on its own (no character split across words).
            let payload = word.dropFirst(10).dropLast(2)
            let data = try #require(Data(base64Encoded: String(payload)))
            #expect(String(data: data, encoding: .utf8) != nil)
        }
    }

    @Test func longAsciiSubjectIsFoldedAndInjectionIsDefused() throws {
        let subject = (1...30).map { "word\($0)" }.joined(separator: " ")
        let message = emailMessage(subject: subject + "\r\nBcc: victim@example.com",
                                   headers: [(name: "X-Campaign", value: "spring\r\nBcc: x@example.com"), (name: "Bad Name", value: "v")])
        let bytes = MIMEMessage.render(message, date: Self.date)
        let mime = try ParsedMIME(bytes)
        #expect(mime.header("Bcc") == nil)
        #expect(mime.header("Bad Name") == nil)
        #expect(mime.header("X-Campaign") == "spring  Bcc: x@example.com")
        #expect(try #require(mime.header("Subject")).hasPrefix(subject))
        #expect(mime.rawHeaderLines.allSatisfy { $0.utf8.count <= 78 || $0.hasPrefix("Content-Type") || $0.hasPrefix("List-") })
    }

    @Test func addressesAndDisplayNames() throws {
        #expect(MIMEMessage.formatAddress("Acme <hello@acme.test>") == "Acme <hello@acme.test>")
        #expect(MIMEMessage.formatAddress("hello@acme.test") == "hello@acme.test")
        #expect(MIMEMessage.formatAddress("Acme, Inc. <hello@acme.test>") == "\"Acme, Inc.\" <hello@acme.test>")
        #expect(MIMEMessage.formatAddress("\"Acme, Inc.\" <hello@acme.test>") == "\"Acme, Inc.\" <hello@acme.test>")
        let encoded = MIMEMessage.formatAddress("Bäckerei Müller <b@m.test>")
        #expect(encoded.hasPrefix("=?UTF-8?B?") && encoded.hasSuffix(" <b@m.test>"))
        #expect(ParsedMIME.decodeEncodedWords(String(encoded.dropLast(" <b@m.test>".count))) == "Bäckerei Müller")
        #expect(MIMEMessage.parseAddress("Acme <hello@acme.test>").address == "hello@acme.test")
        #expect(MIMEMessage.messageID(deliveryId: "abc", from: nil) == "<abc@nurture.invalid>")
    }

    @Test func dates() {
        #expect(MIMEMessage.dateHeader(Date(timeIntervalSince1970: 0)) == "Thu, 01 Jan 1970 00:00:00 +0000")
        #expect(MIMEMessage.dateHeader(Date(timeIntervalSince1970: 951_782_400)) == "Tue, 29 Feb 2000 00:00:00 +0000")
        #expect(MIMEMessage.dateHeader(Date(timeIntervalSince1970: 1_767_225_599)) == "Wed, 31 Dec 2025 23:59:59 +0000")
    }
}
