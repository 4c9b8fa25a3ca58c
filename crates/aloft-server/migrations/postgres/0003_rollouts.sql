-- Phased deployments (rollouts): the plan (phases and options, JSON) and where the rollout
-- stands (JSON, changed by compare-and-set only); NULL for a plain deployment.
ALTER TABLE deployments ADD COLUMN rollout TEXT;
ALTER TABLE deployments ADD COLUMN rollout_state TEXT;
-- The phase each device was dealt into when the deployment was created (0: the first).
ALTER TABLE device_deployments ADD COLUMN phase BIGINT NOT NULL DEFAULT 0;

-- Fleet-wide switches (the halt that holds every deployment): present while engaged.
CREATE TABLE switches (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated BIGINT NOT NULL
);
