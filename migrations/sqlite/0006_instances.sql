-- What instances sharing a store need (on SQLite, one process holds the store, so these mostly record
-- that one): who holds a claim, the epoch subscription changes move the delivery cursor on, replays
-- that any instance can carry on, the instances themselves, and the changes they tell each other of.
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE events ADD COLUMN claimed_by TEXT;
ALTER TABLE cursors ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;

ALTER TABLE replays ADD COLUMN owner TEXT;
ALTER TABLE replays ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE replays ADD COLUMN plan TEXT;  -- what to replay, JSON; NULL for replays from before
ALTER TABLE replays ADD COLUMN state TEXT; -- how far it got, JSON
-- Replays from before could not be carried on: they never come back as running.
UPDATE replays SET status = 'failed', error = coalesce(error, 'interrupted by an upgrade'),
    finished_at = coalesce(finished_at, started_at) WHERE status = 'running';

CREATE TABLE instances (
    instance_id TEXT PRIMARY KEY,
    addr        TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE changes (
    id         INTEGER PRIMARY KEY,
    origin     TEXT    NOT NULL,
    body       TEXT    NOT NULL, -- JSON, as the engine wrote it
    created_at INTEGER NOT NULL
);
CREATE INDEX changes_created ON changes (created_at);
