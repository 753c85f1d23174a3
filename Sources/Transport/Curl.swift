internal import CCurl

/// Process-wide libcurl setup and facts.
public enum Curl {
    /// `curl_global_init` runs exactly once: a Swift `static let` is initialised under `swift_once`, so concurrent
    /// first callers wait for the one that runs it.
    private static let globalInitResult: Int = Int(nurture_curl_global_init().rawValue)

    /// Initialises libcurl (TLS library, etc.) once for the process; cheap and thread-safe after the first call.
    /// `HTTPClient` and `SMTPClient` call it themselves, so calling it at startup only moves the cost earlier.
    public static func globalInit() {
        _ = globalInitResult
    }

    /// libcurl's version line, e.g. `libcurl/7.88.1 OpenSSL/3.0.15 zlib/1.2.13 ... nghttp2/1.52.0`.
    public static var version: String {
        guard let text = curl_version() else { return "libcurl (unknown version)" }
        return String(cString: text)
    }
}

/// One curl easy handle plus its error buffer, shared by `HTTPClient` and `SMTPClient`.
///
/// Not thread-safe (a curl easy handle must be used by one thread at a time); the owning client is confined.
/// `curl_easy_reset` between transfers clears options but keeps the handle's connection cache, so a later transfer
/// to the same host reuses the open connection.
final class CurlEasy {
    private var handle: UnsafeMutableRawPointer?
    private let errorBuffer: UnsafeMutablePointer<CChar>
    private static let errorBufferSize = Int(CURL_ERROR_SIZE)
    /// New connections curl opened for this handle, summed over transfers (`CURLINFO_NUM_CONNECTS`).
    private(set) var connectionsOpened = 0

    init() {
        Curl.globalInit()
        handle = curl_easy_init()
        errorBuffer = .allocate(capacity: CurlEasy.errorBufferSize)
        errorBuffer.initialize(repeating: 0, count: CurlEasy.errorBufferSize)
    }

    deinit {
        if let h = handle { curl_easy_cleanup(h) }
        errorBuffer.deallocate()
    }

    /// Closes the handle and with it every cached connection; the next `prepare` starts a fresh handle.
    func close() {
        if let h = handle { curl_easy_cleanup(h) }
        handle = nil
    }

    /// Clears every option of the previous transfer (live connections stay in the handle's cache), then sets the
    /// options every transfer shares. Returns the handle for the caller's own options.
    func prepare(connectTimeoutMilliseconds: Int64, timeoutMilliseconds: Int64, protocols: String) throws(TransportError) -> UnsafeMutableRawPointer {
        if handle == nil { handle = curl_easy_init() }
        guard let h = handle else { throw TransportError(.other, "curl_easy_init failed (out of memory?)") }
        curl_easy_reset(h)
        errorBuffer[0] = 0
        try check(nurture_curl_setopt_pointer(h, CURLOPT_ERRORBUFFER, UnsafeMutableRawPointer(errorBuffer)), "ERRORBUFFER")
        // Threads: no SIGALRM-based DNS timeouts (they are not thread-safe); the threaded resolver still times out.
        try set(h, CURLOPT_NOSIGNAL, 1, "NOSIGNAL")
        try set(h, CURLOPT_TCP_NODELAY, 1, "TCP_NODELAY")
        try set(h, CURLOPT_TCP_KEEPALIVE, 1, "TCP_KEEPALIVE")
        try set(h, CURLOPT_TCP_KEEPIDLE, 30, "TCP_KEEPIDLE")
        try set(h, CURLOPT_TCP_KEEPINTVL, 15, "TCP_KEEPINTVL")
        try set(h, CURLOPT_CONNECTTIMEOUT_MS, Int(max(connectTimeoutMilliseconds, 1)), "CONNECTTIMEOUT_MS")
        try set(h, CURLOPT_TIMEOUT_MS, Int(max(timeoutMilliseconds, 1)), "TIMEOUT_MS")
        // Only the schemes this client means to speak: no file://, no gopher://, not even by redirect.
        try set(h, CURLOPT_PROTOCOLS_STR, protocols, "PROTOCOLS_STR")
        try set(h, CURLOPT_REDIR_PROTOCOLS_STR, protocols, "REDIR_PROTOCOLS_STR")
        return h
    }

    func set(_ h: UnsafeMutableRawPointer, _ option: CURLoption, _ value: Int, _ name: StaticString) throws(TransportError) {
        try check(nurture_curl_setopt_long(h, option, value), name)
    }

    /// curl copies string options, so a temporary Swift string is fine here.
    func set(_ h: UnsafeMutableRawPointer, _ option: CURLoption, _ value: String, _ name: StaticString) throws(TransportError) {
        try check(nurture_curl_setopt_string(h, option, value), name)
    }

    func check(_ code: CURLcode, _ name: StaticString) throws(TransportError) {
        guard code != CURLE_OK else { return }
        throw TransportError(.other, "setting CURLOPT_\(name) failed: \(CurlEasy.strerror(code))", curlCode: Int(code.rawValue))
    }

    /// Runs the transfer on the calling thread and adds its new connections to `connectionsOpened`.
    func perform(_ h: UnsafeMutableRawPointer) -> CURLcode {
        let code = curl_easy_perform(h)
        connectionsOpened += infoLong(h, CURLINFO_NUM_CONNECTS)
        return code
    }

    func infoLong(_ h: UnsafeMutableRawPointer, _ info: CURLINFO) -> Int {
        var value = 0
        return nurture_curl_getinfo_long(h, info, &value) == CURLE_OK ? value : 0
    }

    /// curl's detailed message for the last transfer (from `CURLOPT_ERRORBUFFER`), or the generic one for `code`.
    func errorText(_ code: CURLcode) -> String {
        let detail = String(cString: errorBuffer).trimmingTrailingNewlines()
        return detail.isEmpty ? CurlEasy.strerror(code) : detail
    }

    static func strerror(_ code: CURLcode) -> String {
        guard let text = curl_easy_strerror(code) else { return "curl error \(code.rawValue)" }
        return String(cString: text)
    }

    /// The error kind a failed transfer maps to, before any protocol-specific reading (SMTP reply codes).
    static func kind(of code: CURLcode) -> TransportError.Kind {
        switch code {
        case CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT:
            return .invalidURL
        case CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_CONNECT,
             CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE:
            return .connect
        case CURLE_OPERATION_TIMEDOUT:
            return .timeout
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
             CURLE_USE_SSL_FAILED, CURLE_SSL_ENGINE_NOTFOUND, CURLE_SSL_ENGINE_SETFAILED, CURLE_SSL_ENGINE_INITFAILED,
             CURLE_SSL_CACERT_BADFILE, CURLE_SSL_SHUTDOWN_FAILED, CURLE_SSL_CRL_BADFILE, CURLE_SSL_ISSUER_ERROR,
             CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_CLIENTCERT:
            return .tls
        case CURLE_WEIRD_SERVER_REPLY, CURLE_HTTP2, CURLE_HTTP2_STREAM, CURLE_BAD_CONTENT_ENCODING,
             CURLE_HTTP_RETURNED_ERROR:
            return .protocolError
        case CURLE_LOGIN_DENIED, CURLE_AUTH_ERROR:
            return .rejected
        default:
            return .other
        }
    }

    /// The URL for messages: no `user:password@`, no query string or fragment (API keys live there).
    static func redact(_ url: String) -> String {
        var text = Substring(url)
        if let cut = text.firstIndex(where: { $0 == "?" || $0 == "#" }) { text = text[..<cut] }
        guard let scheme = text.firstRange(of: "://") else { return String(text) }
        let authorityEnd = text[scheme.upperBound...].firstIndex(of: "/") ?? text.endIndex
        if let at = text[scheme.upperBound..<authorityEnd].lastIndex(of: "@") {
            return String(text[..<scheme.upperBound]) + "***@" + String(text[text.index(after: at)...])
        }
        return String(text)
    }
}

/// A `curl_slist` built from Swift strings; free it with `free()` once the transfer is over.
struct CurlStringList {
    private(set) var pointer: UnsafeMutablePointer<curl_slist>?

    init(_ items: [String]) throws(TransportError) {
        for item in items {
            guard let next = curl_slist_append(pointer, item) else {
                free()
                throw TransportError(.other, "curl_slist_append failed (out of memory?)")
            }
            pointer = next
        }
    }

    mutating func free() {
        if let p = pointer { curl_slist_free_all(p) }
        pointer = nil
    }
}

/// Signature of curl's write, header and read callbacks: `size_t (*)(char *, size_t, size_t, void *)`.
typealias CurlDataCallback = @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int

extension String {
    func trimmingTrailingNewlines() -> String {
        var s = Substring(self)
        while let last = s.last, last.isNewline || last == " " { s = s.dropLast() }
        return String(s)
    }
}
