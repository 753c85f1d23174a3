extension Migration {
    /// Deliveries stop checking their contact through a foreign key: every message sent inserted one delivery row,
    /// and the key's trigger ran a `SELECT ... FOR KEY SHARE` on the contact for each (about a tenth of
    /// PostgreSQL's work per broadcast message, and a row lock that queued behind send-time cap checks).
    static let deliveryContactKey = Migration(version: 5, name: "delivery rows without a contact foreign key", sql: #"""
-- Every writer of deliveries (workflow steps, broadcast batches) loads the contact in the same transaction before
-- it inserts the row, and contacts are never deleted (erasure blanks them, merges keep the row), so the key guarded
-- nothing the code could break; `contact_id` stays indexed (deliveries_contact_idx) for caps, reports and exports.
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_contact_id_fkey;
"""#)
}
