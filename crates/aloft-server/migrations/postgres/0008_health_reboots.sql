-- Reboots in the health comparison: devices that rebooted while measured, per cohort.
ALTER TABLE health_samples ADD COLUMN updated_rebooted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE health_samples ADD COLUMN control_rebooted BIGINT NOT NULL DEFAULT 0;
