import Foundation
import TestSupport
import Testing
import Transport

@Suite(.serialized)
struct SMTPClientTests {
    init() { Curl.globalInit() }

    /// A multipart/alternative newsletter: encoded-word subject, 8-bit UTF-8 parts, List-Unsubscribe, and lines
    /// that need dot-stuffing (one is a lone ".", which would end DATA if sent raw).
    static func newsletter(to recipients: [String], id: String) -> [UInt8] {
        let subject = "=?UTF-8?B?\(Data("Grüße 🎉 aus Köln".utf8).base64EncodedString())?="
        let lines = [
            "From: Nurture <news@nurture.test>",
            "To: \(recipients.joined(separator: ", "))",
            "Subject: \(subject)",
            "Date: Tue, 03 Jun 2025 10:00:00 +0000",
            "Message-ID: <\(id)@nurture.test>",
            "MIME-Version: 1.0",
            "List-Unsubscribe: <https://nurture.test/u/\(id)>, <mailto:unsubscribe@nurture.test?subject=\(id)>",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            "Content-Type: multipart/alternative; boundary=\"=_b1\"",
            "",
            "--=_b1",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
            "",
            "Grüße 🎉",
            ".a line starting with a dot",
            "..two dots",
            ".",
            "end of text",
            "--=_b1",
            "Content-Type: text/html; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
            "",
            "<p>Grüße 🎉</p>",
            "--=_b1--",
            "",
        ]
        return Array(lines.joined(separator: "\r\n").utf8)
    }

    @Test func multipartMessageArrivesIntactAndTheSessionIsReused() throws {
        let sink = try SinkProcess(script: "smtp_sink.py")
        defer { sink.stop() }
        let client = SMTPClient(config: SMTPConfig(url: "smtp://127.0.0.1:\(sink.port)"))
        let recipients = ["anna@example.test", "björn@example.test"]
        let first = SMTPClientTests.newsletter(to: recipients, id: "m1")
        try client.send(from: "bounce+m1@nurture.test", to: recipients, message: first)
        let second = SMTPClientTests.newsletter(to: ["carl@example.test"], id: "m2")
        try client.send(from: "bounce+m2@nurture.test", to: ["carl@example.test"], message: second)

        let records = try sink.records(SMTPRecord.self)
        try #require(records.count == 2)
        #expect(records[0].mail_from == "bounce+m1@nurture.test")
        #expect(records[0].rcpt_tos == recipients)
        #expect(records[0].data == first)   // byte for byte: CRLF message, dots unstuffed by the server
        #expect(records[1].mail_from == "bounce+m2@nurture.test")
        #expect(records[1].rcpt_tos == ["carl@example.test"])
        #expect(records[1].data == second)
        #expect(String(decoding: records[0].data, as: UTF8.self).contains("Grüße 🎉"))
        // One SMTP session for both messages.
        #expect(client.connectionsOpened == 1)
        #expect(records[0].peer_port == records[1].peer_port)
    }

    @Test func sessionDroppedByTheServerIsReopened() throws {
        let first = try SinkProcess(script: "smtp_sink.py")
        let client = SMTPClient(config: SMTPConfig(url: "smtp://127.0.0.1:\(first.port)"))
        let message = Array("Subject: x\r\n\r\nx\r\n".utf8)
        try client.send(from: "a@nurture.test", to: ["b@example.test"], message: message)
        first.stop()   // the idle session dies with the server (as when an MTA times it out)
        let second = try SinkProcess(script: "smtp_sink.py", port: first.port)
        defer { second.stop() }
        try client.send(from: "a@nurture.test", to: ["c@example.test"], message: message)
        #expect(client.connectionsOpened == 2)
        #expect(try second.records(SMTPRecord.self).map(\.rcpt_tos) == [["c@example.test"]])
    }

    @Test func bareLineFeedsAreSentAsCRLF() throws {
        let sink = try SinkProcess(script: "smtp_sink.py")
        defer { sink.stop() }
        let client = SMTPClient(config: SMTPConfig(url: "smtp://127.0.0.1:\(sink.port)"))
        let message = Array("Subject: lf\nFrom: a@nurture.test\n\nline one\n.\nlast, no newline".utf8)
        try client.send(from: "a@nurture.test", to: ["b@example.test"], message: message)
        let record = try #require(try sink.records(SMTPRecord.self).first)
        let normalised = String(decoding: record.data, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n")
        #expect(normalised.trimmingCharacters(in: .newlines) == String(decoding: message, as: UTF8.self))
        #expect(!String(decoding: record.data, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "").contains("\n"))
    }

    @Test func authenticates() throws {
        let sink = try SinkProcess(script: "smtp_sink.py", arguments: ["--auth", "mailer:s3cret-pw"])
        defer { sink.stop() }
        var config = SMTPConfig(url: "smtp://127.0.0.1:\(sink.port)")
        config.username = "mailer"
        config.password = "s3cret-pw"
        let client = SMTPClient(config: config)
        try client.send(from: "a@nurture.test", to: ["b@example.test"], message: Array("Subject: hi\r\n\r\nhello\r\n".utf8))
        try client.send(from: "a@nurture.test", to: ["c@example.test"], message: Array("Subject: hi again\r\n\r\nhello\r\n".utf8))
        let records = try sink.records(SMTPRecord.self)
        #expect(records.map(\.login) == ["mailer", "mailer"])
        #expect(client.connectionsOpened == 1)
        #expect(!config.description.contains("s3cret-pw"))
    }

    @Test func wrongPasswordIsRejected() throws {
        let sink = try SinkProcess(script: "smtp_sink.py", arguments: ["--auth", "mailer:s3cret-pw"])
        defer { sink.stop() }
        let client = SMTPClient(config: SMTPConfig(url: "smtp://127.0.0.1:\(sink.port)", username: "mailer", password: "wrong-pw"))
        let error = #expect(throws: TransportError.self) {
            try client.send(from: "a@nurture.test", to: ["b@example.test"], message: Array("Subject: hi\r\n\r\nhello\r\n".utf8))
        }
        #expect(error?.kind == .rejected)
        #expect(error?.smtpCode == 535)
        #expect(error?.isTransient == false)
        let message = error?.message ?? ""
        #expect(!message.contains("wrong-pw"))
        #expect(try sink.records(SMTPRecord.self).isEmpty)
    }

    @Test func refusedPortIsAConnectError() throws {
        let port = TestEnvironment.freePort()
        let client = SMTPClient(config: SMTPConfig(url: "smtp://127.0.0.1:\(port)"))
        let start = ContinuousClock.now
        let error = #expect(throws: TransportError.self) {
            try client.send(from: "a@nurture.test", to: ["b@example.test"], message: Array("Subject: x\r\n\r\nx\r\n".utf8))
        }
        #expect(ContinuousClock.now - start < .seconds(1))
        #expect(error?.kind == .connect)
        #expect(error?.isTransient == true)
        #expect(error?.smtpCode == nil)
    }

    @Test func rejectedRecipientIsPermanent() throws {
        let sink = try SinkProcess(script: "smtp_sink.py", arguments: ["--reject-rcpt", "nobody:550"])
        defer { sink.stop() }
        let client = SMTPClient(config: SMTPConfig(url: "smtp://127.0.0.1:\(sink.port)"))
        let error = #expect(throws: TransportError.self) {
            try client.send(from: "a@nurture.test", to: ["b@example.test", "nobody@example.test"],
                            message: Array("Subject: x\r\n\r\nx\r\n".utf8))
        }
        #expect(error?.kind == .rejected)
        #expect(error?.smtpCode == 550)
        #expect(error?.isTransient == false)
        let message = error?.message ?? ""
        #expect(!message.contains("nobody@example.test"))
        #expect(try sink.records(SMTPRecord.self).isEmpty)
        // The client recovers: the next message goes through.
        try client.send(from: "a@nurture.test", to: ["b@example.test"], message: Array("Subject: y\r\n\r\ny\r\n".utf8))
        #expect(try sink.records(SMTPRecord.self).count == 1)
    }

    @Test func temporaryFailureIsTransient() throws {
        let sink = try SinkProcess(script: "smtp_sink.py", arguments: ["--reject-rcpt", "busy:451"])
        defer { sink.stop() }
        let client = SMTPClient(config: SMTPConfig(url: "smtp://127.0.0.1:\(sink.port)"))
        let error = #expect(throws: TransportError.self) {
            try client.send(from: "a@nurture.test", to: ["busy@example.test"], message: Array("Subject: x\r\n\r\nx\r\n".utf8))
        }
        #expect(error?.kind == .rejected)
        #expect(error?.smtpCode == 451)
        #expect(error?.isTransient == true)
    }

    @Test func requiredTLSFailsWithoutSTARTTLS() throws {
        let sink = try SinkProcess(script: "smtp_sink.py")
        defer { sink.stop() }
        let client = SMTPClient(config: SMTPConfig(url: "smtp://127.0.0.1:\(sink.port)", requireTLS: true))
        let error = #expect(throws: TransportError.self) {
            try client.send(from: "a@nurture.test", to: ["b@example.test"], message: Array("Subject: x\r\n\r\nx\r\n".utf8))
        }
        #expect(error?.kind == .tls)
        #expect(try sink.records(SMTPRecord.self).isEmpty)
    }

    @Test func badArgumentsAreRefusedBeforeConnecting() throws {
        let client = SMTPClient(config: SMTPConfig(url: "smtp://127.0.0.1:1"))
        let injected = #expect(throws: TransportError.self) {
            try client.send(from: "a@nurture.test", to: ["b@example.test>\r\nRCPT TO:<c@example.test"], message: [])
        }
        #expect(injected?.kind == .other)
        let none = #expect(throws: TransportError.self) {
            try client.send(from: "a@nurture.test", to: [], message: [])
        }
        #expect(none?.kind == .other)
        let http = #expect(throws: TransportError.self) {
            try SMTPClient(config: SMTPConfig(url: "http://127.0.0.1:1")).send(from: "a@x.test", to: ["b@x.test"], message: [])
        }
        #expect(http?.kind == .invalidURL)
    }

    @Test func versionMentionsLibcurl() {
        #expect(Curl.version.contains("libcurl/"))
    }
}
