extension Migration {
    /// What sending broadcasts needs beyond the initial schema: durable batches (a flushed Redis loses only jobs;
    /// the scheduler enqueues every batch that is not done again), and A/B winners.
    static let broadcasts = Migration(version: 4, name: "broadcast batches", sql: #"""
-- One row per batch of recipients (`broadcast_recipients.batch`): `ready` batches are sent by `broadcast.batch`
-- jobs; `held` batches (the rest of an A/B test) wait for the winner; `done` batches have every recipient settled.
-- `lease_until` (wall clock) keeps the scheduler from enqueueing a batch again while its job is queued or running.
CREATE TABLE broadcast_batches (
    broadcast_id  bigint NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
    batch         int NOT NULL,
    state         text NOT NULL CHECK (state IN ('held', 'ready', 'done')),
    lease_until   timestamptz,
    due_at        timestamptz,
    PRIMARY KEY (broadcast_id, batch)
);
CREATE INDEX broadcast_batches_open_idx ON broadcast_batches (broadcast_id, state) WHERE state <> 'done';

-- Recipients are read by batch; one index (the key) serves that and keeps a snapshot's insert cheap.
ALTER TABLE broadcast_recipients DROP CONSTRAINT broadcast_recipients_pkey;
DROP INDEX broadcast_recipients_batch_idx;
ALTER TABLE broadcast_recipients ADD PRIMARY KEY (broadcast_id, batch, contact_id);
-- The snapshot inserts a million rows of one broadcast that it has just locked: a per-row foreign-key check
-- cost 40 % of it (EXPLAIN ANALYZE at 300k recipients: 1.3 s of 3.5 s). Recipients go with their broadcast
-- (nothing deletes broadcasts; anything that does must delete their recipients too).
ALTER TABLE broadcast_recipients DROP CONSTRAINT broadcast_recipients_broadcast_id_fkey;

-- A/B: the template that won (index into `templates`), when and why.
ALTER TABLE broadcasts ADD COLUMN winner int;
ALTER TABLE broadcasts ADD COLUMN winner_at timestamptz;
ALTER TABLE broadcasts ADD COLUMN paused_at timestamptz;
ALTER TABLE broadcasts ADD COLUMN channel text;

-- Settling a delivery (status, sent_at, lock) touches no indexed column and finds room in its page: a HOT update,
-- no new index entries (a million-recipient broadcast settles a million rows). Per-broadcast counts scan the
-- broadcast's rows by id.
DROP INDEX deliveries_broadcast_idx;
CREATE INDEX deliveries_broadcast_idx ON deliveries (broadcast_id) WHERE broadcast_id IS NOT NULL;
ALTER TABLE deliveries SET (fillfactor = 70);
-- Fewer indexes to write per message (every workflow send and broadcast recipient inserts a delivery): frequency
-- caps read a contact's recent deliveries through deliveries_contact_idx (contact_id, created_at), a handful of
-- rows per contact; nothing but benchmarks looked deliveries up by source.
DROP INDEX deliveries_caps_idx;
DROP INDEX deliveries_source_idx;

-- Opens and clicks name the delivery they are about (reports and A/B winners count them per delivery).
CREATE INDEX events_delivery_idx ON events ((properties->>'delivery_id')) WHERE properties ? 'delivery_id';
"""#)
}
