-- Reboots in the health comparison: devices that rebooted while measured, per cohort.
ALTER TABLE health_samples ADD COLUMN updated_rebooted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE health_samples ADD COLUMN control_rebooted INTEGER NOT NULL DEFAULT 0;
