-- Processors, their results, the processing queue over the events table, and replay jobs.

-- For pending events: when they may be claimed (0 = at once; later for a retry with backoff).
-- For processing events: when the claim expires and another worker may take them.
ALTER TABLE events ADD COLUMN due_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX events_to_process ON events (due_at, seq) WHERE status IN ('pending', 'processing');

CREATE TABLE processors (
    processor_id      BLOB PRIMARY KEY,
    processor_name    TEXT    NOT NULL UNIQUE,
    processor_type    TEXT    NOT NULL,
    enabled           INTEGER NOT NULL,
    priority          INTEGER NOT NULL,
    filters           TEXT    NOT NULL, -- JSON ProcessorFilters
    config            TEXT    NOT NULL, -- JSON object
    max_retries       INTEGER NOT NULL,
    processed_count   INTEGER NOT NULL DEFAULT 0,
    failed_count      INTEGER NOT NULL DEFAULT 0,
    total_duration_us INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

-- The projection processor every database starts with (it may be disabled or deleted like any other).
INSERT INTO processors (processor_id, processor_name, processor_type, enabled, priority, filters, config,
                        max_retries, created_at, updated_at)
VALUES (X'0193A000000070008000000000000001', 'projections', 'projection', 1, 0, '{}', '{}', 3,
        CAST(strftime('%s', 'now') AS INTEGER) * 1000000, CAST(strftime('%s', 'now') AS INTEGER) * 1000000);

CREATE TABLE processing_results (
    id             INTEGER PRIMARY KEY,
    event_seq      INTEGER NOT NULL,
    processor_id   BLOB    NOT NULL,
    processor_name TEXT    NOT NULL,
    success        INTEGER NOT NULL,
    duration_us    INTEGER NOT NULL,
    error          TEXT,
    replay_id      BLOB,
    processed_at   INTEGER NOT NULL
);
CREATE INDEX processing_results_event ON processing_results (event_seq);

CREATE TABLE replays (
    replay_id    BLOB PRIMARY KEY,
    status       TEXT    NOT NULL,
    events_count INTEGER NOT NULL,
    total        INTEGER NOT NULL,
    done         INTEGER NOT NULL,
    failed       INTEGER NOT NULL,
    error        TEXT,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER
);

-- Deliveries a replay created, so its progress can be counted.
ALTER TABLE deliveries ADD COLUMN replay_id BLOB;
CREATE INDEX deliveries_replay ON deliveries (replay_id, state) WHERE replay_id IS NOT NULL;
