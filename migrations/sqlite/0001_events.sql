-- Events, keyed by seq (the rowid), with indexes that serve every filter of the query API.
CREATE TABLE events (
    seq             INTEGER PRIMARY KEY,
    event_id        BLOB    NOT NULL,
    event_type      TEXT    NOT NULL,
    event_source    TEXT    NOT NULL,
    event_category  TEXT    NOT NULL,
    user_id         TEXT,
    tenant_id       TEXT,
    stream_id       TEXT,
    stream_version  INTEGER,
    data            TEXT    NOT NULL,
    metadata        TEXT    NOT NULL,
    context         TEXT    NOT NULL,
    correlation_id  TEXT,
    idempotency_key TEXT,
    status          TEXT    NOT NULL,
    retry_count     INTEGER NOT NULL DEFAULT 0,
    error_message   TEXT,
    timestamp       INTEGER NOT NULL, -- microseconds since the Unix epoch, UTC
    created_at      INTEGER NOT NULL,
    processed_at    INTEGER
);

CREATE UNIQUE INDEX events_event_id ON events (event_id);
CREATE INDEX events_timestamp ON events (timestamp, seq);
CREATE INDEX events_type_timestamp ON events (event_type, timestamp);
CREATE INDEX events_status_timestamp ON events (status, timestamp);
CREATE INDEX events_user_timestamp ON events (user_id, timestamp) WHERE user_id IS NOT NULL;
CREATE INDEX events_tenant_timestamp ON events (tenant_id, timestamp) WHERE tenant_id IS NOT NULL;
CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE UNIQUE INDEX events_stream_version ON events (stream_id, stream_version) WHERE stream_id IS NOT NULL;
CREATE UNIQUE INDEX events_idempotency ON events (coalesce(tenant_id, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Incremental counts per dimension (type, source, category, status, day, user) for statistics.
CREATE TABLE counters (
    dimension TEXT    NOT NULL,
    key       TEXT    NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (dimension, key)
) WITHOUT ROWID;

CREATE INDEX counters_by_count ON counters (dimension, count);
