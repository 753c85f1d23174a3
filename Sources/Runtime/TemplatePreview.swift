import Channels
import Domain
import Foundation
import Postgres
import Store

/// An applied template rendered for a real contact, exactly as a workflow `send:` would render it
/// (`nurture templates preview`): the same contact object (attributes, derived columns, tags, decayed score),
/// the same render context keys and the same composer. Nothing is sent or recorded.
public struct TemplatePreview: Sendable {
    /// The template's name and current version.
    public let template: String
    public let version: Int
    public let contactId: Int64
    /// The render context the template saw (`contact`, `event`, `workflow`, `unsubscribe_url`, `preferences_url`, `now`).
    public let context: Value
    /// The composed message (subject / html / text / body, recipient, sender, headers).
    public let message: OutboundMessage

    /// The template is not applied (or was deleted).
    public struct UnknownTemplate: Error, CustomStringConvertible {
        public let name: String
        public let known: [String]
        public var description: String {
            "no template \"\(name)\" " + (known.isEmpty ? "(no templates are applied)" : "(known: \(known.joined(separator: ", ")))")
        }
    }

    /// The contact was erased or merged into another one.
    public struct ContactGone: Error, CustomStringConvertible {
        public let contactId: Int64
        public var description: String { "contact \(contactId) is erased or merged" }
    }

    /// Renders the current version of template `name` for contact `contactId` (a resolved contact id).
    ///
    /// - Parameters:
    ///   - event: what templates read as `event` (a workflow send sees its triggering event); `{}` by default.
    ///   - now: business time (the installation clock).
    /// - Throws: `UnknownTemplate`, `ContactGone`, `LiquidError` (render error), `ComposeError` (e.g. the contact
    ///   has no address for the template's channel), or a database error.
    public static func render(template name: String, contactId: Int64, event: Value = .object([:]), config: NurtureConfig,
                              now: Date, on db: PostgresConnection) throws -> TemplatePreview {
        let catalog = try WorkflowCatalog.load(on: db)
        guard let (version, template) = catalog.templates[name].map({ ($0.version, $0.definition) }) else {
            throw UnknownTemplate(name: name, known: catalog.templates.keys.sorted())
        }
        let rules = try BehaviourRules.load(on: db)
        guard let view = try ContactView.load([contactId], now: now, compilerOptions: rules.compilerOptions, on: db)[contactId] else {
            throw ContactGone(contactId: contactId)
        }
        let contact = view.value
        let links = SignedLinks(publicURL: config.publicURL, secret: config.secret ?? "preview")
        let unsubscribe = links.unsubscribeURL(contactId: contactId, deliveryId: nil)
        let context = Value.object([
            "contact": contact,
            "event": event,
            "workflow": .object([:]),
            "unsubscribe_url": .string(unsubscribe),
            "preferences_url": .string(links.preferencesURL(contactId: contactId)),
            "now": .time(now),
        ])
        // Recipient and sender as a workflow send picks them.
        let contactKey = contact["external_id"]?.stringValue ?? String(contactId)
        let address: String?
        switch template.channel {
        case .email: address = contact["email"]?.stringValue
        case .sms: address = contact["phone"]?.stringValue
        case .push: address = contactKey
        case .webhook: address = nil
        }
        let provider = catalog.provider(for: template)
        let envelope = Envelope(deliveryId: previewDeliveryId, to: address, contactId: contactKey,
                                from: template.from ?? provider?.from ?? catalog.settings?.from,
                                source: .workflow(name: "preview", step: 0), unsubscribeURL: unsubscribe)
        let message = try MessageComposer.compose(template, context: context, envelope: envelope, now: now)
        return TemplatePreview(template: name, version: version, contactId: contactId, context: context, message: message)
    }

    /// The delivery id a preview carries (no delivery is recorded).
    public static let previewDeliveryId = "00000000-0000-0000-0000-000000000000"
}
