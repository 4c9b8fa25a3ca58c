-- Dynamic groups: saved inventory filters (their predicates as JSON).
CREATE TABLE saved_filters (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    terms_json TEXT NOT NULL,
    created INTEGER NOT NULL
);
-- A dynamic deployment keeps a copy of its filter (JSON: id, name, terms) and the most
-- devices it takes; NULL for a deployment to a fixed list.
ALTER TABLE deployments ADD COLUMN filter_json TEXT;
ALTER TABLE deployments ADD COLUMN max_devices INTEGER;
