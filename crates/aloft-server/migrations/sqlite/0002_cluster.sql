-- What every replica must learn about: cache invalidations (written in the transaction of the
-- change) and live events. Replicas read it by time window; old rows are pruned by a job.
CREATE TABLE feed (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    origin TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX feed_ts ON feed (ts);

-- Periodic background jobs: the replica whose claim moves `lease_until` runs the job.
CREATE TABLE jobs (
    name TEXT PRIMARY KEY,
    holder TEXT,
    lease_until INTEGER NOT NULL DEFAULT 0
);

-- Facts every running replica must agree on (the fingerprint of the token key and URL
-- secret), refreshed by each replica; a value not refreshed for a while may be replaced.
CREATE TABLE cluster (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated INTEGER NOT NULL
);
