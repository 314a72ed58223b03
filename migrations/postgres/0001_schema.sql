-- The PostgreSQL schema: the same tables and meanings as SQLite's migrations 0001 to 0006, laid out
-- for several instances sharing one database. Times are microseconds since the Unix epoch (UTC) in
-- BIGINTs, ids UUIDs, JSON documents text (written and read whole, never queried inside).

-- Events, keyed by seq, which the store assigns in commit order under a transaction-level advisory
-- lock (see storage/postgres/events.rs).
CREATE TABLE events (
    seq             BIGINT  PRIMARY KEY,
    event_id        UUID    NOT NULL,
    event_type      TEXT    COLLATE "C" NOT NULL, -- byte order: a type pattern's prefix is an index range
    event_source    TEXT    NOT NULL,
    event_category  TEXT    NOT NULL,
    user_id         TEXT,
    tenant_id       TEXT,
    stream_id       TEXT    COLLATE "C", -- byte order: listing streams by prefix is an index range
    stream_version  BIGINT,
    data            TEXT    NOT NULL,
    metadata        TEXT    NOT NULL,
    context         TEXT    NOT NULL,
    correlation_id  TEXT,
    idempotency_key TEXT,
    status          TEXT    NOT NULL,
    retry_count     BIGINT  NOT NULL DEFAULT 0,
    error_message   TEXT,
    timestamp       BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL,
    processed_at    BIGINT,
    -- Pending: when it may be claimed (0 = at once). Processing: when the claim's lease ends.
    due_at          BIGINT  NOT NULL DEFAULT 0,
    claimed_by      TEXT
);

CREATE UNIQUE INDEX events_event_id ON events (event_id);
CREATE INDEX events_timestamp ON events (timestamp, seq);
CREATE INDEX events_type_timestamp ON events (event_type, timestamp);
CREATE INDEX events_status_timestamp ON events (status, timestamp);
CREATE INDEX events_user_timestamp ON events (user_id, timestamp) WHERE user_id IS NOT NULL;
CREATE INDEX events_tenant_timestamp ON events (tenant_id, timestamp) WHERE tenant_id IS NOT NULL;
CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_source_timestamp ON events (event_source, timestamp);
CREATE INDEX events_category_timestamp ON events (event_category, timestamp);
CREATE UNIQUE INDEX events_stream_version ON events (stream_id, stream_version) WHERE stream_id IS NOT NULL;
CREATE UNIQUE INDEX events_idempotency ON events (coalesce(tenant_id, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_to_process ON events (due_at, seq) WHERE status IN ('pending', 'processing');

-- Incremental counts per dimension for statistics, spread over shards: each instance adds to its own
-- shard, so no single row is one every instance's transactions queue for. Reads add the shards up.
CREATE TABLE counters (
    dimension TEXT     NOT NULL,
    key       TEXT     NOT NULL,
    shard     SMALLINT NOT NULL,
    count     BIGINT   NOT NULL,
    PRIMARY KEY (dimension, key, shard)
);

CREATE TABLE subscriptions (
    subscription_id  UUID    PRIMARY KEY,
    subscriber_name  TEXT    NOT NULL,
    subscriber_type  TEXT    NOT NULL,
    event_types      TEXT    NOT NULL,
    event_sources    TEXT    NOT NULL,
    event_categories TEXT    NOT NULL,
    callback_url     TEXT    NOT NULL,
    secret           TEXT,
    retry_policy     TEXT    NOT NULL,
    enabled          BOOLEAN NOT NULL,
    disabled_reason  TEXT,
    start_seq        BIGINT  NOT NULL,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);

CREATE TABLE deliveries (
    delivery_id      UUID   PRIMARY KEY,
    event_seq        BIGINT NOT NULL,
    event_id         UUID   NOT NULL,
    subscription_id  UUID   NOT NULL,
    replay_id        UUID,
    state            TEXT   NOT NULL, -- pending | in_flight | delivered | dead | cancelled
    attempts         BIGINT NOT NULL DEFAULT 0,
    round_attempts   BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    claimed_until    BIGINT,
    claimed_by       TEXT,
    last_status_code BIGINT,
    last_error       TEXT,
    first_failed_at  BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX deliveries_pending ON deliveries (subscription_id, next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_claimed ON deliveries (claimed_until) WHERE state = 'in_flight';
CREATE INDEX deliveries_claimed_by ON deliveries (claimed_by) WHERE state = 'in_flight';
CREATE INDEX deliveries_replay ON deliveries (replay_id, state) WHERE replay_id IS NOT NULL;

CREATE TABLE delivery_attempts (
    delivery_id     UUID    NOT NULL,
    attempt         BIGINT  NOT NULL,
    event_id        UUID    NOT NULL,
    subscription_id UUID    NOT NULL,
    success         BOOLEAN NOT NULL,
    status_code     BIGINT,
    response_body   TEXT,
    error           TEXT,
    duration_ms     BIGINT  NOT NULL,
    attempted_at    BIGINT  NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
CREATE INDEX delivery_attempts_event ON delivery_attempts (event_id);

CREATE TABLE dead_letters (
    dlq_id           UUID   PRIMARY KEY,
    kind             TEXT   NOT NULL,
    event_id         UUID   NOT NULL,
    event_type       TEXT   NOT NULL,
    subscription_id  UUID,
    processor_id     UUID,
    delivery_id      UUID,
    attempts         BIGINT NOT NULL,
    last_status_code BIGINT,
    last_error       TEXT,
    first_failed_at  BIGINT NOT NULL,
    last_failed_at   BIGINT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE UNIQUE INDEX dead_letters_delivery ON dead_letters (delivery_id) WHERE delivery_id IS NOT NULL;
CREATE INDEX dead_letters_subscription ON dead_letters (subscription_id, created_at);
CREATE INDEX dead_letters_processor ON dead_letters (processor_id, created_at);
CREATE INDEX dead_letters_created ON dead_letters (created_at);

CREATE TABLE cursors (
    name  TEXT   PRIMARY KEY,
    seq   BIGINT NOT NULL,
    epoch BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE processors (
    processor_id      UUID    PRIMARY KEY,
    processor_name    TEXT    NOT NULL UNIQUE,
    processor_type    TEXT    NOT NULL,
    enabled           BOOLEAN NOT NULL,
    priority          BIGINT  NOT NULL,
    filters           TEXT    NOT NULL,
    config            TEXT    NOT NULL,
    max_retries       BIGINT  NOT NULL,
    processed_count   BIGINT  NOT NULL DEFAULT 0,
    failed_count      BIGINT  NOT NULL DEFAULT 0,
    total_duration_us BIGINT  NOT NULL DEFAULT 0,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);

-- The projection processor every database starts with (it may be disabled or deleted like any other).
INSERT INTO processors (processor_id, processor_name, processor_type, enabled, priority, filters, config,
                        max_retries, created_at, updated_at)
VALUES ('0193a000-0000-7000-8000-000000000001', 'projections', 'projection', true, 0, '{}', '{}', 3,
        (extract(epoch FROM now()) * 1000000)::BIGINT, (extract(epoch FROM now()) * 1000000)::BIGINT);

CREATE TABLE processing_results (
    id             BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_seq      BIGINT  NOT NULL,
    processor_id   UUID    NOT NULL,
    processor_name TEXT    NOT NULL,
    success        BOOLEAN NOT NULL,
    duration_us    BIGINT  NOT NULL,
    error          TEXT,
    replay_id      UUID,
    processed_at   BIGINT  NOT NULL
);
CREATE INDEX processing_results_event ON processing_results (event_seq);

CREATE TABLE replays (
    replay_id    UUID   PRIMARY KEY,
    status       TEXT   NOT NULL,
    events_count BIGINT NOT NULL,
    total        BIGINT NOT NULL,
    done         BIGINT NOT NULL,
    failed       BIGINT NOT NULL,
    error        TEXT,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    owner        TEXT,
    lease_until  BIGINT NOT NULL DEFAULT 0,
    plan         TEXT,
    state        TEXT
);
CREATE INDEX replays_running ON replays (lease_until) WHERE status = 'running';

CREATE TABLE projections (
    stream_id          TEXT   PRIMARY KEY,
    state              TEXT   NOT NULL,
    version            BIGINT NOT NULL,
    last_event_id      UUID   NOT NULL,
    updated_at         BIGINT NOT NULL,
    max_timestamp      BIGINT NOT NULL,
    snapshot_version   BIGINT NOT NULL,
    tail_min_timestamp BIGINT
);

CREATE TABLE projection_snapshots (
    stream_id     TEXT   NOT NULL,
    version       BIGINT NOT NULL,
    from_version  BIGINT NOT NULL,
    state         TEXT   NOT NULL,
    last_event_id UUID   NOT NULL,
    updated_at    BIGINT NOT NULL,
    max_timestamp BIGINT NOT NULL,
    min_timestamp BIGINT NOT NULL,
    PRIMARY KEY (stream_id, version)
);
CREATE INDEX projection_snapshots_time ON projection_snapshots (stream_id, max_timestamp, version);
CREATE INDEX projection_snapshots_segments
    ON projection_snapshots (stream_id, version, min_timestamp, from_version);

CREATE TABLE instances (
    instance_id TEXT   PRIMARY KEY,
    addr        TEXT   NOT NULL,
    version     TEXT   NOT NULL,
    started_at  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL
);

-- Changes instances tell each other of; ids follow commit order like seqs (taken under an advisory lock).
CREATE TABLE changes (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    origin     TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX changes_created ON changes (created_at);
