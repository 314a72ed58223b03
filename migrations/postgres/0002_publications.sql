-- Where lifecycle publications to NATS JetStream stand: one cursor per publication log (`events`: the
-- event log by seq), moved only after JetStream acknowledged everything up to it, and claimed by one
-- instance at a time with a lease (owner NULL: free).
CREATE TABLE publications (
    name        TEXT   PRIMARY KEY,
    seq         BIGINT NOT NULL,
    owner       TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0
);
