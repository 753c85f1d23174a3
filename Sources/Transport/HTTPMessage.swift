/// One HTTP header field. Names compare case-insensitively where it matters (`HTTPResponse.header(_:)`).
public struct HTTPHeader: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }

    public init(_ name: String, _ value: String) {
        self.init(name: name, value: value)
    }

    public var description: String { "\(name): \(value)" }
}

/// A request for `HTTPClient.send`. The body is raw bytes (JSON, form data, anything) sent as-is.
public struct HTTPRequest: Sendable {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD`, ... (sent as given).
    public var method: String = "POST"
    /// `http://` or `https://` only.
    public var url: String
    /// Sent in order, duplicates allowed. curl adds `Host`, `User-Agent`, `Accept` and `Content-Length`; a header
    /// given here replaces curl's own. curl's defaults `Content-Type: application/x-www-form-urlencoded` and
    /// `Expect: 100-continue` are never sent: set `Content-Type` yourself.
    public var headers: [HTTPHeader]
    public var body: [UInt8]
    /// Overrides the client's whole-request timeout for this request.
    public var timeoutMilliseconds: Int64?

    public init(method: String = "POST", url: String, headers: [HTTPHeader] = [], body: [UInt8] = [],
                timeoutMilliseconds: Int64? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    /// Replaces every header with this name (case-insensitive) by one with the new value.
    public mutating func setHeader(_ name: String, _ value: String) {
        headers.removeAll { $0.name.lowercased() == name.lowercased() }
        headers.append(HTTPHeader(name, value))
    }

    /// The first header with this name, compared case-insensitively.
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name.lowercased() == wanted }?.value
    }
}

/// What the server answered, whatever the status: 4xx and 5xx are responses, not errors.
public struct HTTPResponse: Sendable {
    public let status: Int
    /// The headers of the final response (those of `100 Continue` or redirects are dropped), in order.
    public let headers: [HTTPHeader]
    public let body: [UInt8]

    public init(status: Int, headers: [HTTPHeader] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first header with this name, compared case-insensitively.
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name.lowercased() == wanted }?.value
    }

    /// The body decoded as UTF-8 (invalid sequences become U+FFFD).
    public var bodyText: String { String(decoding: body, as: UTF8.self) }

    /// 200–299.
    public var isSuccess: Bool { (200..<300).contains(status) }
}
