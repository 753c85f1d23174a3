extension Migration {
    /// What running workflows needs beyond the initial schema: idempotent triggers, a per-step log for
    /// reports, an installation signing key, and a send lease on deliveries (so two workers never call a provider for the same delivery at once).
    static let workflows = Migration(version: 3, name: "workflow runs", sql: #"""
-- An enrollment made by a trigger that must fire once per occurrence (an event's messageId, a birthday's year,
-- a fan-out event) carries that occurrence: the same trigger seen twice enrolls once.
ALTER TABLE enrollments ADD COLUMN trigger_key text;
CREATE UNIQUE INDEX enrollments_trigger_key_idx ON enrollments (workflow, contact_id, trigger_key) WHERE trigger_key IS NOT NULL;
-- Retries of the current step (a provider that is down): the backoff grows with them.
ALTER TABLE enrollments ADD COLUMN attempts int NOT NULL DEFAULT 0;
ALTER TABLE enrollments SET (fillfactor = 70);

-- The key that signs unsubscribe and preference links when NURTURE_SECRET is not set (workers warn about it;
-- `nurture web` requires NURTURE_SECRET, which then signs and verifies everything).
CREATE TABLE installation_secret (
    id      int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    secret  text NOT NULL
);
INSERT INTO installation_secret (id, secret)
VALUES (1, md5(random()::text || clock_timestamp()::text) || md5(random()::text || pg_backend_pid()::text));

-- One row per step an enrollment ran (or was stopped at): what `nurture report workflow` counts.
-- outcome: done (wait/if/tag/set/score), sent, failed, suppressed, capped, no_address, deferred_quiet_hours, exited.
CREATE TABLE enrollment_steps (
    enrollment_id     bigint NOT NULL,
    step_seq          int NOT NULL,
    workflow          text NOT NULL,
    workflow_version  int NOT NULL,
    step              int NOT NULL,
    outcome           text NOT NULL,
    detail            text,
    at                timestamptz NOT NULL,
    PRIMARY KEY (enrollment_id, step_seq, outcome)
);
CREATE INDEX enrollment_steps_workflow_idx ON enrollment_steps (workflow, step);

-- A worker calling the provider for a delivery holds it until `locked_until` (wall clock); another worker that
-- finds it locked leaves it alone. A killed worker's lock expires and the delivery is retried with the same id.
ALTER TABLE deliveries ADD COLUMN locked_until timestamptz;
ALTER TABLE deliveries ADD COLUMN category text NOT NULL DEFAULT 'marketing';
-- Frequency caps count a contact's recent marketing messages per channel.
CREATE INDEX deliveries_caps_idx ON deliveries (contact_id, channel, created_at) WHERE category = 'marketing';
"""#)
}
