-- Times are UNIX microseconds (BIGINT); JSON columns hold canonical JSON text; booleans are
-- 0 or 1, as on SQLite, so that one set of statements reads both.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL,
    login_ts BIGINT
);

-- Every token the server issued and still honours: user sessions, personal access tokens and
-- device tokens. Revoking a token deletes its row.
CREATE TABLE tokens (
    jti TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('session', 'pat', 'device')),
    subject TEXT NOT NULL,
    name TEXT,
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT,
    last_used BIGINT
);
CREATE INDEX tokens_subject ON tokens (subject, kind);
CREATE UNIQUE INDEX tokens_pat_name ON tokens (subject, name) WHERE kind = 'pat';

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    identity_hash TEXT NOT NULL UNIQUE,
    identity_json TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL,
    check_in_time BIGINT,
    inventory_ts BIGINT,
    group_name TEXT
);
CREATE INDEX devices_status ON devices (status);
CREATE INDEX devices_group ON devices (group_name);

CREATE TABLE auth_sets (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    pubkey TEXT NOT NULL,
    status TEXT NOT NULL,
    ts BIGINT NOT NULL,
    UNIQUE (device_id, pubkey)
);

-- Inventory and tag attributes; identity and system attributes are derived from `devices`.
CREATE TABLE attributes (
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    value_json TEXT NOT NULL,
    description TEXT,
    ts BIGINT NOT NULL,
    PRIMARY KEY (device_id, scope, name)
);
CREATE INDEX attributes_lookup ON attributes (scope, name, value_json);

CREATE TABLE artifacts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    device_types_json TEXT NOT NULL,
    depends_json TEXT NOT NULL,
    provides_json TEXT NOT NULL,
    clears_json TEXT NOT NULL,
    updates_json TEXT NOT NULL,
    format_version BIGINT NOT NULL,
    signed BIGINT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    modified BIGINT NOT NULL
);
CREATE INDEX artifacts_name ON artifacts (name);
-- One row per (artifact, device type): makes the name + depends conflict check a constraint.
CREATE TABLE artifact_device_types (
    artifact_id TEXT NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    device_type TEXT NOT NULL,
    depends_key TEXT NOT NULL,
    UNIQUE (name, device_type, depends_key)
);

CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    artifact_name TEXT NOT NULL,
    created BIGINT NOT NULL,
    finished BIGINT,
    status TEXT NOT NULL,
    groups_json TEXT NOT NULL DEFAULT '[]',
    force_installation BIGINT NOT NULL DEFAULT 0,
    all_devices BIGINT NOT NULL DEFAULT 0,
    fingerprint TEXT NOT NULL
);
CREATE INDEX deployments_created ON deployments (created);

-- One row per targeted device, created with the deployment (status `pending`).
CREATE TABLE device_deployments (
    id TEXT PRIMARY KEY,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    status TEXT NOT NULL,
    substate TEXT,
    created BIGINT NOT NULL,
    started BIGINT,
    finished BIGINT,
    artifact_id TEXT,
    log TEXT,
    UNIQUE (deployment_id, device_id)
);
CREATE INDEX device_deployments_device ON device_deployments (device_id, status);
