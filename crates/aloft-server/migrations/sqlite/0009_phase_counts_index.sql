-- A rollout's phase counts (evaluated by the periodic job for every active rollout) and its
-- rate limit read only this index: no row lookup per device deployment.
CREATE INDEX device_deployments_phases ON device_deployments (deployment_id, phase, status, started);
