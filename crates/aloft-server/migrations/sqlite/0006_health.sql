-- The health gate's comparison over time: one sample per rollout and 30-second bucket (the
-- periodic rollout job writes it), for the chart of updated against not-yet-updated devices.
CREATE TABLE health_samples (
    deployment_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    updated_devices INTEGER NOT NULL,
    updated_failing INTEGER NOT NULL,
    updated_offline INTEGER NOT NULL,
    control_devices INTEGER NOT NULL,
    control_failing INTEGER NOT NULL,
    control_offline INTEGER NOT NULL,
    PRIMARY KEY (deployment_id, ts)
);
