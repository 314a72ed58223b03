-- Projections: the cached latest fold of each entity stream, and snapshots of it every
-- `[projections] snapshot_every` versions, so a read folds at most that many events from the log.
-- Timestamps are microseconds since the Unix epoch, UTC; `updated_at` is the timestamp of the last
-- event folded.

CREATE TABLE projections (
    stream_id          TEXT PRIMARY KEY,
    state              TEXT    NOT NULL, -- JSON; 'null' once deleted
    version            INTEGER NOT NULL,
    last_event_id      BLOB    NOT NULL,
    updated_at         INTEGER NOT NULL,
    max_timestamp      INTEGER NOT NULL, -- highest timestamp of the events folded
    snapshot_version   INTEGER NOT NULL, -- the newest snapshot's version, 0 without one
    tail_min_timestamp INTEGER           -- lowest timestamp of the events after snapshot_version, if any
);

CREATE TABLE projection_snapshots (
    stream_id     TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    from_version  INTEGER NOT NULL, -- the previous snapshot's version, 0 for the first
    state         TEXT    NOT NULL,
    last_event_id BLOB    NOT NULL,
    updated_at    INTEGER NOT NULL,
    max_timestamp INTEGER NOT NULL, -- highest timestamp of the events 1..=version
    min_timestamp INTEGER NOT NULL, -- lowest timestamp of the events (from_version, version]
    PRIMARY KEY (stream_id, version)
);
-- The newest snapshot taken before a time (max_timestamp never decreases along a stream).
CREATE INDEX projection_snapshots_time ON projection_snapshots (stream_id, max_timestamp, version);
-- Which stretches of a stream hold events at or before a time, read from the index alone.
CREATE INDEX projection_snapshots_segments
    ON projection_snapshots (stream_id, version, min_timestamp, from_version);
