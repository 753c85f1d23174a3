import Domain
import Foundation

/// Who a message goes to and the identity it travels under: everything `MessageComposer` needs besides the
/// template and the render context.
public struct Envelope: Sendable {
    /// uuid text: the delivery's id, also the provider Idempotency-Key.
    public var deliveryId: String
    /// Email address (email), phone number (sms), device/contact id (push; the contact id when nil); nil for webhook.
    public var to: String?
    /// The contact's external id (userId) or, if none, its numeric id as text.
    public var contactId: String
    /// The default sender (settings or provider `from`); a template's own `from:` wins over it.
    public var from: String?
    public var source: MessageSource
    /// When set, and the template is a marketing email: `List-Unsubscribe: <url>` and
    /// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` headers (RFC 8058). Also offered to the template as
    /// `unsubscribe_url` unless the context already has one.
    public var unsubscribeURL: String?
    /// The contact's time zone for `date` filters (UTC when nil).
    public var timeZone: TimeZone?

    public init(deliveryId: String, to: String?, contactId: String, from: String? = nil, source: MessageSource,
                unsubscribeURL: String? = nil, timeZone: TimeZone? = nil) {
        self.deliveryId = deliveryId
        self.to = to
        self.contactId = contactId
        self.from = from
        self.source = source
        self.unsubscribeURL = unsubscribeURL
        self.timeZone = timeZone
    }
}

/// A message that cannot be built from its template and envelope (a permanent failure: retrying will not help
/// until the contact or the template changes). Liquid render errors are thrown as `LiquidError` unchanged.
public struct ComposeError: Error, Sendable, CustomStringConvertible, Equatable {
    public let template: String
    public let message: String

    public init(template: String, message: String) {
        self.template = template
        self.message = message
    }

    public var description: String { "template \(template): \(message)" }
}

/// Renders a template into an `OutboundMessage`. Pure (no I/O); thread-safe.
public enum MessageComposer {
    private static let utc = TimeZone(identifier: "UTC")!

    /// Renders subject (plain), html (html auto-escape mode), text (plain), body (plain) with `context`.
    ///
    /// - email: subject, html, text; `to` is required. Marketing mail with `envelope.unsubscribeURL` gets the
    ///   `List-Unsubscribe` and `List-Unsubscribe-Post` headers.
    /// - sms: `text` is the message (a template with only `body` uses that); `to` (the phone number) is required.
    /// - push: `text` is the message, `subject` (if any) its title; `to` is the contact id unless the envelope says.
    /// - webhook: `body` is the whole request body; `to` is nil.
    ///
    /// The subject is one line: line breaks in it become spaces and surrounding whitespace is trimmed.
    /// Throws `LiquidError` when a render fails and `ComposeError` when the message has no recipient or is empty.
    public static func compose(_ template: TemplateDefinition, context: Value, envelope: Envelope, now: Date) throws -> OutboundMessage {
        var context = context
        if let url = envelope.unsubscribeURL, case .object(var fields) = context, fields["unsubscribe_url"] == nil {
            fields["unsubscribe_url"] = .string(url)
            context = .object(fields)
        }
        let plain = RenderOptions(htmlEscape: false, now: now, timeZone: envelope.timeZone ?? utc)
        var message = OutboundMessage(deliveryId: envelope.deliveryId, channel: template.channel, category: template.category,
                                      to: nil, contactId: envelope.contactId, from: template.from ?? envelope.from,
                                      source: envelope.source)
        func recipient(_ what: String) throws -> String {
            guard let to = envelope.to, !to.isEmpty else {
                throw ComposeError(template: template.name, message: "the contact has no \(what)")
            }
            return to
        }

        switch template.channel {
        case .email:
            message.to = try recipient("email address")
            message.subject = try template.subject.map { oneLine(try $0.render(context, options: plain)) }
            if let html = template.html {
                var options = plain
                options.htmlEscape = true
                message.html = try html.render(context, options: options)
            }
            message.text = try template.text?.render(context, options: plain)
            if message.html == nil && message.text == nil {
                message.text = try template.body?.render(context, options: plain)
            }
            if message.html == nil && message.text == nil {
                throw ComposeError(template: template.name, message: "an email template needs html or text")
            }
            if template.category == .marketing, let url = envelope.unsubscribeURL {
                message.headers.append((name: "List-Unsubscribe", value: "<\(url)>"))
                message.headers.append((name: "List-Unsubscribe-Post", value: "List-Unsubscribe=One-Click"))
            }
        case .sms:
            message.to = try recipient("phone number")
            guard let text = template.text ?? template.body else {
                throw ComposeError(template: template.name, message: "an sms template needs text")
            }
            message.text = try text.render(context, options: plain)
        case .push:
            message.to = (envelope.to?.isEmpty == false) ? envelope.to : envelope.contactId
            message.subject = try template.subject.map { oneLine(try $0.render(context, options: plain)) }
            guard let text = template.text ?? template.body else {
                throw ComposeError(template: template.name, message: "a push template needs text")
            }
            message.text = try text.render(context, options: plain)
        case .webhook:
            guard let body = template.body ?? template.text else {
                throw ComposeError(template: template.name, message: "a webhook template needs a body")
            }
            message.body = try body.render(context, options: plain)
        }
        return message
    }

    /// Line breaks (CR, LF, other vertical whitespace) become single spaces; leading and trailing whitespace goes.
    static func oneLine(_ text: String) -> String {
        var needsWork = false
        for b in text.utf8 where b == 10 || b == 13 || b == 9 { needsWork = true; break }
        if !needsWork, let first = text.utf8.first, let last = text.utf8.last, first != 32, last != 32 { return text }
        var out = ""
        out.reserveCapacity(text.utf8.count)
        var pendingSpace = false
        for scalar in text.unicodeScalars {
            if scalar.properties.isWhitespace {
                pendingSpace = !out.isEmpty
                continue
            }
            if pendingSpace { out.append(" "); pendingSpace = false }
            out.unicodeScalars.append(scalar)
        }
        return out
    }
}
