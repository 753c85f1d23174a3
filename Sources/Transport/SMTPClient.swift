internal import CCurl

/// Where and how to submit mail.
public struct SMTPConfig: Sendable, CustomStringConvertible {
    /// `smtp://host:port` (plain, optionally upgraded with STARTTLS) or `smtps://host:port` (TLS from the first
    /// byte). A path is the EHLO name: `smtp://mail.example.com:587/nurture.example.com`.
    public var url: String
    /// Set both to authenticate (curl picks the best mechanism the server offers: PLAIN, LOGIN, CRAM-MD5, ...).
    public var username: String?
    public var password: String?
    /// How long the TCP (and TLS) handshake may take.
    public var connectTimeoutMilliseconds: Int64 = 5_000
    /// How long one whole send may take, connect included.
    public var timeoutMilliseconds: Int64 = 30_000
    /// `smtp://` only: true refuses to send unless STARTTLS succeeds (`CURLUSESSL_ALL`). False still upgrades
    /// when the server offers STARTTLS (`CURLUSESSL_TRY`) and sends in the clear when it does not.
    public var requireTLS: Bool = false
    /// Verify the server's certificate and host name. Turn off only for test servers with self-signed certificates.
    public var verifyPeer: Bool = true

    public init(url: String, username: String? = nil, password: String? = nil, connectTimeoutMilliseconds: Int64 = 5_000,
                timeoutMilliseconds: Int64 = 30_000, requireTLS: Bool = false, verifyPeer: Bool = true) {
        self.url = url
        self.username = username
        self.password = password
        self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
        self.timeoutMilliseconds = timeoutMilliseconds
        self.requireTLS = requireTLS
        self.verifyPeer = verifyPeer
    }

    /// The URL without credentials, and whether a password is set (never the password).
    public var description: String {
        "\(CurlEasy.redact(url))\(username.map { " as \($0)" } ?? "")\(password == nil ? "" : " (password set)")"
    }
}

/// A blocking SMTP submission client over one reused libcurl easy handle.
///
/// `send` runs on the caller's thread (use a dedicated thread, never the Swift concurrency pool). curl keeps the
/// SMTP session open after a message, so the next `send` skips connect, EHLO, STARTTLS and AUTH and goes straight
/// to `MAIL FROM`; `connectionsOpened` shows how many sessions were opened.
public final class SMTPClient: @unchecked Sendable {
    // Safety (@unchecked Sendable): a curl easy handle is not thread-safe. An SMTPClient is confined to one user at
    // a time (owned by one thread, or lent out by a pool to one borrower at a time under its lock); no method here
    // is ever entered concurrently. Sendable only so it can move between those owners.
    private let easy = CurlEasy()
    public let config: SMTPConfig

    public init(config: SMTPConfig) {
        self.config = config
    }

    /// SMTP sessions (TCP connections) opened so far; stays 1 while the server keeps the session alive.
    public var connectionsOpened: Int { easy.connectionsOpened }

    /// Ends the open SMTP session (curl sends `QUIT`); the next `send` opens a new one.
    public func close() { easy.close() }

    /// Submits one message: `MAIL FROM:<from>`, `RCPT TO:<r>` for each recipient, then `DATA` with `message`.
    ///
    /// - Parameters:
    ///   - from: the envelope sender (bounce address), a bare address without angle brackets; empty for `<>`.
    ///   - recipients: envelope recipients, bare addresses. Every one must be accepted, else nothing is sent.
    ///   - message: a complete RFC 5322 message (headers, blank line, body). Bare LF line endings are sent as
    ///     CRLF; curl dot-stuffs lines that start with "." and adds the final `.` line.
    /// - Throws: `.rejected` with `smtpCode` when the server refuses (5xx permanent, 4xx transient), `.connect`,
    ///   `.timeout`, `.tls`, `.invalidURL`.
    public func send(from: String, to recipients: [String], message: [UInt8]) throws(TransportError) {
        let target = "SMTP \(CurlEasy.redact(config.url))"
        try validate(from: from, recipients: recipients, target: target)

        let h = try easy.prepare(connectTimeoutMilliseconds: config.connectTimeoutMilliseconds,
                                 timeoutMilliseconds: config.timeoutMilliseconds,
                                 protocols: "smtp,smtps")
        try easy.set(h, CURLOPT_URL, config.url, "URL")
        if let username = config.username { try easy.set(h, CURLOPT_USERNAME, username, "USERNAME") }
        if let password = config.password { try easy.set(h, CURLOPT_PASSWORD, password, "PASSWORD") }
        let tls = config.requireTLS ? CURLUSESSL_ALL : CURLUSESSL_TRY
        try easy.set(h, CURLOPT_USE_SSL, Int(tls.rawValue), "USE_SSL")
        if !config.verifyPeer {
            try easy.set(h, CURLOPT_SSL_VERIFYPEER, 0, "SSL_VERIFYPEER")
            try easy.set(h, CURLOPT_SSL_VERIFYHOST, 0, "SSL_VERIFYHOST")
        }
        try easy.set(h, CURLOPT_MAIL_FROM, "<\(from)>", "MAIL_FROM")
        var list = try CurlStringList(recipients.map { "<\($0)>" })
        defer { list.free() }
        try easy.check(nurture_curl_setopt_slist(h, CURLOPT_MAIL_RCPT, list.pointer), "MAIL_RCPT")

        let upload = UploadCursor(SMTPClient.crlfNormalised(message))
        try easy.set(h, CURLOPT_UPLOAD, 1, "UPLOAD")
        try easy.check(nurture_curl_setopt_off(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(upload.bytes.count)), "INFILESIZE_LARGE")
        try easy.check(nurture_curl_setopt_read_function(h) { buffer, size, count, userdata in
            guard let userdata, let buffer else { return 0 }
            let cursor = Unmanaged<UploadCursor>.fromOpaque(userdata).takeUnretainedValue()
            return cursor.read(into: UnsafeMutableRawPointer(buffer), capacity: size * count)
        }, "READFUNCTION")
        try easy.check(nurture_curl_setopt_pointer(h, CURLOPT_READDATA, Unmanaged.passUnretained(upload).toOpaque()), "READDATA")

        let code = withExtendedLifetime(upload) { easy.perform(h) }
        guard code == CURLE_OK else { throw failure(code, h, target: target) }
    }

    private func failure(_ code: CURLcode, _ h: UnsafeMutableRawPointer, target: String) -> TransportError {
        let detail = easy.errorText(code)
        var kind = CurlEasy.kind(of: code)
        var reply: Int? = nil
        // curl reports a refused MAIL/RCPT/DATA as a send error ("RCPT failed: 550") and the last reply code in
        // CURLINFO_RESPONSE_CODE; a transport failure (connect, timeout, TLS) wins over any earlier reply code.
        if kind != .timeout && kind != .tls && kind != .invalidURL && code != CURLE_COULDNT_CONNECT && code != CURLE_COULDNT_RESOLVE_HOST {
            let last = easy.infoLong(h, CURLINFO_RESPONSE_CODE)
            if (400..<600).contains(last) {
                reply = last
            } else if let parsed = SMTPClient.replyCode(in: detail) {
                reply = parsed
            }
            if reply != nil { kind = .rejected }
        }
        return TransportError(kind, "\(target): \(detail)", curlCode: Int(code.rawValue), smtpCode: reply)
    }

    /// A 4xx/5xx reply code in curl's message ("RCPT failed: 550", "MAIL failed: 451").
    static func replyCode(in text: String) -> Int? {
        guard let range = text.firstRange(of: "failed: ") else { return nil }
        let digits = text[range.upperBound...].prefix(while: { $0.isASCII && $0.isNumber })
        guard digits.count == 3, let code = Int(digits), (400..<600).contains(code) else { return nil }
        return code
    }

    private func validate(from: String, recipients: [String], target: String) throws(TransportError) {
        let scheme = config.url.prefix(while: { $0 != ":" }).lowercased()
        guard scheme == "smtp" || scheme == "smtps", config.url.contains("://") else {
            throw TransportError(.invalidURL, "\(target): expected an smtp:// or smtps:// URL")
        }
        guard !recipients.isEmpty else { throw TransportError(.other, "\(target): no recipients") }
        // Addresses go into SMTP command lines: a CR or LF would let one inject commands.
        func bad(_ address: String) -> Bool {
            address.utf8.contains { $0 == 13 || $0 == 10 || $0 == 0 || $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: ">") }
        }
        if bad(from) { throw TransportError(.other, "\(target): the sender address contains a line break or angle bracket") }
        for (index, recipient) in recipients.enumerated() where recipient.isEmpty || bad(recipient) {
            throw TransportError(.other, "\(target): recipient #\(index + 1) is empty or contains a line break or angle bracket")
        }
    }

    /// SMTP lines end in CRLF; a bare LF becomes CRLF. Already-CRLF messages are returned without copying.
    static func crlfNormalised(_ message: [UInt8]) -> [UInt8] {
        var previous: UInt8 = 0
        var bare = false
        for b in message {
            if b == 10 && previous != 13 { bare = true; break }
            previous = b
        }
        guard bare else { return message }
        var out: [UInt8] = []
        out.reserveCapacity(message.count + message.count / 32)
        previous = 0
        for b in message {
            if b == 10 && previous != 13 { out.append(13) }
            out.append(b)
            previous = b
        }
        return out
    }
}

/// The message being uploaded and how far curl has read it (passed to C as an unretained pointer; the caller
/// keeps it alive for the duration of `curl_easy_perform`).
final class UploadCursor {
    let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func read(into buffer: UnsafeMutableRawPointer, capacity: Int) -> Int {
        let n = min(capacity, bytes.count - offset)
        guard n > 0 else { return 0 }
        bytes.withUnsafeBytes { raw in
            buffer.copyMemory(from: raw.baseAddress! + offset, byteCount: n)
        }
        offset += n
        return n
    }
}
