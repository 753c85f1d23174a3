import Domain

/// What caused a message: a workflow's `send:` step or a broadcast. Providers see it as `"source"` (contract §5).
public enum MessageSource: Sendable, Hashable, CustomStringConvertible {
    case workflow(name: String, step: Int)
    case broadcast(id: Int64, name: String)

    public var description: String {
        switch self {
        case .workflow(let name, let step): return "workflow \(name) step \(step)"
        case .broadcast(let id, let name): return "broadcast \(name) (#\(id))"
        }
    }
}

/// One rendered message, ready for a provider: everything `ProviderClient` needs, nothing it must look up.
///
/// Built by `MessageComposer.compose` (or by hand in tests). The delivery id is the message's identity towards the
/// provider: the HTTP `Idempotency-Key`, the JSON `"id"`, the SMTP `Message-ID` local part. It must stay the same
/// across retries of the same message so a provider can drop duplicates.
public struct OutboundMessage: Sendable {
    /// uuid text; also the Idempotency-Key.
    public var deliveryId: String
    public var channel: Channel
    public var category: TemplateDefinition.Category
    /// Email address / phone number / contact id (push); nil for webhook.
    public var to: String?
    /// The contact's external id (userId) or, if none, its numeric id as text.
    public var contactId: String
    /// `Name <address>` or a bare address (email).
    public var from: String?
    public var subject: String?
    public var html: String?
    public var text: String?
    /// Webhook: the whole request body, sent as is.
    public var body: String?
    /// Extra headers in order, e.g. `List-Unsubscribe` (email: MIME headers; http: the `"headers"` object).
    public var headers: [(name: String, value: String)]
    public var source: MessageSource

    public init(deliveryId: String, channel: Channel, category: TemplateDefinition.Category = .marketing,
                to: String?, contactId: String, from: String? = nil, subject: String? = nil, html: String? = nil,
                text: String? = nil, body: String? = nil, headers: [(name: String, value: String)] = [],
                source: MessageSource) {
        self.deliveryId = deliveryId
        self.channel = channel
        self.category = category
        self.to = to
        self.contactId = contactId
        self.from = from
        self.subject = subject
        self.html = html
        self.text = text
        self.body = body
        self.headers = headers
        self.source = source
    }

    /// The first header with this name, compared case-insensitively.
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name.lowercased() == wanted }?.value
    }
}
