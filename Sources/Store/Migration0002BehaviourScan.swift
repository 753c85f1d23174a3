extension Migration {
    /// Page fill for the rows ingestion updates all the time, and what the scheduler's behaviour scan has done: per segment, the definition it last evaluated in full (so a new
    /// or changed segment is built once, by one scheduler), and when time-relative rules were last re-evaluated.
    static let behaviourScan = Migration(version: 2, name: "behaviour scan state", sql: #"""
CREATE TABLE behaviour_scan_state (
    subject      text PRIMARY KEY,      -- 'segment:<name>' or 'periodic'
    fingerprint  text NOT NULL,         -- the definition checksum evaluated ('' for periodic)
    scanned_at   timestamptz NOT NULL   -- business time of the last scan
);

-- Every ingested event updates its contact's row (last seen, stage, ...): free space on each page lets those be
-- HOT updates (no new index entries), and the same for scores.
ALTER TABLE contacts SET (fillfactor = 70);
ALTER TABLE contact_scores SET (fillfactor = 70);

-- Building a segment inserts hundreds of thousands of memberships at once; the foreign key's trigger locked (and so
-- rewrote) every member's contacts row, the largest part of that cost. Contacts are never deleted (erasure scrubs
-- them and removes their memberships), and reconciliation removes members that are no longer live contacts.
ALTER TABLE segment_memberships DROP CONSTRAINT segment_memberships_contact_id_fkey;
"""#)
}
