extension Migration {
    /// The first schema: everything the engine keeps durably. Business time (`occurred_at`, `due_at`, ...) is always
    /// passed in by the process from its installation clock; `now()` defaults here are for bookkeeping columns only.
    static let initialSchema = Migration(version: 1, name: "initial schema", sql: #"""
-- The installation clock's offset (contract §7): every process adds it to the system clock.
CREATE TABLE installation_clock (
    id          int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    offset_ms   bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO installation_clock (id, offset_ms) VALUES (1, 0);

-- People. `external_id` is the app's userId; anonymous contacts have none until identified.
CREATE TABLE contacts (
    id                bigserial PRIMARY KEY,
    external_id       text UNIQUE,
    email             text,
    phone             text,
    timezone          text,
    attributes        jsonb NOT NULL DEFAULT '{}',
    tags              text[] NOT NULL DEFAULT '{}',
    stage             text,
    stage_entered_at  timestamptz,
    first_seen_at     timestamptz,
    last_seen_at      timestamptz,
    first_utm_source  text,
    first_utm_medium  text,
    last_utm_source   text,
    last_utm_medium   text,
    last_device_type  text,
    email_sha256      text,
    unsubscribed_at   timestamptz,
    erased_at         timestamptz,
    merged_into       bigint REFERENCES contacts (id),
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX contacts_email_idx ON contacts (lower(email)) WHERE email IS NOT NULL;
CREATE INDEX contacts_stage_idx ON contacts (stage);
CREATE INDEX contacts_tags_idx ON contacts USING gin (tags);

-- Every identifier a contact is known by: user_id, anonymous_id, email. Merges move identities to the survivor.
CREATE TABLE identities (
    kind        text NOT NULL CHECK (kind IN ('user_id', 'anonymous_id', 'email')),
    value       text NOT NULL,
    contact_id  bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX identities_contact_idx ON identities (contact_id);

-- Behaviour history, partitioned by month on the time the event happened.
CREATE TABLE events (
    id           bigserial,
    contact_id   bigint NOT NULL,
    message_id   text NOT NULL,
    type         text NOT NULL,
    name         text NOT NULL,
    properties   jsonb NOT NULL DEFAULT '{}',
    context      jsonb NOT NULL DEFAULT '{}',
    occurred_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX events_contact_name_time_idx ON events (contact_id, name, occurred_at DESC);
CREATE INDEX events_contact_time_idx ON events (contact_id, occurred_at DESC);

-- Creates the monthly partitions covering [from, to) that do not exist yet (run ahead of time by the scheduler).
CREATE FUNCTION nurture_ensure_event_partitions(from_ts timestamptz, to_ts timestamptz) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    month_start date := date_trunc('month', from_ts AT TIME ZONE 'UTC')::date;
    created int := 0;
    part text;
BEGIN
    WHILE month_start < (to_ts AT TIME ZONE 'UTC')::date LOOP
        part := format('events_%s', to_char(month_start, 'YYYY_MM'));
        IF to_regclass(quote_ident(current_schema()) || '.' || part) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                           part, month_start::timestamp AT TIME ZONE 'UTC',
                           (month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
        month_start := (month_start + interval '1 month')::date;
    END LOOP;
    RETURN created;
END $$;
SELECT nurture_ensure_event_partitions(now() - interval '1 month', now() + interval '3 months');

-- Idempotent ingestion: one row per messageId ever ingested (a unique index on the partitioned table would have
-- to include occurred_at, which would let the same messageId in with another timestamp).
CREATE TABLE event_message_ids (
    message_id   text PRIMARY KEY,
    event_id     bigint NOT NULL,
    occurred_at  timestamptz NOT NULL
);

-- Named lead scores. The stored value is the score at `reference_at`; the current value is
-- value * 0.5 ^ ((now - reference_at) / half_life), so decay needs no nightly rewrite.
CREATE TABLE contact_scores (
    contact_id    bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    name          text NOT NULL,
    value         double precision NOT NULL,
    reference_at  timestamptz NOT NULL,
    PRIMARY KEY (contact_id, name)
);

-- Definitions applied from YAML, versioned: a new version only when the content changes.
CREATE TABLE definitions (
    kind        text NOT NULL,
    name        text NOT NULL,
    version     int NOT NULL,
    checksum    text NOT NULL,
    spec        jsonb NOT NULL,
    source      text NOT NULL,
    applied_at  timestamptz NOT NULL,
    applied_by  text,
    PRIMARY KEY (kind, name, version)
);
CREATE TABLE definition_heads (
    kind        text NOT NULL,
    name        text NOT NULL,
    version     int NOT NULL,
    paused      boolean NOT NULL DEFAULT false,
    deleted_at  timestamptz,
    PRIMARY KEY (kind, name)
);

-- Segment membership, kept live; entries and exits are recorded for triggers and reports.
CREATE TABLE segment_memberships (
    segment     text NOT NULL,
    contact_id  bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    entered_at  timestamptz NOT NULL,
    PRIMARY KEY (segment, contact_id)
);
CREATE INDEX segment_memberships_contact_idx ON segment_memberships (contact_id);
CREATE TABLE segment_transitions (
    id          bigserial PRIMARY KEY,
    segment     text NOT NULL,
    contact_id  bigint NOT NULL,
    entered     boolean NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX segment_transitions_segment_idx ON segment_transitions (segment, at);

CREATE TABLE lifecycle_transitions (
    id          bigserial PRIMARY KEY,
    contact_id  bigint NOT NULL,
    from_stage  text,
    to_stage    text NOT NULL,
    at          timestamptz NOT NULL,
    cause       text
);
CREATE INDEX lifecycle_transitions_contact_idx ON lifecycle_transitions (contact_id, at);
CREATE INDEX lifecycle_transitions_stage_idx ON lifecycle_transitions (to_stage, at);

-- A contact's run through one workflow version. The scheduler claims due rows (SKIP LOCKED + lease) and
-- enqueues a step job carrying (id, step_seq); a job whose step_seq is stale is a no-op.
CREATE TABLE enrollments (
    id                bigserial PRIMARY KEY,
    workflow          text NOT NULL,
    workflow_version  int NOT NULL,
    contact_id        bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    state             text NOT NULL CHECK (state IN ('active', 'completed', 'exited', 'failed')),
    step_path         text NOT NULL DEFAULT '0',
    step_seq          int NOT NULL DEFAULT 0,
    due_at            timestamptz,
    lease_until       timestamptz,
    trigger           jsonb NOT NULL DEFAULT '{}',
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz,
    exit_reason       text
);
CREATE INDEX enrollments_due_idx ON enrollments (due_at) WHERE state = 'active';
CREATE INDEX enrollments_contact_idx ON enrollments (contact_id, workflow);
CREATE UNIQUE INDEX enrollments_one_active_idx ON enrollments (workflow, contact_id) WHERE state = 'active';

-- One row per message; the id is the delivery id sent to providers (Idempotency-Key) and reused on retry.
-- `dedupe_key` (e.g. "wf:<enrollment>:<step_seq>", "bc:<broadcast>:<contact>") makes "never twice" a constraint.
CREATE TABLE deliveries (
    id                   uuid PRIMARY KEY,
    dedupe_key           text NOT NULL UNIQUE,
    contact_id           bigint REFERENCES contacts (id) ON DELETE SET NULL,
    channel              text NOT NULL,
    template             text NOT NULL,
    template_version     int,
    provider             text,
    source_kind          text NOT NULL CHECK (source_kind IN ('workflow', 'broadcast', 'manual')),
    source_name          text,
    step                 int,
    enrollment_id        bigint,
    broadcast_id         bigint,
    status               text NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected', 'failed', 'suppressed', 'skipped')),
    attempts             int NOT NULL DEFAULT 0,
    last_error           text,
    provider_message_id  text,
    created_at           timestamptz NOT NULL,
    sent_at              timestamptz,
    updated_at           timestamptz NOT NULL
);
CREATE INDEX deliveries_contact_idx ON deliveries (contact_id, created_at);
CREATE INDEX deliveries_broadcast_idx ON deliveries (broadcast_id, status) WHERE broadcast_id IS NOT NULL;
CREATE INDEX deliveries_source_idx ON deliveries (source_kind, source_name, step);

-- Addresses that must never be sent to (bounces, complaints, manual), per channel.
CREATE TABLE suppressions (
    channel     text NOT NULL,
    address     text NOT NULL,
    reason      text NOT NULL,
    source      text,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (channel, address)
);

-- Consent records: who, what, when, how. The latest row per (contact, category, channel) is in force.
CREATE TABLE consents (
    id          bigserial PRIMARY KEY,
    contact_id  bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    category    text NOT NULL,
    channel     text NOT NULL,
    granted     boolean NOT NULL,
    source      text NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX consents_contact_idx ON consents (contact_id, category, channel, at DESC);

CREATE TABLE broadcasts (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL,
    segment         text NOT NULL,
    templates       text[] NOT NULL,
    split           int[],
    status          text NOT NULL CHECK (status IN ('scheduled', 'snapshotting', 'sending', 'paused', 'completed', 'cancelled', 'failed')),
    rate_per_second double precision,
    ignore_caps     boolean NOT NULL DEFAULT false,
    scheduled_at    timestamptz NOT NULL,
    recipients      int NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    started_at      timestamptz,
    finished_at     timestamptz,
    options         jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE broadcast_recipients (
    broadcast_id  bigint NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
    contact_id    bigint NOT NULL,
    batch         int NOT NULL,
    variant       int NOT NULL DEFAULT 0,
    delivery_id   uuid,
    PRIMARY KEY (broadcast_id, contact_id)
);
CREATE INDEX broadcast_recipients_batch_idx ON broadcast_recipients (broadcast_id, batch);

-- What operators did, and erasures (without personal data).
CREATE TABLE audit_log (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL,
    actor         text NOT NULL,
    action        text NOT NULL,
    subject_kind  text,
    subject_id    text,
    details       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_subject_idx ON audit_log (subject_kind, subject_id);
"""#)
}
