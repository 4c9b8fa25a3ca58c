-- The health gate's comparison over time: one sample per rollout and 30-second bucket (the
-- periodic rollout job writes it), for the chart of updated against not-yet-updated devices.
CREATE TABLE health_samples (
    deployment_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    updated_devices BIGINT NOT NULL,
    updated_failing BIGINT NOT NULL,
    updated_offline BIGINT NOT NULL,
    control_devices BIGINT NOT NULL,
    control_failing BIGINT NOT NULL,
    control_offline BIGINT NOT NULL,
    PRIMARY KEY (deployment_id, ts)
);
