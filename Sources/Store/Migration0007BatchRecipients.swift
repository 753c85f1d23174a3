extension Migration {
    /// A broadcast's audience is kept per batch (`broadcast_batches.contacts`, one array per batch of ~500), not as a
    /// row per recipient. The snapshot of a million recipients wrote a million rows and index entries: 2.8 s of its
    /// 6.6 s (EXPLAIN ANALYZE on a durable cluster), while the second core sat idle and nothing could be sent; now it
    /// writes one row per batch. Workers read their batch's recipients as one array. `broadcast_recipients` stays,
    /// as a view, for reports (a recipient's A/B group is its batch's: `batch / 1,000,000 - 1`).
    static let batchRecipients = Migration(version: 7, name: "broadcast recipients kept per batch", sql: #"""
ALTER TABLE broadcast_batches ADD COLUMN contacts int8[];
UPDATE broadcast_batches b SET contacts = r.ids
FROM (SELECT broadcast_id, batch, array_agg(contact_id ORDER BY contact_id) AS ids FROM broadcast_recipients GROUP BY 1, 2) r
WHERE r.broadcast_id = b.broadcast_id AND r.batch = b.batch;
UPDATE broadcast_batches SET contacts = '{}' WHERE contacts IS NULL;
ALTER TABLE broadcast_batches ALTER COLUMN contacts SET NOT NULL;
DROP TABLE broadcast_recipients;
-- Batch numbers are (variant + 1) * 1,000,000 + n (BroadcastStore.groupStride): variant -1 is the rest of an A/B test.
CREATE VIEW broadcast_recipients AS
    SELECT b.broadcast_id, u.contact_id, b.batch, b.batch / 1000000 - 1 AS variant
    FROM broadcast_batches b CROSS JOIN LATERAL unnest(b.contacts) AS u(contact_id);
"""#)
}
