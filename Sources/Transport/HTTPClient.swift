internal import CCurl

/// A blocking HTTP/1.1 (and HTTP/2 over TLS) client over one reused libcurl easy handle.
///
/// Every `send` runs on the caller's thread until the response is complete or the timeout runs out, so call it
/// from a dedicated thread (a worker slot, a `BlockingExecutor`), never from the Swift concurrency pool.
///
/// The handle keeps its connections open between requests (HTTP keep-alive): sequential requests to one host pay
/// for one TCP (and TLS) handshake. `connectionsOpened` counts the handshakes so tests and metrics can see it.
/// If the server closed an idle kept-alive connection, curl notices (or retries once on a fresh connection).
///
/// Redirects are not followed (a 3xx is returned like any other response). Only `http://` and `https://` URLs
/// are accepted. curl's usual proxy environment variables (`https_proxy`, `no_proxy`, ...) apply.
public final class HTTPClient: @unchecked Sendable {
    // Safety (@unchecked Sendable): a curl easy handle and the mutable state below are not thread-safe. An
    // HTTPClient is confined to one user at a time: owned by one thread for its life, or lent out by a pool that
    // hands it to one borrower at a time under its lock. No method here is ever entered concurrently; the type is
    // Sendable only so it can be moved between those owners.
    private let easy = CurlEasy()
    public let connectTimeoutMilliseconds: Int64
    public let timeoutMilliseconds: Int64
    public let userAgent: String

    /// - Parameters:
    ///   - connectTimeoutMilliseconds: how long the TCP (and TLS) handshake may take.
    ///   - timeoutMilliseconds: how long a whole request may take, connect included, unless the request says
    ///     otherwise (`HTTPRequest.timeoutMilliseconds`).
    public init(connectTimeoutMilliseconds: Int64 = 2_000, timeoutMilliseconds: Int64 = 10_000, userAgent: String = "nurture/0.1") {
        self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
        self.timeoutMilliseconds = timeoutMilliseconds
        self.userAgent = userAgent
    }

    /// TCP connections opened so far (summed `CURLINFO_NUM_CONNECTS`); stays 1 while keep-alive holds.
    public var connectionsOpened: Int { easy.connectionsOpened }

    /// Closes the kept-alive connections; the next `send` opens a new one.
    public func close() { easy.close() }

    /// Sends the request and waits for the whole response. Any HTTP status is a response; only a failure to get
    /// one (bad URL, no connection, timeout, TLS, garbage on the wire) throws.
    public func send(_ request: HTTPRequest) throws(TransportError) -> HTTPResponse {
        let method = request.method.uppercased()
        let target = "\(method) \(CurlEasy.redact(request.url))"
        try HTTPClient.validate(request, method: method, target: target)

        let h = try easy.prepare(connectTimeoutMilliseconds: connectTimeoutMilliseconds,
                                 timeoutMilliseconds: request.timeoutMilliseconds ?? timeoutMilliseconds,
                                 protocols: "http,https")
        try easy.set(h, CURLOPT_URL, request.url, "URL")
        try easy.set(h, CURLOPT_USERAGENT, userAgent, "USERAGENT")

        let sendsBody = !request.body.isEmpty || method == "POST" || method == "PUT" || method == "PATCH"
        if method == "HEAD" {
            try easy.set(h, CURLOPT_NOBODY, 1, "NOBODY")
        } else if sendsBody {
            if method != "POST" { try easy.set(h, CURLOPT_CUSTOMREQUEST, method, "CUSTOMREQUEST") }
        } else if method == "GET" {
            try easy.set(h, CURLOPT_HTTPGET, 1, "HTTPGET")
        } else {
            try easy.set(h, CURLOPT_CUSTOMREQUEST, method, "CUSTOMREQUEST")
        }

        var lines: [String] = []
        lines.reserveCapacity(request.headers.count + 2)
        var hasContentType = false
        var hasExpect = false
        for header in request.headers {
            switch header.name.lowercased() {
            case "content-type": hasContentType = true
            case "expect": hasExpect = true
            default: break
            }
            // curl: "Name:" removes a header, "Name;" sends it with an empty value.
            lines.append(header.value.isEmpty ? "\(header.name);" : "\(header.name): \(header.value)")
        }
        if !hasExpect { lines.append("Expect:") }                      // no 100-continue round trip
        if sendsBody && !hasContentType { lines.append("Content-Type:") } // no form-urlencoded default
        var list = try CurlStringList(lines)
        defer { list.free() }
        try easy.check(nurture_curl_setopt_slist(h, CURLOPT_HTTPHEADER, list.pointer), "HTTPHEADER")

        let box = ResponseAccumulator()
        let boxPointer = Unmanaged.passUnretained(box).toOpaque()
        try easy.check(nurture_curl_setopt_write_function(h) { data, size, count, userdata in
            let n = size * count
            guard let userdata else { return 0 }
            let box = Unmanaged<ResponseAccumulator>.fromOpaque(userdata).takeUnretainedValue()
            if n > 0, let data { box.body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: n)) }
            return n
        }, "WRITEFUNCTION")
        try easy.check(nurture_curl_setopt_pointer(h, CURLOPT_WRITEDATA, boxPointer), "WRITEDATA")
        try easy.check(nurture_curl_setopt_header_function(h) { data, size, count, userdata in
            let n = size * count
            guard let userdata else { return 0 }
            let box = Unmanaged<ResponseAccumulator>.fromOpaque(userdata).takeUnretainedValue()
            if n > 0, let data { box.headerLine(UnsafeRawBufferPointer(start: data, count: n)) }
            return n
        }, "HEADERFUNCTION")
        try easy.check(nurture_curl_setopt_pointer(h, CURLOPT_HEADERDATA, boxPointer), "HEADERDATA")

        // The body is not copied: curl reads it from the array's storage during perform, so set it and perform
        // inside one withUnsafeBytes.
        let code: CURLcode = try withExtendedLifetime(box) { () throws(TransportError) -> CURLcode in
            guard sendsBody else { return easy.perform(h) }
            let outcome = request.body.withUnsafeBytes { raw -> Result<CURLcode, TransportError> in
                do throws(TransportError) {
                    try easy.check(nurture_curl_setopt_postfields(h, raw.baseAddress, curl_off_t(raw.count)), "POSTFIELDS")
                } catch {
                    return .failure(error)
                }
                let code = easy.perform(h)
                // Leave no pointer into the array in the handle once the array may have moved.
                _ = nurture_curl_setopt_postfields(h, nil, 0)
                return .success(code)
            }
            return try outcome.get()
        }
        guard code == CURLE_OK else {
            throw TransportError(CurlEasy.kind(of: code), "\(target): \(easy.errorText(code))", curlCode: Int(code.rawValue))
        }
        return HTTPResponse(status: easy.infoLong(h, CURLINFO_RESPONSE_CODE), headers: box.headers, body: box.body)
    }

    private static func validate(_ request: HTTPRequest, method: String, target: String) throws(TransportError) {
        let scheme = request.url.prefix(while: { $0 != ":" }).lowercased()
        guard scheme == "http" || scheme == "https", request.url.contains("://") else {
            throw TransportError(.invalidURL, "\(target): expected an http:// or https:// URL")
        }
        guard !method.isEmpty, method.utf8.allSatisfy({ isTokenByte($0) }) else {
            throw TransportError(.other, "\(target): the method is not an HTTP token")
        }
        for header in request.headers {
            guard !header.name.isEmpty, header.name.utf8.allSatisfy({ isTokenByte($0) }) else {
                throw TransportError(.other, "\(target): header name \"\(header.name)\" is not an HTTP token")
            }
            guard !header.value.utf8.contains(where: { $0 == 13 || $0 == 10 || $0 == 0 }) else {
                throw TransportError(.other, "\(target): the value of header \(header.name) contains a line break")
            }
        }
    }

    /// RFC 9110 `tchar`.
    private static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(b)
        }
    }
}

/// Collects one response's headers and body from curl's callbacks (passed to C as an unretained pointer; the
/// caller keeps it alive for the duration of `curl_easy_perform`).
final class ResponseAccumulator {
    var body: [UInt8] = []
    var headers: [HTTPHeader] = []

    /// One raw header line as curl delivers it (`Name: value\r\n`). A status line starts a new header block, so
    /// only the final response's headers survive `100 Continue` and redirects.
    func headerLine(_ raw: UnsafeRawBufferPointer) {
        var end = raw.count
        while end > 0, raw[end - 1] == 10 || raw[end - 1] == 13 { end -= 1 }
        guard end > 0 else { return }
        let line = UnsafeRawBufferPointer(rebasing: raw[0..<end])
        if line.starts(with: "HTTP/".utf8) {
            headers.removeAll(keepingCapacity: true)
            return
        }
        if line[0] == 32 || line[0] == 9 {   // obsolete line folding: continues the previous value
            if !headers.isEmpty { headers[headers.count - 1].value += " " + String(decoding: line, as: UTF8.self).trimmingSpaces() }
            return
        }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return }
        let name = String(decoding: UnsafeRawBufferPointer(rebasing: line[0..<colon]), as: UTF8.self).trimmingSpaces()
        let value = String(decoding: UnsafeRawBufferPointer(rebasing: line[(colon + 1)...]), as: UTF8.self).trimmingSpaces()
        headers.append(HTTPHeader(name, value))
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return String(s)
    }
}
