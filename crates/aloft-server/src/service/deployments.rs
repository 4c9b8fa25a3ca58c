//! Deployments: creating and aborting them, and telling listeners how each one stands after
//! any change (every change to a device deployment goes through [`device_changed`]).

use aloft_api::event::{DeploymentProgress, Event};
use aloft_api::management::DeploymentStatistics;
use aloft_api::status::{DeploymentStatus, DeploymentSummary, DeviceDeploymentStatus};
use sha2::{Digest, Sha256};

use super::{Ctx, ServiceError, ServiceResult, rollouts, stored};
use crate::domain::rollouts::{self as rules, Hold, Plan, Size, State};
use crate::store::{DeploymentRow, DeploymentStats, Filter, InventoryQuery};
use crate::time::{rfc3339, rfc3339_opt};
use aloft_api::management::{PhaseInfo, RolloutInfo, SavedFilter};
use aloft_api::status::Counts;

/// Which devices a new deployment targets.
#[derive(Debug, Clone)]
pub enum Target {
    /// These device ids (each must exist).
    Devices(Vec<String>),
    /// Every accepted device.
    All,
    /// The accepted devices of a static group.
    Group(String),
    /// The accepted devices matching a saved filter, now and while the deployment runs.
    Filter(SavedFilter),
}

/// A deployment to create.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    /// Its name.
    pub name: String,
    /// The release.
    pub artifact_name: String,
    /// Its devices.
    pub target: Target,
    /// Install even where the release already runs.
    pub force: bool,
    /// How many times a device that failed starts over (Mender's `retries`).
    pub retries: u32,
    /// The most devices a dynamic deployment takes.
    pub max_devices: Option<u64>,
    /// Its phases and rollout options, when it is phased.
    pub plan: Option<Plan>,
    /// The digest of the plan the operator saw ([`super::plans::plan`]).
    pub expect_plan: Option<String>,
}

/// Where a phased deployment stands.
#[derive(Debug, Clone)]
pub struct RolloutView {
    /// Its plan.
    pub plan: Plan,
    /// Its state.
    pub state: State,
    /// Each phase's devices per status group.
    pub phases: Vec<Counts>,
    /// Whether the fleet-wide halt holds.
    pub halted: bool,
    /// What holds the installs of devices that downloaded, when the rollout controls them.
    pub install_held: Option<Hold>,
}

impl RolloutView {
    /// Its phases as the API shows them.
    pub fn phases(&self) -> Vec<PhaseInfo> {
        let r = self;
        r.plan
            .phases
            .iter()
            .zip(&r.phases)
            .enumerate()
            .map(|(i, (p, counts))| PhaseInfo {
                id: (i + 1).to_string(),
                batch_size: match p.size {
                    Size::Percent(x) => Some(x),
                    _ => None,
                },
                start_ts: rfc3339_opt(p.start_ts),
                device_count: counts.total,
                open: u32::try_from(i).is_ok_and(|i| i <= r.state.phase),
                summary: *counts,
            })
            .collect()
    }

    /// Where it stands, as the API shows it.
    pub fn info(&self) -> RolloutInfo {
        let r = self;
        RolloutInfo {
            phase: r.state.phase + 1,
            phases: u32::try_from(r.plan.phases.len()).unwrap_or(u32::MAX),
            paused: r.state.paused.clone(),
            halted: r.halted,
            phase_started: rfc3339(r.state.phase_ts),
            threshold_met: rfc3339_opt(r.state.met_ts),
            install_held: r.install_held.map(|h| h.text(rfc3339)),
            released: rfc3339_opt(r.state.released),
            gate_held: r.state.gate_held.clone(),
            options: rules::shown_options(&r.plan.options),
        }
    }
}

/// A deployment with its aggregates, as every reader shows it.
#[derive(Debug, Clone)]
pub struct DeploymentView {
    /// The row.
    pub row: DeploymentRow,
    /// Its status, typed.
    pub status: DeploymentStatus,
    /// Counters.
    pub stats: DeploymentStats,
    /// Counters per group and the verdict.
    pub summary: DeploymentSummary,
    /// Its rollout, when it is phased.
    pub rollout: Option<RolloutView>,
    /// The dynamic group it follows.
    pub filter: Option<SavedFilter>,
}

impl DeploymentView {
    /// What a live event carries.
    pub fn progress(&self) -> DeploymentProgress {
        DeploymentProgress {
            id: self.row.id.clone(),
            name: self.row.name.clone(),
            status: self.status,
            statistics: DeploymentStatistics {
                status: self.stats.by_status.clone(),
                total_size: self.stats.total_size,
            },
            summary: self.summary,
            phases: self
                .rollout
                .as_ref()
                .map(RolloutView::phases)
                .unwrap_or_default(),
            rollout: self.rollout.as_ref().map(RolloutView::info),
        }
    }
}

/// Adds the aggregates to a deployment row.
pub async fn view(ctx: Ctx<'_>, row: DeploymentRow) -> ServiceResult<DeploymentView> {
    let counters = ctx.store.deployment_stats(&row.id).await?;
    let mut halted = None;
    let rollout = rollout_view(ctx, &row, &mut halted).await?;
    view_with(row, counters, rollout)
}

/// The rollout part of a view; `halted` caches the fleet-wide halt for a page of rows (read
/// once, and only when a row has a rollout).
async fn rollout_view(
    ctx: Ctx<'_>,
    row: &DeploymentRow,
    halted: &mut Option<bool>,
) -> ServiceResult<Option<RolloutView>> {
    let Some((plan, state)) = rollouts::of(row)? else {
        return Ok(None);
    };
    let (phases, _) = rollouts::counts(ctx, &row.id, plan.phases.len()).await?;
    let halted = match *halted {
        Some(h) => h,
        None => *halted.insert(rollouts::halted(ctx).await?.is_some()),
    };
    let install_held = rules::controls_install(&plan)
        .then(|| rules::install_hold(&plan, &state, halted, ctx.now()))
        .flatten();
    Ok(Some(RolloutView {
        plan,
        state,
        phases,
        halted,
        install_held,
    }))
}

/// Adds the aggregates to a page of deployment rows, read in one batch (per-phase counts are
/// one more query for each row that has a rollout).
pub async fn views(ctx: Ctx<'_>, rows: Vec<DeploymentRow>) -> ServiceResult<Vec<DeploymentView>> {
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut all = ctx.store.deployment_stats_of(&ids).await?;
    let mut out = Vec::with_capacity(rows.len());
    let mut halted = None;
    for row in rows {
        let counters = all.remove(&row.id).unwrap_or_default();
        let rollout = rollout_view(ctx, &row, &mut halted).await?;
        out.push(view_with(row, counters, rollout)?);
    }
    Ok(out)
}

fn view_with(
    row: DeploymentRow,
    counters: DeploymentStats,
    rollout: Option<RolloutView>,
) -> ServiceResult<DeploymentView> {
    let status: DeploymentStatus = stored(&row.status)?;
    let summary = DeploymentSummary::of(status, &counters.by_status);
    let filter = super::dynamic::filter_of(&row)?;
    Ok(DeploymentView {
        filter,
        row,
        status,
        stats: counters,
        summary,
        rollout,
    })
}

/// One deployment with its aggregates.
pub async fn find(ctx: Ctx<'_>, id: &str) -> ServiceResult<DeploymentView> {
    let row = ctx
        .store
        .deployment(id)
        .await?
        .ok_or_else(|| ServiceError::NotFound("deployment not found".into()))?;
    view(ctx, row).await
}

/// The ids of the accepted devices matching `filters`, of one static group or of all, in
/// admission order.
pub(crate) async fn accepted_devices(
    ctx: Ctx<'_>,
    group: Option<String>,
    filters: Vec<Filter>,
) -> ServiceResult<Vec<String>> {
    let mut q = accepted_query(filters);
    q.group = group;
    Ok(ctx.store.search_inventory(&q).await?.0)
}

/// A query for every accepted device matching `filters` (no paging).
pub(crate) fn accepted_query(mut filters: Vec<Filter>) -> InventoryQuery {
    filters.push(Filter {
        scope: "identity".into(),
        attribute: "status".into(),
        op: "$eq".into(),
        value: serde_json::json!("accepted"),
    });
    InventoryQuery {
        filters,
        page: 0,
        per_page: 0,
        ..InventoryQuery::default()
    }
}

/// The fingerprint that makes creating the same deployment twice a conflict.
fn fingerprint(d: &NewDeployment, groups: &[String], devices: &[String]) -> String {
    let mut h = Sha256::new();
    let plan = d
        .plan
        .as_ref()
        .map(|p| serde_json::to_string(p).unwrap_or_default())
        .unwrap_or_default();
    let filter = match &d.target {
        Target::Filter(f) => format!("{}:{:?}", f.id, d.max_devices),
        _ => String::new(),
    };
    for part in [
        d.name.as_str(),
        d.artifact_name.as_str(),
        plan.as_str(),
        filter.as_str(),
        if d.force { "force" } else { "" },
        if matches!(d.target, Target::All) {
            "all"
        } else {
            ""
        },
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for g in groups {
        h.update(g.as_bytes());
        h.update([1]);
    }
    for d in devices {
        h.update(d.as_bytes());
        h.update([2]);
    }
    hex::encode(h.finalize())
}

/// The devices a new deployment takes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Targets {
    /// Its devices, sorted, each once.
    pub devices: Vec<String>,
    /// The static groups it names.
    pub groups: Vec<String>,
    /// Devices matching a dynamic deployment's filter beyond its `max_devices`.
    pub over_max: Vec<String>,
}

/// The devices a new deployment targets and the groups it names, or why it cannot be made
/// (no artifact of the release, unknown device ids, no device at all). A dynamic deployment
/// with `max_devices` takes the first that match in admission order.
pub(crate) async fn targets(ctx: Ctx<'_>, d: &NewDeployment) -> ServiceResult<Targets> {
    if !ctx.store.release_exists(&d.artifact_name).await? {
        return Err(ServiceError::Rule("No artifact for the deployment".into()));
    }
    let mut over_max = Vec::new();
    let (mut devices, mut groups) = match &d.target {
        Target::Devices(list) => {
            for id in list {
                if ctx.store.device(id).await?.is_none() {
                    return Err(ServiceError::Invalid(format!(
                        "no device has the id {id:?}"
                    )));
                }
            }
            (list.clone(), Vec::new())
        }
        Target::All => (accepted_devices(ctx, None, Vec::new()).await?, Vec::new()),
        Target::Group(g) => (
            accepted_devices(ctx, Some(g.clone()), Vec::new()).await?,
            vec![g.clone()],
        ),
        Target::Filter(f) => {
            let mut found =
                accepted_devices(ctx, None, super::dynamic::predicates(&f.terms)).await?;
            if let Some(max) = d.max_devices {
                over_max =
                    found.split_off(usize::try_from(max).unwrap_or(usize::MAX).min(found.len()));
            }
            (found, Vec::new())
        }
    };
    devices.sort();
    devices.dedup();
    if devices.is_empty() {
        return Err(ServiceError::Invalid(
            "No devices for the deployment".into(),
        ));
    }
    if let (Target::Devices(_), [only]) = (&d.target, devices.as_slice())
        && let Some(g) = ctx.store.device(only).await?.and_then(|dev| dev.group)
    {
        groups.push(g);
    }
    Ok(Targets {
        devices,
        groups,
        over_max,
    })
}

/// Creates a deployment; returns its id. Unknown device ids are refused (a deployment for a
/// device that does not exist would wait forever). With `expect_plan`, the plan made now must
/// have that digest (the fleet did not change since the operator saw it).
pub async fn create(ctx: Ctx<'_>, d: NewDeployment) -> ServiceResult<String> {
    let Targets {
        devices,
        groups,
        over_max,
    } = targets(ctx, &d).await?;
    let phases = match &d.plan {
        Some(plan) => rollouts::deal(ctx, plan, &devices).await?,
        None => Vec::new(),
    };
    let mut plan = d.plan.clone();
    if let Some(p) = plan.as_mut()
        && p.options.health.is_some_and(|h| h.roll_back)
    {
        p.previous = rollouts::previous_release(ctx, &devices, &d.artifact_name).await?;
    }
    if let Some(want) = &d.expect_plan {
        let flat;
        let dealt = if d.plan.is_some() {
            &phases
        } else {
            flat = vec![0; devices.len()];
            &flat
        };
        let now = super::plans::plan_for(ctx, &d, &devices, dealt, &over_max).await?;
        if &now.digest != want {
            return Err(ServiceError::Conflict(format!(
                "the fleet changed since the plan; it is now {}",
                super::plans::summary(&now)
            )));
        }
    }
    let now = ctx.now();
    let row = DeploymentRow {
        id: uuid::Uuid::new_v4().to_string(),
        name: d.name.clone(),
        artifact_name: d.artifact_name.clone(),
        created: now,
        finished: None,
        status: DeploymentStatus::Pending.as_str().into(),
        groups: groups.clone(),
        force_installation: d.force,
        all_devices: matches!(d.target, Target::All),
        rollout: plan
            .as_ref()
            .map(|p| serde_json::to_string(p).unwrap_or_default()),
        rollout_state: plan.as_ref().map(|_| rollouts::json(&State::start(now))),
        retries: d.retries,
        filter: match &d.target {
            Target::Filter(f) => Some(serde_json::to_string(f).unwrap_or_default()),
            _ => None,
        },
        max_devices: d.max_devices,
    };
    ctx.store
        .create_deployment(&row, &devices, &phases, &fingerprint(&d, &groups, &devices))
        .await?;
    ctx.caches.deployments_changed();
    let id = row.id.clone();
    ctx.events
        .publish(Event::Deployment(view(ctx, row).await?.progress()));
    tracing::info!(deployment.id = %id, artifact.name = %d.artifact_name, devices = devices.len(), "deployment created");
    Ok(id)
}

/// Aborts a deployment: its unfinished devices end `aborted`.
pub async fn abort(ctx: Ctx<'_>, id: &str) -> ServiceResult<()> {
    ctx.store.abort_deployment(id, ctx.now()).await?;
    ctx.caches.deployments_changed();
    ctx.events
        .publish(Event::Deployment(find(ctx, id).await?.progress()));
    tracing::info!(deployment.id = %id, "deployment aborted");
    Ok(())
}

/// Aborts every unfinished deployment of one device.
pub async fn abort_device(ctx: Ctx<'_>, device_id: &str) -> ServiceResult<()> {
    let open = ctx.store.open_device_deployments(device_id).await?;
    ctx.store.abort_device(device_id, ctx.now()).await?;
    ctx.caches.deployments_changed();
    for dd in open {
        device_changed(
            ctx,
            &dd.deployment_id,
            device_id,
            DeviceDeploymentStatus::Aborted,
            None,
        )
        .await;
    }
    Ok(())
}

/// Forgets a device's finished deployments.
pub async fn reset_history(ctx: Ctx<'_>, device_id: &str) -> ServiceResult<()> {
    ctx.store
        .delete_device_history(device_id, crate::time::now_us())
        .await?;
    Ok(())
}

/// Tells listeners how a deployment stands now (logged, not returned, like
/// [`device_changed`]).
pub async fn deployment_changed(ctx: Ctx<'_>, id: &str) {
    match find(ctx, id).await {
        Ok(v) => ctx.events.publish(Event::Deployment(v.progress())),
        Err(e) => {
            tracing::warn!(deployment.id = %id, error = %e, "no live event for a deployment change");
        }
    }
}

/// Tells listeners that a device's part in a deployment changed, with the deployment's new
/// state. The change is already stored: a failure to read the state back is logged, not
/// returned, so the caller's answer stays true.
pub async fn device_changed(
    ctx: Ctx<'_>,
    deployment_id: &str,
    device_id: &str,
    status: DeviceDeploymentStatus,
    substate: Option<String>,
) {
    match find(ctx, deployment_id).await {
        Ok(v) => ctx.events.publish(Event::DeviceDeployment {
            deployment_id: deployment_id.to_owned(),
            device_id: device_id.to_owned(),
            status,
            substate,
            deployment: v.progress(),
        }),
        Err(e) => {
            tracing::warn!(deployment.id = %deployment_id, error = %e, "no live event for a device deployment change");
        }
    }
}
