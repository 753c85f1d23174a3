import Foundation
import Postgres

/// What a message is, before its delivery row exists.
public struct DeliveryIntent: Sendable, Hashable {
    /// `wf:<enrollment>:<step_seq>` or `bc:<broadcast>:<contact>`: one message, one row, ever.
    public var dedupeKey: String
    public var contactId: Int64
    public var channel: String
    public var category: String
    public var template: String
    public var templateVersion: Int?
    public var provider: String?
    public var sourceKind: String
    public var sourceName: String?
    public var step: Int?
    public var enrollmentId: Int64?
    public var broadcastId: Int64?

    public init(dedupeKey: String, contactId: Int64, channel: String, category: String, template: String, templateVersion: Int?,
                provider: String?, sourceKind: String, sourceName: String?, step: Int?, enrollmentId: Int64?, broadcastId: Int64?) {
        self.dedupeKey = dedupeKey
        self.contactId = contactId
        self.channel = channel
        self.category = category
        self.template = template
        self.templateVersion = templateVersion
        self.provider = provider
        self.sourceKind = sourceKind
        self.sourceName = sourceName
        self.step = step
        self.enrollmentId = enrollmentId
        self.broadcastId = broadcastId
    }
}

/// The delivery row of a message as `open` found it.
public struct OpenedDelivery: Sendable, Hashable {
    /// The delivery id (uuid): the `Idempotency-Key`, the same on every retry.
    public let id: String
    public let status: String
    public let attempts: Int
    /// True when this caller holds the send lock and must call the provider; false when the delivery is already
    /// settled (`status` says how) or another worker is sending it right now.
    public let mine: Bool
}

/// Deliveries: one row per message, written before the provider is called, so a retry reuses its id and a message
/// recorded as accepted is never sent again. Also the send-time checks (suppressions, consent, caps).
public struct DeliveryStore: Sendable {
    public init() {}

    /// Why a contact must not get a message on `channel` in `category` now, or nil when it may: erased or merged
    /// contacts; an address on the suppression list; for marketing, a global unsubscribe or a withdrawn consent
    /// (the latest consent row for the category and channel, or for the category on every channel, `*`).
    /// `lockContact`: the contact row is locked (`FOR UPDATE`) for the rest of the transaction, so that two senders
    /// deciding frequency caps for the same contact take turns.
    public func blockReason(contactId: Int64, channel: String, category: String, address: String?, lockContact: Bool = false,
                            on db: PostgresConnection) throws -> String? {
        try blockReasons([SendCheck(contactId: contactId, channel: channel, category: category, address: address)],
                         lockContacts: lockContact, on: db)[0]
    }
}
