-- Archiving: one run at a time across instances (a lease on a single row), with the plan of the files
-- a run is writing, so a run that stopped between writing its files and marking their events is
-- finished by the next one with the same files (neither lost nor written twice).
CREATE TABLE archive_lease (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    owner       TEXT,    -- the instance holding it, NULL when free
    lease_until INTEGER, -- microseconds since the Unix epoch, UTC
    plan        TEXT     -- JSON [{"path", "seqs"}] of the files being written, NULL when none
);
INSERT INTO archive_lease (id) VALUES (1);

-- Deleting archived events removes their deliveries and dead letters: found by event, not by scanning.
CREATE INDEX deliveries_event ON deliveries (event_seq);
CREATE INDEX dead_letters_event ON dead_letters (event_id);
