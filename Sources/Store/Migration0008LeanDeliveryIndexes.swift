extension Migration {
    /// Two index entries fewer per message (workflow or broadcast). `deliveries_source_idx` (source kind, name,
    /// step) served no query: reports count workflow steps from `enrollment_steps` and broadcast deliveries by their
    /// dedupe-key range. `deliveries_caps_idx` (contact, channel, time; marketing only) repeated
    /// `deliveries_contact_idx` (contact, time): a frequency-cap count now reads a contact's recent deliveries
    /// through that one and filters channel and category on the rows (a handful per contact within a cap's period).
    static let leanDeliveryIndexes = Migration(version: 8, name: "delivery rows: two index entries fewer", sql: #"""
DROP INDEX IF EXISTS deliveries_source_idx;
DROP INDEX IF EXISTS deliveries_caps_idx;
"""#)
}
