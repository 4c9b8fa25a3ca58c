-- Mender's `retries`: how many times a device that failed its install starts over, and how
-- many times each device did.
ALTER TABLE deployments ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE device_deployments ADD COLUMN retried INTEGER NOT NULL DEFAULT 0;
