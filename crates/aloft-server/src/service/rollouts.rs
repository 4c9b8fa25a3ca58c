//! Rollouts: dealing a phased deployment's devices into phases, the gate each device passes
//! before it starts, the fleet-wide halt, operators' commands, and the evaluation that
//! advances, pauses or aborts a rollout (after every final report, and by the periodic job
//! for what time alone decides). The rules are in [`crate::domain::rollouts`].

use std::collections::HashMap;
use std::time::Duration;

use aloft_api::management::{GateQuestion, HealthCohort, HealthPoint, RolloutHealth};
use aloft_api::status::{Counts, DeviceDeploymentStatus};

use super::deployments::deployment_changed;
use super::{Ctx, ServiceError, ServiceResult, stored};
use crate::domain::health::{self, Cohort};
use crate::domain::rollouts::{self as rules, Candidate, Command, Load, Plan, State, Step, Wait};
use crate::store::{DeploymentRow, Inventory};

/// The switch that holds every deployment.
pub const HALT: &str = "halt";
/// How often the periodic job looks at every active rollout (time-driven steps are due
/// within this bound).
pub const TICK: Duration = Duration::from_secs(2);
/// The window of `max_per_minute`.
const MINUTE_US: i64 = 60_000_000;
/// Most compare-and-set attempts of one evaluation before it leaves the rest to the job.
const ATTEMPTS: usize = 4;

/// Devices whose inventories one store query reads (dealing, plans, roll-back).
pub const BATCH: usize = 1000;

/// A phased deployment's plan and state, read from its row.
pub fn of(row: &DeploymentRow) -> ServiceResult<Option<(Plan, State)>> {
    match (&row.rollout, &row.rollout_state) {
        (Some(plan), Some(state)) => {
            let plan: Plan = serde_json::from_str(plan)
                .map_err(|e| ServiceError::Corrupt(format!("rollout plan of {}: {e}", row.id)))?;
            let state: State = serde_json::from_str(state)
                .map_err(|e| ServiceError::Corrupt(format!("rollout state of {}: {e}", row.id)))?;
            Ok(Some((plan, state)))
        }
        (None, None) => Ok(None),
        _ => Err(ServiceError::Corrupt(format!(
            "deployment {} has half a rollout",
            row.id
        ))),
    }
}

/// Each phase's devices per status group, and how many devices are at it now (handed out,
/// not finished).
pub async fn counts(ctx: Ctx<'_>, id: &str, phases: usize) -> ServiceResult<(Vec<Counts>, u64)> {
    let mut out = vec![Counts::default(); phases];
    let mut installing = 0;
    for c in ctx.store.phase_counts(id).await? {
        let status: DeviceDeploymentStatus = stored(&c.status)?;
        if let Some(slot) = usize::try_from(c.phase).ok().and_then(|p| out.get_mut(p)) {
            slot.add(status.group(), c.count);
        }
        if c.started && !status.is_final() {
            installing += c.count;
        }
    }
    Ok((out, installing))
}

/// Why the fleet-wide halt holds, while it does (read from the store once per deployments
/// epoch: engaging or releasing it moves the epoch on every replica).
pub async fn halted(ctx: Ctx<'_>) -> ServiceResult<Option<String>> {
    if let Some(h) = ctx.caches.halt() {
        return Ok(h);
    }
    let epoch = ctx.caches.deployment_epoch();
    let h = ctx.store.switch(HALT).await?;
    ctx.caches.remember_halt(epoch, h.clone());
    Ok(h)
}

/// Engages (with a reason) or releases the fleet-wide halt.
pub async fn set_halt(ctx: Ctx<'_>, reason: Option<String>) -> ServiceResult<()> {
    if reason.as_ref().is_some_and(|r| r.len() > 1024) {
        return Err(ServiceError::Invalid(
            "reason must have at most 1024 characters".into(),
        ));
    }
    ctx.store
        .set_switch(HALT, reason.as_deref(), ctx.now())
        .await?;
    ctx.caches.deployments_changed();
    if let Some(r) = &reason {
        tracing::warn!(reason = %r, "fleet-wide halt engaged: no device starts an update");
    } else {
        tracing::info!("fleet-wide halt released");
    }
    for row in ctx.store.active_rollouts().await? {
        deployment_changed(ctx, &row.id).await;
    }
    Ok(())
}

/// What a rollout says to one of its devices now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Whether it may start the update (asked only of a device not handed it yet).
    pub start: Option<Result<(), Wait>>,
    /// Its install policy and what holds the install, when the rollout controls installs
    /// ([`rules::controls_install`]).
    pub install: Option<super::scheduling::Install>,
}

/// What `dep` says to its device in `phase` now; `starting`: the device was not handed the
/// update yet, so whether it may start is asked too. Reads the plan and the halt once.
pub async fn standing(
    ctx: Ctx<'_>,
    dep: &DeploymentRow,
    phase: u32,
    starting: bool,
) -> ServiceResult<Standing> {
    let rollout = of(dep)?;
    let controls = rollout
        .as_ref()
        .is_some_and(|(plan, _)| rules::controls_install(plan));
    if !starting && !controls {
        return Ok(Standing {
            start: None,
            install: None,
        });
    }
    let halted = halted(ctx).await?.is_some();
    let Some((plan, state)) = rollout else {
        return Ok(Standing {
            start: Some(rules::may_start(None, None, phase, halted, Load::default())),
            install: None,
        });
    };
    let start = if starting {
        Some(rules::may_start(
            Some(&plan),
            Some(&state),
            phase,
            halted,
            load(ctx, dep, &plan).await?,
        ))
    } else {
        None
    };
    let install = controls.then(|| super::scheduling::Install {
        policy: plan.options.install,
        hold: rules::install_hold(&plan, &state, halted, ctx.now()),
    });
    Ok(Standing { start, install })
}

/// How busy `dep` is now, as far as its pacing options look.
async fn load(ctx: Ctx<'_>, dep: &DeploymentRow, plan: &Plan) -> ServiceResult<Load> {
    let o = &plan.options;
    if o.max_installing.is_none() && o.max_per_minute.is_none() {
        return Ok(Load::default());
    }
    let (phases, installing) = counts(ctx, &dep.id, plan.phases.len()).await?;
    let started_last_minute = if o.max_per_minute.is_some() {
        ctx.store
            .started_since(&dep.id, ctx.now() - MINUTE_US)
            .await?
    } else {
        0
    };
    Ok(Load {
        installing,
        started_last_minute,
        successes: phases.iter().map(|c| c.success).sum(),
    })
}

/// Deals `devices` into the plan's phases (the phase of each, in the order given), or says
/// why it cannot (a canary not among them, a phase left empty).
pub async fn deal(ctx: Ctx<'_>, plan: &Plan, devices: &[String]) -> ServiceResult<Vec<u32>> {
    let attribute = plan.options.attribute.as_deref();
    let mut candidates = Vec::with_capacity(devices.len());
    for chunk in devices.chunks(BATCH) {
        for inv in ctx.store.inventories(chunk).await? {
            candidates.push(candidate(&inv, attribute));
        }
    }
    deal_candidates(plan, devices, candidates)
}

/// A device as dealing sees it: its admission time and its value of the `attribute` that
/// spreads the phases (empty without one).
pub fn candidate(inv: &Inventory, attribute: Option<&str>) -> Candidate {
    let value = attribute
        .and_then(|a| {
            inv.attrs
                .iter()
                .find(|x| x.name == a)
                .map(|x| match &x.value {
                    serde_json::Value::String(s) => s.clone(),
                    v => v.to_string(),
                })
        })
        .unwrap_or_default();
    Candidate {
        id: inv.id.clone(),
        created: inv.created_ts,
        value,
    }
}

/// [`deal`] with the devices' candidates already read.
pub fn deal_candidates(
    plan: &Plan,
    devices: &[String],
    candidates: Vec<Candidate>,
) -> ServiceResult<Vec<u32>> {
    if let Some(c) = plan.options.canaries.iter().find(|c| !devices.contains(c)) {
        return Err(ServiceError::Invalid(format!(
            "canary {c:?} is not among the deployment's devices"
        )));
    }
    let n = u64::try_from(candidates.len()).unwrap_or(u64::MAX);
    let sizes = rules::sizes(n, &plan.phases).map_err(ServiceError::Invalid)?;
    let ordered = rules::order(candidates, &plan.options);
    let mut phase_of: HashMap<&str, u32> = HashMap::with_capacity(ordered.len());
    let mut at = ordered.iter();
    for (phase, size) in sizes.iter().enumerate() {
        for id in at
            .by_ref()
            .take(usize::try_from(*size).unwrap_or(usize::MAX))
        {
            phase_of.insert(id, u32::try_from(phase).unwrap_or(u32::MAX));
        }
    }
    Ok(devices
        .iter()
        .map(|d| phase_of.get(d.as_str()).copied().unwrap_or(0))
        .collect())
}

/// The release most of `devices` run now (their inventory's `artifact_name`), other than
/// `target` ([`rules::previous_release`]).
pub async fn previous_release(
    ctx: Ctx<'_>,
    devices: &[String],
    target: &str,
) -> ServiceResult<Option<String>> {
    let mut names = Vec::with_capacity(devices.len());
    for chunk in devices.chunks(BATCH) {
        for inv in ctx.store.inventories(chunk).await? {
            if let Some(serde_json::Value::String(name)) = inv
                .attrs
                .iter()
                .find(|a| a.name == "artifact_name")
                .map(|a| &a.value)
            {
                names.push(name.clone());
            }
        }
    }
    Ok(rules::previous_release(
        names.iter().map(String::as_str),
        target,
    ))
}

/// After the health gate stopped `row`'s rollout: deploys the release its devices ran before
/// to those it updated (and still accepted), and says so, or why not, in the stop's reason
/// (`state`, as just stored). Never fails: the stop stands whatever happens here.
async fn roll_back(ctx: Ctx<'_>, row: &DeploymentRow, plan: &Plan, state: &State) {
    let devices = match updated_devices(ctx, &row.id).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(deployment.id = %row.id, error = %e, "cannot read the devices to roll back");
            Vec::new()
        }
    };
    let outcome = match &plan.previous {
        None => "no roll-back: no earlier release was known when the rollout began".to_owned(),
        Some(_) if devices.is_empty() => "no roll-back: no device was updated".to_owned(),
        Some(previous) => {
            let made = super::deployments::create(
                ctx,
                super::deployments::NewDeployment {
                    name: format!("roll back {}", row.name),
                    artifact_name: previous.clone(),
                    target: super::deployments::Target::Devices(devices.clone()),
                    force: false,
                    retries: 0,
                    max_devices: None,
                    plan: None,
                    expect_plan: None,
                },
            )
            .await;
            match made {
                Ok(id) => format!(
                    "rolling {} updated devices back to {previous} (deployment {id})",
                    devices.len()
                ),
                Err(e) => format!("no roll-back to {previous}: {e}"),
            }
        }
    };
    tracing::warn!(deployment.id = %row.id, %outcome, "health gate roll-back");
    let mut told = state.clone();
    told.paused = state.paused.as_ref().map(|why| format!("{why}; {outcome}"));
    if let Err(e) = swap(ctx, &row.id, &json(state), &told).await {
        tracing::error!(deployment.id = %row.id, error = %e, "cannot record the roll-back in the reason");
    }
}

/// The accepted devices a rollout updated (`success`).
async fn updated_devices(ctx: Ctx<'_>, id: &str) -> ServiceResult<Vec<String>> {
    let (rows, _) = ctx
        .store
        .device_deployments(id, Some("success"), 0, 0)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        if ctx
            .store
            .device(&r.device_id)
            .await?
            .is_some_and(|d| d.status == "accepted")
        {
            out.push(r.device_id);
        }
    }
    Ok(out)
}

/// The updated and the control cohorts of a rollout with a health gate, at `now`. A device
/// counts as offline when its last recorded contact, or the rollout's start when it is later
/// (contacts are written in batches, a new device may not have one yet), is older than the
/// gate's offline time plus the write interval; as rebooted by [`health::rebooted`], an
/// updated device measured from its update's end, the control cohort from the rollout's start.
pub async fn cohorts(
    ctx: Ctx<'_>,
    dep: &DeploymentRow,
    plan: &Plan,
    now: i64,
) -> ServiceResult<Option<(Cohort, Cohort)>> {
    let Some(gate) = plan.options.health else {
        return Ok(None);
    };
    // Contact times are written at most every `CHECK_IN_EVERY_US` (and flushed within a
    // second): a device polling all along may look that much older.
    let slack = crate::cache::CHECK_IN_EVERY_US + 1_000_000;
    let offline_before = now.saturating_sub(
        i64::try_from(gate.offline_after_seconds)
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(1_000_000)
            .saturating_add(slack),
    );
    let (mut updated, mut control) = (Cohort::default(), Cohort::default());
    for row in ctx.store.rollout_health(&dep.id).await? {
        let seen = row
            .check_in_time
            .map_or(dep.created, |t| t.max(dep.created));
        let offline = seen < offline_before;
        let is_updated = row.status == "success";
        let measured_from = if is_updated {
            row.finished.unwrap_or(dep.created)
        } else {
            dep.created
        };
        let rebooted = health::rebooted(is_updated, row.boots, measured_from);
        let cohort = if is_updated {
            &mut updated
        } else {
            &mut control
        };
        cohort.add(row.failing, offline, rebooted);
    }
    Ok(Some((updated, control)))
}

/// How often the health comparison is sampled for its chart (µs).
pub const HEALTH_SAMPLE_US: i64 = 30_000_000;
/// Most samples a chart is given (a day of them).
pub const HEALTH_SAMPLES: u64 = 2880;

/// Keeps the comparison as the latest of this bucket; a failure only loses a point of the
/// chart.
async fn sample_health(ctx: Ctx<'_>, id: &str, now: i64, (updated, control): (Cohort, Cohort)) {
    let sample = crate::store::HealthSample {
        ts: now - now.rem_euclid(HEALTH_SAMPLE_US),
        updated,
        control,
    };
    if let Err(e) = ctx.store.add_health_sample(id, &sample).await {
        tracing::warn!(deployment.id = %id, error = %e, "cannot keep a health sample");
    }
}

/// A rollout's health comparison over time, for its chart; a 422 without a health gate.
pub async fn health_history(ctx: Ctx<'_>, id: &str) -> ServiceResult<RolloutHealth> {
    let row = ctx
        .store
        .deployment(id)
        .await?
        .ok_or_else(|| ServiceError::NotFound("deployment not found".into()))?;
    let Some(gate) = of(&row)?.and_then(|(plan, _)| plan.options.health) else {
        return Err(ServiceError::Rule(
            "the deployment has no health gate".into(),
        ));
    };
    let cohort = |c: Cohort| HealthCohort {
        devices: c.devices,
        failing: c.failing,
        offline: c.offline,
        rebooted: c.rebooted,
        unhealthy: c.unhealthy(),
    };
    let samples = ctx
        .store
        .health_samples(id, HEALTH_SAMPLES)
        .await?
        .into_iter()
        .map(|x| HealthPoint {
            ts: crate::time::rfc3339(x.ts),
            updated: cohort(x.updated),
            control: cohort(x.control),
        })
        .collect();
    Ok(RolloutHealth {
        margin: gate.margin,
        samples,
    })
}

/// Stores `new` in place of `old`, the state's text exactly as read from the row (a state
/// written by an older version may lack fields this one writes); `false` if another replica
/// changed it first. When stored, moves the deployments epoch here (the store's feed row
/// moves it on the other replicas), so no cached answer outlives it.
async fn swap(ctx: Ctx<'_>, id: &str, old: &str, new: &State) -> ServiceResult<bool> {
    let stored = ctx.store.set_rollout_state(id, old, &json(new)).await?;
    if stored {
        ctx.caches.deployments_changed();
    }
    Ok(stored)
}

/// The state's text as `row` holds it.
fn stored_state(row: &DeploymentRow) -> &str {
    row.rollout_state.as_deref().unwrap_or_default()
}

/// A state as stored.
pub fn json(state: &State) -> String {
    serde_json::to_string(state).unwrap_or_default()
}

/// Applies what the rules decide for a rollout now, step by step (a threshold met with no
/// soak advances at once); publishes each change. An advance that webhook gates guard is left
/// to the periodic job ([`tick`]), which asks them: a report never waits on a webhook.
pub async fn evaluate(ctx: Ctx<'_>, id: &str) -> ServiceResult<()> {
    evaluate_asking(ctx, id, false).await
}

async fn evaluate_asking(ctx: Ctx<'_>, id: &str, ask_gates: bool) -> ServiceResult<()> {
    for _ in 0..ATTEMPTS {
        let Some(row) = ctx.store.deployment(id).await? else {
            return Ok(());
        };
        if row.status == "finished" {
            return Ok(());
        }
        let Some((plan, state)) = of(&row)? else {
            return Ok(());
        };
        let (counts, _) = counts(ctx, id, plan.phases.len()).await?;
        let now = ctx.now();
        let health = cohorts(ctx, &row, &plan, now).await?;
        if ask_gates && let Some(cohorts) = health {
            sample_health(ctx, id, now, cohorts).await;
        }
        let health_stopped = rules::health_stop(&plan, &state, health).is_some();
        let Some(mut step) = rules::decide(&plan, &state, &counts, health, now) else {
            return Ok(());
        };
        if step == Step::Advance && !plan.options.gates.is_empty() {
            if !ask_gates || !rules::gate_due(&state, now) {
                return Ok(());
            }
            let open = usize::try_from(state.phase).unwrap_or(usize::MAX);
            let question = GateQuestion {
                deployment_id: row.id.clone(),
                name: row.name.clone(),
                artifact_name: row.artifact_name.clone(),
                phase: state.phase + 2,
                phases: u32::try_from(plan.phases.len()).unwrap_or(u32::MAX),
                open_phases: counts
                    .iter()
                    .take(open.saturating_add(1))
                    .copied()
                    .collect(),
            };
            if let Err(reason) = super::gates::ask(&plan.options.gates, &question).await {
                step = Step::GateHeld(reason);
            }
        }
        let next = rules::apply(&state, &step, now);
        if !swap(ctx, id, stored_state(&row), &next).await? {
            continue; // another replica moved it: decide again from what it stored
        }
        // The replica whose stop was stored (one, by compare-and-set) rolls back.
        if health_stopped
            && matches!(step, Step::Pause(_) | Step::Abort(_))
            && plan.options.health.is_some_and(|h| h.roll_back)
        {
            roll_back(ctx, &row, &plan, &next).await;
        }
        match &step {
            Step::Advance => {
                tracing::info!(deployment.id = %id, phase = next.phase + 1, "rollout advanced");
            }
            Step::Met(_) => {
                tracing::info!(deployment.id = %id, phase = next.phase + 1, "phase met its success threshold; soaking");
            }
            Step::Pause(reason) => {
                tracing::warn!(deployment.id = %id, reason = %reason, "rollout paused");
            }
            Step::GateHeld(reason) => {
                tracing::info!(deployment.id = %id, reason = %reason, "a webhook gate keeps the next phase closed");
                if state.gate_held.as_ref() == Some(reason) {
                    return Ok(()); // asked again, same answer: nothing to tell
                }
                deployment_changed(ctx, id).await;
                return Ok(());
            }
            Step::Abort(reason) => {
                tracing::warn!(deployment.id = %id, reason = %reason, "rollout aborted");
                return super::deployments::abort(ctx, id).await;
            }
        }
        deployment_changed(ctx, id).await;
    }
    Ok(())
}

/// Carries out an operator's command on a rollout.
pub async fn command(ctx: Ctx<'_>, id: &str, cmd: Command) -> ServiceResult<()> {
    let row = ctx
        .store
        .deployment(id)
        .await?
        .ok_or_else(|| ServiceError::NotFound("deployment not found".into()))?;
    if row.status == "finished" {
        return Err(ServiceError::Rule("the deployment has finished".into()));
    }
    let Some((plan, state)) = of(&row)? else {
        return Err(ServiceError::Rule(
            "the deployment has no phases to pause, resume or advance".into(),
        ));
    };
    let (counts, _) = counts(ctx, id, plan.phases.len()).await?;
    let failures = counts.iter().map(|c| c.failure).sum();
    let unhealthy = cohorts(ctx, &row, &plan, ctx.now())
        .await?
        .map_or(0, |(updated, _)| updated.unhealthy());
    let next = rules::command(&plan, &state, &cmd, (failures, unhealthy), ctx.now())
        .map_err(ServiceError::Rule)?;
    if !swap(ctx, id, stored_state(&row), &next).await? {
        return Err(ServiceError::Rule(
            "the rollout changed meanwhile; look again and retry".into(),
        ));
    }
    tracing::info!(deployment.id = %id, command = ?cmd, phase = next.phase + 1, "rollout command");
    deployment_changed(ctx, id).await;
    if !matches!(cmd, Command::Pause(_)) {
        evaluate(ctx, id).await?;
    }
    Ok(())
}

/// Moves a test server's rollout clock forward by `by_us` and applies what that decides at
/// once; the inner `Err` says why the clock did not move (not movable, backwards). Returns
/// how far ahead of the real time it is (µs).
pub async fn move_clock(ctx: Ctx<'_>, by_us: i64) -> ServiceResult<Result<i64, String>> {
    let ahead = match ctx.clock.move_forward(by_us) {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    tracing::warn!(
        ahead_seconds = ahead / 1_000_000,
        "the rollout clock was moved forward"
    );
    // What the clock decides may have changed for every rollout and every held device.
    ctx.caches.deployments_changed();
    tick(ctx).await?;
    Ok(Ok(ahead))
}

/// The periodic job: every active rollout evaluated (start times and soaks end by the clock).
pub async fn tick(ctx: Ctx<'_>) -> ServiceResult<()> {
    for row in ctx.store.active_rollouts().await? {
        if let Err(e) = evaluate_asking(ctx, &row.id, true).await {
            tracing::warn!(deployment.id = %row.id, error = %e, "cannot evaluate a rollout");
        }
    }
    Ok(())
}
