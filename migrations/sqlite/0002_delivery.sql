-- Webhook subscriptions, the delivery outbox, attempts, and the dead-letter queue.
CREATE TABLE subscriptions (
    subscription_id  BLOB PRIMARY KEY,
    subscriber_name  TEXT    NOT NULL,
    subscriber_type  TEXT    NOT NULL,
    event_types      TEXT    NOT NULL, -- JSON array of type patterns
    event_sources    TEXT    NOT NULL, -- JSON array
    event_categories TEXT    NOT NULL, -- JSON array
    callback_url     TEXT    NOT NULL,
    secret           TEXT,
    retry_policy     TEXT    NOT NULL, -- JSON RetryPolicy
    enabled          INTEGER NOT NULL,
    disabled_reason  TEXT,
    start_seq        INTEGER NOT NULL, -- the log position at creation: only later events are delivered
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- One row per (event, subscription): the outbox. Written with the dispatch cursor in one transaction.
CREATE TABLE deliveries (
    delivery_id      BLOB PRIMARY KEY,
    event_seq        INTEGER NOT NULL,
    event_id         BLOB    NOT NULL,
    subscription_id  BLOB    NOT NULL,
    state            TEXT    NOT NULL, -- pending | in_flight | delivered | dead | cancelled
    attempts         INTEGER NOT NULL DEFAULT 0, -- every attempt ever made
    round_attempts   INTEGER NOT NULL DEFAULT 0, -- attempts since the last (re)start; against max_retries
    next_attempt_at  INTEGER NOT NULL,
    claimed_until    INTEGER,
    last_status_code INTEGER,
    last_error       TEXT,
    first_failed_at  INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_claimed ON deliveries (claimed_until) WHERE state = 'in_flight';
-- Cancelling a subscription's pending deliveries; partial, so other state changes never touch it.
CREATE INDEX deliveries_pending_by_subscription ON deliveries (subscription_id) WHERE state = 'pending';

CREATE TABLE delivery_attempts (
    delivery_id     BLOB    NOT NULL,
    attempt         INTEGER NOT NULL,
    event_id        BLOB    NOT NULL,
    subscription_id BLOB    NOT NULL,
    success         INTEGER NOT NULL,
    status_code     INTEGER,
    response_body   TEXT,
    error           TEXT,
    duration_ms     INTEGER NOT NULL,
    attempted_at    INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;
CREATE INDEX delivery_attempts_event ON delivery_attempts (event_id);

CREATE TABLE dead_letters (
    dlq_id           BLOB PRIMARY KEY,
    kind             TEXT    NOT NULL,
    event_id         BLOB    NOT NULL,
    event_type       TEXT    NOT NULL,
    subscription_id  BLOB,
    processor_id     BLOB,
    delivery_id      BLOB,
    attempts         INTEGER NOT NULL,
    last_status_code INTEGER,
    last_error       TEXT,
    first_failed_at  INTEGER NOT NULL,
    last_failed_at   INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX dead_letters_delivery ON dead_letters (delivery_id) WHERE delivery_id IS NOT NULL;
CREATE INDEX dead_letters_subscription ON dead_letters (subscription_id, created_at);
CREATE INDEX dead_letters_created ON dead_letters (created_at);

-- How far a worker has read the event log.
CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL
) WITHOUT ROWID;
