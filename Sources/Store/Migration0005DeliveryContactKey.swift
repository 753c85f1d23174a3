extension Migration {
    /// Cheaper delivery rows, measured on a million-recipient broadcast (every message sent inserts one delivery row
    /// and settles it once):
    /// - no foreign key to contacts: its trigger ran a `SELECT ... FOR KEY SHARE` on the contact per row (about a
    ///   tenth of PostgreSQL's work per message, and a row lock that queued behind send-time cap checks);
    /// - fillfactor 45 instead of 70: a batch's rows fill pages together and are settled together, so each page needs
    ///   room for a second version of every row on it. At 70 only 45 % of settles were HOT (the rest wrote a new
    ///   entry into each of the four indexes); at 45 they all are, and the table hardly grows (a non-HOT update
    ///   put the new version on another page anyway).
    static let deliveryContactKey = Migration(version: 5, name: "delivery rows: no contact foreign key, room to settle", sql: #"""
-- Every writer of deliveries (workflow steps, broadcast batches) loads the contact in the same transaction before
-- it inserts the row, and contacts are never deleted (erasure blanks them, merges keep the row), so the key guarded
-- nothing the code could break; `contact_id` stays indexed (deliveries_contact_idx) for caps, reports and exports.
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_contact_id_fkey;
-- Pages written from now on keep 55 % free for the settle's new row versions (HOT updates, no index writes).
ALTER TABLE deliveries SET (fillfactor = 45);
"""#)
}
