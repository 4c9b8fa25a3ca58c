//! Dry runs: what a proposed deployment would do, device by device, before it exists: the
//! phase each device is dealt into, what it would get or why it is skipped (the rules the
//! poll path applies, [`artifacts::outcome`], on the devices' inventory), the bytes, when each
//! phase can open at the earliest, and a digest that creating the deployment can require.

use std::collections::BTreeMap;

use aloft_api::management::{
    DeploymentPlan, PlanTotals, PlannedDevice, PlannedOutcome, PlannedPhase,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::deployments::{NewDeployment, Targets, targets};
use super::scheduling::update_modules;
use super::{Ctx, ServiceResult, rollouts};
use crate::domain::artifacts;
use crate::domain::rollouts::earliest_starts;
use crate::store::{ArtifactRow, AttrRow, Inventory};
use crate::time::rfc3339_opt;

/// A plan in one line: `N devices: U would update (B bytes), S skipped`.
pub fn summary(plan: &DeploymentPlan) -> String {
    let t = &plan.totals;
    format!(
        "{} devices: {} would update ({} bytes), {} skipped",
        t.devices, t.updates, t.bytes, t.skipped
    )
}

/// A device's provides as the server knows them: its inventory's text attributes.
fn provides_of(attrs: &[AttrRow]) -> BTreeMap<String, String> {
    attrs
        .iter()
        .filter(|a| a.scope == "inventory")
        .filter_map(|a| match &a.value {
            Value::String(s) => Some((a.name.clone(), s.clone())),
            _ => None,
        })
        .collect()
}

/// The plan of `d` now. Each device's inventory is read once, for its outcome and for
/// dealing it into a phase.
pub async fn plan(ctx: Ctx<'_>, d: &NewDeployment) -> ServiceResult<DeploymentPlan> {
    let Targets {
        devices, over_max, ..
    } = targets(ctx, d).await?;
    let attribute = d.plan.as_ref().and_then(|p| p.options.attribute.as_deref());
    let mut candidates = Vec::with_capacity(if d.plan.is_some() { devices.len() } else { 0 });
    let planned = outcomes(ctx, d, &devices, |inv| {
        if d.plan.is_some() {
            candidates.push(rollouts::candidate(inv, attribute));
        }
    })
    .await?;
    let phases = match &d.plan {
        Some(p) => rollouts::deal_candidates(p, &devices, candidates)?,
        None => vec![0; devices.len()],
    };
    Ok(finish(ctx, d, planned, &phases, &over_max))
}

/// The plan for targets already resolved and dealt into phases (`phases[i]` is device `i`'s
/// 0-based phase), and the devices a dynamic deployment leaves out over its `max_devices`:
/// what `create` checks `expect_plan` against, so that the devices it writes are the very
/// ones the digest covers.
pub(super) async fn plan_for(
    ctx: Ctx<'_>,
    d: &NewDeployment,
    devices: &[String],
    phases: &[u32],
    over_max: &[String],
) -> ServiceResult<DeploymentPlan> {
    let planned = outcomes(ctx, d, devices, |_| {}).await?;
    Ok(finish(ctx, d, planned, phases, over_max))
}

/// What each of `devices` would get or why it is skipped (in their order, phase not set
/// yet), from their inventories read in batches; each inventory is also handed to `seen`.
async fn outcomes(
    ctx: Ctx<'_>,
    d: &NewDeployment,
    devices: &[String],
    mut seen: impl FnMut(&Inventory),
) -> ServiceResult<Vec<PlannedDevice>> {
    let mut by_type: BTreeMap<String, Vec<ArtifactRow>> = BTreeMap::new();
    let mut planned = Vec::with_capacity(devices.len());
    for chunk in devices.chunks(rollouts::BATCH) {
        let read = ctx.store.inventories(chunk).await?;
        // In the order of `chunk`, unknown devices left out.
        let mut found = read.iter().peekable();
        for id in chunk {
            let attrs = match found.next_if(|inv| inv.id == *id) {
                Some(inv) => {
                    seen(inv);
                    inv.attrs.as_slice()
                }
                None => &[],
            };
            let provides = provides_of(attrs);
            let device_type = provides.get("device_type").cloned().unwrap_or_default();
            if !by_type.contains_key(&device_type) {
                let found = ctx
                    .store
                    .artifacts_for(&d.artifact_name, &device_type)
                    .await?;
                by_type.insert(device_type.clone(), found);
            }
            let candidates = by_type
                .get(&device_type)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let modules = update_modules(attrs);
            let (outcome, artifact, reason) = match artifacts::outcome(
                &d.artifact_name,
                d.force,
                &device_type,
                candidates,
                &provides,
                &modules,
                0,
            ) {
                artifacts::Outcome::Update(a) => (PlannedOutcome::Update, Some(a), None),
                artifacts::Outcome::AlreadyInstalled => (
                    PlannedOutcome::AlreadyInstalled,
                    None,
                    Some(format!("it runs {} already", d.artifact_name)),
                ),
                artifacts::Outcome::NoArtifact(why) => {
                    (PlannedOutcome::Noartifact, None, Some(why))
                }
            };
            planned.push(PlannedDevice {
                id: id.clone(),
                phase: 0,
                outcome,
                artifact_id: artifact.map(|a| a.id.clone()),
                bytes: artifact.map_or(0, |a| a.size),
                reason,
            });
        }
    }
    Ok(planned)
}

/// The plan from the devices' outcomes and their phases: sorted by phase, with the devices
/// over the maximum, each phase's earliest start, the totals and the digest.
fn finish(
    ctx: Ctx<'_>,
    d: &NewDeployment,
    mut planned: Vec<PlannedDevice>,
    phases: &[u32],
    over_max: &[String],
) -> DeploymentPlan {
    let phase_count = d.plan.as_ref().map_or(1, |p| p.phases.len());
    for (p, phase) in planned.iter_mut().zip(phases) {
        p.phase = phase + 1;
    }
    // Stable: within a phase the devices stay in the order of the targets, sorted by id.
    planned.sort_by_key(|p| p.phase);
    planned.extend(over_max.iter().map(|id| PlannedDevice {
        id: id.clone(),
        phase: 0,
        outcome: PlannedOutcome::OverMax,
        artifact_id: None,
        bytes: 0,
        reason: Some(format!(
            "the deployment takes at most {} devices",
            d.max_devices.unwrap_or_default()
        )),
    }));
    let starts = match &d.plan {
        Some(p) => earliest_starts(p, ctx.now()),
        None => vec![Some(ctx.now())],
    };
    let mut out_phases: Vec<PlannedPhase> = (0..phase_count)
        .map(|i| PlannedPhase {
            id: (i + 1).to_string(),
            device_count: 0,
            updates: 0,
            bytes: 0,
            earliest_start: rfc3339_opt(starts.get(i).copied().flatten()),
        })
        .collect();
    let mut totals = PlanTotals {
        devices: 0,
        updates: 0,
        skipped: 0,
        bytes: 0,
    };
    let mut h = Sha256::new();
    for p in &planned {
        // Phase 0: left out over `max_devices`, in no phase.
        let slot = p
            .phase
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| out_phases.get_mut(i));
        let update = p.outcome == PlannedOutcome::Update;
        if let Some(slot) = slot {
            slot.device_count += 1;
            slot.updates += u64::from(update);
            slot.bytes += p.bytes;
        }
        totals.devices += 1;
        totals.updates += u64::from(update);
        totals.skipped += u64::from(!update);
        totals.bytes += p.bytes;
        h.update(format!(
            "{}\u{0}{}\u{0}{:?}\u{0}{}\u{1}",
            p.id,
            p.phase,
            p.outcome,
            p.artifact_id.as_deref().unwrap_or_default()
        ));
    }
    DeploymentPlan {
        devices: planned,
        phases: out_phases,
        totals,
        digest: hex::encode(h.finalize()),
    }
}
