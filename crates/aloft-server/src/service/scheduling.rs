//! Scheduling and status reports, in terms no device protocol owns: a device asks for its next
//! [`Assignment`] with what it provides, and sends [`Report`]s. Outcomes the server decides
//! itself (`already-installed`, `noartifact`) are published like the ones a device reports.

use std::collections::BTreeMap;

use aloft_api::management::InstallPolicy;
use aloft_api::status::DeviceDeploymentStatus;
use serde_json::Value;

use super::deployments::{deployment_changed, device_changed};
use super::{Ctx, ServiceError, ServiceResult, rollouts};
use crate::domain::artifacts::{self, depends_match};
use crate::domain::rollouts::Hold;
use crate::store::{ArtifactRow, AttrRow, DeploymentRow, DeviceDeploymentRow, StatusOutcome};

/// The longest progress text a report may carry.
pub const MAX_PROGRESS: usize = 4096;

/// What a device is to install next.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// The deployment.
    pub deployment_id: String,
    /// The artifact chosen for the device.
    pub artifact: ArtifactRow,
    /// The device type it was chosen for.
    pub device_type: String,
    /// When the deployment's rollout controls installs and the device asked to know: the
    /// policy and what holds the install now.
    pub install: Option<Install>,
}

/// How and when a device that takes part in install control installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Install {
    /// The rollout's policy.
    pub policy: InstallPolicy,
    /// What holds the install now, if anything.
    pub hold: Option<Hold>,
}

/// Where a device is in an install it has not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Fetching the artifact.
    Downloading,
    /// Waiting before the install.
    PausedBeforeInstall,
    /// Installing.
    Installing,
    /// Waiting before the reboot.
    PausedBeforeReboot,
    /// Rebooting.
    Rebooting,
    /// Waiting before the commit.
    PausedBeforeCommit,
}

/// How a device's install ended, as the device tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Installed and committed.
    Success,
    /// Failed (and rolled back where possible).
    Failure,
    /// The device already ran the release.
    AlreadyInstalled,
}

/// A device's report on one deployment, in no protocol's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Still working.
    Progress {
        /// The phase.
        phase: Phase,
        /// Free progress text (Mender's substate).
        detail: Option<String>,
    },
    /// Done.
    Finished {
        /// How it ended.
        outcome: Outcome,
        /// Free text.
        detail: Option<String>,
    },
}

impl Report {
    /// The report a device-deployment status stands for; `None` for the statuses only the
    /// server decides (`pending`, `noartifact`, `aborted`, `decommissioned`).
    pub fn from_status(status: DeviceDeploymentStatus, detail: Option<String>) -> Option<Self> {
        use DeviceDeploymentStatus as S;
        enum Step {
            Phase(Phase),
            Outcome(Outcome),
        }
        let step = match status {
            S::Downloading => Step::Phase(Phase::Downloading),
            S::PauseBeforeInstalling => Step::Phase(Phase::PausedBeforeInstall),
            S::Installing => Step::Phase(Phase::Installing),
            S::PauseBeforeRebooting => Step::Phase(Phase::PausedBeforeReboot),
            S::Rebooting => Step::Phase(Phase::Rebooting),
            S::PauseBeforeCommitting => Step::Phase(Phase::PausedBeforeCommit),
            S::Success => Step::Outcome(Outcome::Success),
            S::Failure => Step::Outcome(Outcome::Failure),
            S::AlreadyInstalled => Step::Outcome(Outcome::AlreadyInstalled),
            S::Pending | S::Noartifact | S::Aborted | S::Decommissioned => return None,
        };
        Some(match step {
            Step::Phase(phase) => Self::Progress { phase, detail },
            Step::Outcome(outcome) => Self::Finished { outcome, detail },
        })
    }

    /// The device-deployment status it records.
    pub fn status(&self) -> DeviceDeploymentStatus {
        use DeviceDeploymentStatus as S;
        match self {
            Self::Progress { phase, .. } => match phase {
                Phase::Downloading => S::Downloading,
                Phase::PausedBeforeInstall => S::PauseBeforeInstalling,
                Phase::Installing => S::Installing,
                Phase::PausedBeforeReboot => S::PauseBeforeRebooting,
                Phase::Rebooting => S::Rebooting,
                Phase::PausedBeforeCommit => S::PauseBeforeCommitting,
            },
            Self::Finished { outcome, .. } => match outcome {
                Outcome::Success => S::Success,
                Outcome::Failure => S::Failure,
                Outcome::AlreadyInstalled => S::AlreadyInstalled,
            },
        }
    }

    /// Its free text.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::Progress { detail, .. } | Self::Finished { detail, .. } => detail.as_deref(),
        }
    }
}

/// What became of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Stored.
    Recorded,
    /// The deployment was aborted: the device must stop.
    Aborted,
}

/// Decides what the device gets from the deployment ([`artifacts::outcome`]) and, for an
/// artifact, assigns it. `rechoose` asks again for a device that already had one (never
/// `already-installed` then).
#[allow(clippy::too_many_arguments)]
async fn choose_for(
    ctx: Ctx<'_>,
    dd: &DeviceDeploymentRow,
    dep: &DeploymentRow,
    device_id: &str,
    device_type: &str,
    provides: &BTreeMap<String, String>,
    rechoose: bool,
    now: i64,
) -> ServiceResult<Result<ArtifactRow, DeviceDeploymentStatus>> {
    let candidates = ctx
        .store
        .artifacts_for(&dep.artifact_name, device_type)
        .await?;
    // The device's modules matter only when a delta is among them (rare: read them then).
    let modules = if candidates
        .iter()
        .any(|a| artifacts::payload_type(&a.updates) == Some(artifacts::DELTA_TYPE))
    {
        update_modules(&ctx.store.attributes(device_id).await?)
    } else {
        Vec::new()
    };
    let force = dep.force_installation || rechoose;
    Ok(
        match artifacts::outcome(
            &dep.artifact_name,
            force,
            device_type,
            &candidates,
            provides,
            &modules,
            dd.retried,
        ) {
            artifacts::Outcome::Update(a) => {
                ctx.store.assign(&dd.id, Some(&a.id), None, now).await?;
                // The device's status is unchanged, the deployment's may not be (now started).
                deployment_changed(ctx, &dep.id).await;
                Ok(a.clone())
            }
            artifacts::Outcome::AlreadyInstalled => Err(DeviceDeploymentStatus::AlreadyInstalled),
            artifacts::Outcome::NoArtifact(_) => Err(DeviceDeploymentStatus::Noartifact),
        },
    )
}

/// The `update_modules` a device's inventory lists (Mender clients and aloft report it).
pub(crate) fn update_modules(attrs: &[AttrRow]) -> Vec<String> {
    attrs
        .iter()
        .find(|a| a.scope == "inventory" && a.name == "update_modules")
        .map(|a| match &a.value {
            Value::String(s) => vec![s.clone()],
            Value::Array(list) => list
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        })
        .unwrap_or_default()
}

/// Ends a device's part with an outcome the server decided, and says so.
async fn decide(
    ctx: Ctx<'_>,
    dd_id: &str,
    deployment_id: &str,
    device_id: &str,
    outcome: DeviceDeploymentStatus,
    now: i64,
) -> ServiceResult<()> {
    ctx.store
        .assign(dd_id, None, Some(outcome.as_str()), now)
        .await?;
    device_changed(ctx, deployment_id, device_id, outcome, None).await;
    rollouts::evaluate(ctx, deployment_id).await
}

/// The device's next deployment, if any: the oldest unfinished one it belongs to. Records the
/// device's contact on the way. Of a rollout that controls installs (a maintenance window, an
/// install policy), a device that `waits` (the aloft daemon) is handed the update to download
/// and told what holds its install; any other device gets it only once nothing does.
pub async fn next(
    ctx: Ctx<'_>,
    device_id: &str,
    provides: &BTreeMap<String, String>,
    waits: bool,
) -> ServiceResult<Option<Assignment>> {
    let device_type = provides
        .get("device_type")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ServiceError::Invalid("device_type is required".into()))?;
    let now = ctx.now();
    if ctx.caches.check_in_due(device_id, now) {
        ctx.caches.note_check_in(device_id, now);
    }
    if ctx.caches.is_idle(device_id) {
        return Ok(None);
    }
    let epoch = ctx.caches.deployment_epoch();
    let open = ctx.store.open_device_deployments(device_id).await?;
    if open.is_empty() {
        ctx.caches.set_idle(device_id, epoch);
    }
    for dd in open {
        let Some(dep) = ctx.store.deployment(&dd.deployment_id).await? else {
            continue;
        };
        let assigned = match &dd.artifact_id {
            Some(id) => ctx.store.artifact(id).await?,
            None => None,
        };
        let standing = rollouts::standing(ctx, &dep, dd.phase, dd.artifact_id.is_none()).await?;
        let install = standing.install;
        let chosen = match assigned {
            // A delta handed out before that the device's provides no longer allow: it could
            // not apply it, and its daemon asks again without the checksum deltas depend on.
            Some(a)
                if artifacts::payload_type(&a.updates) == Some(artifacts::DELTA_TYPE)
                    && !depends_match(&a.depends, provides) =>
            {
                choose_for(ctx, &dd, &dep, device_id, device_type, provides, true, now).await?
            }
            // Handed out before: the device gets it again (whatever it reports meanwhile).
            Some(a) => Ok(a),
            // Deleted after it was assigned.
            None if dd.artifact_id.is_some() => Err(DeviceDeploymentStatus::Noartifact),
            None => {
                // A device takes its deployments in order: it waits for this one. While only a
                // stored change can end the wait, its polls stay off the store until one does.
                if let Some(Err(wait)) = standing.start {
                    tracing::debug!(device.id = %device_id, deployment.id = %dep.id, ?wait, "deployment held");
                    if wait.lasts_until_a_change() {
                        ctx.caches.set_idle(device_id, epoch);
                    }
                    return Ok(None);
                }
                if let Some(hold) = install.and_then(|i| i.hold).filter(|_| !waits) {
                    tracing::debug!(device.id = %device_id, deployment.id = %dep.id, ?hold, "install held");
                    if hold.lasts_until_a_change() {
                        ctx.caches.set_idle(device_id, epoch);
                    }
                    return Ok(None);
                }
                choose_for(ctx, &dd, &dep, device_id, device_type, provides, false, now).await?
            }
        };
        let artifact = match chosen {
            Ok(a) => a,
            Err(outcome) => {
                decide(ctx, &dd.id, &dep.id, device_id, outcome, now).await?;
                continue;
            }
        };
        tracing::info!(device.id = %device_id, deployment.id = %dep.id, artifact.id = %artifact.id, "deployment handed out");
        return Ok(Some(Assignment {
            deployment_id: dep.id,
            artifact,
            device_type: device_type.clone(),
            install: install.filter(|_| waits),
        }));
    }
    Ok(None)
}

/// Records a device's report and tells listeners.
pub async fn report(
    ctx: Ctx<'_>,
    deployment_id: &str,
    device_id: &str,
    report: Report,
) -> ServiceResult<Ack> {
    let status = report.status();
    if report.detail().is_some_and(|s| s.len() > MAX_PROGRESS) {
        return Err(ServiceError::Invalid(format!(
            "substate longer than {MAX_PROGRESS} characters"
        )));
    }
    let outcome = ctx
        .store
        .report_status(
            deployment_id,
            device_id,
            status.as_str(),
            report.detail(),
            ctx.now(),
        )
        .await?;
    match outcome {
        StatusOutcome::Recorded => {
            tracing::info!(device.id = %device_id, deployment.id = %deployment_id, status = %status, "device status");
            let detail = report.detail().map(str::to_owned);
            device_changed(ctx, deployment_id, device_id, status, detail).await;
            if status.is_final()
                && let Err(e) = rollouts::evaluate(ctx, deployment_id).await
            {
                // The report is stored; the periodic job evaluates the rollout again.
                tracing::warn!(deployment.id = %deployment_id, error = %e, "cannot evaluate a rollout");
            }
            Ok(Ack::Recorded)
        }
        StatusOutcome::Retried => {
            tracing::info!(device.id = %device_id, deployment.id = %deployment_id, "device failed: it starts over (retries)");
            let detail = report.detail().map(str::to_owned);
            device_changed(
                ctx,
                deployment_id,
                device_id,
                DeviceDeploymentStatus::Pending,
                detail,
            )
            .await;
            Ok(Ack::Recorded)
        }
        StatusOutcome::Aborted => Ok(Ack::Aborted),
    }
}

/// Stores the log a device uploaded for a deployment (of a failed install).
pub async fn put_log(
    ctx: Ctx<'_>,
    deployment_id: &str,
    device_id: &str,
    log: &str,
) -> ServiceResult<()> {
    Ok(ctx.store.put_log(deployment_id, device_id, log).await?)
}

#[cfg(test)]
mod tests {
    use super::Report;
    use aloft_api::status::DeviceDeploymentStatus;

    #[test]
    fn reports_are_what_a_device_may_say_and_map_back_to_their_status() {
        for s in DeviceDeploymentStatus::ALL {
            let r = Report::from_status(*s, Some("x".into()));
            assert_eq!(r.is_some(), s.is_reportable(), "{s}");
            if let Some(r) = r {
                assert_eq!(r.status(), *s);
                assert_eq!(r.detail(), Some("x"));
                assert_eq!(matches!(r, Report::Finished { .. }), s.is_final(), "{s}");
            }
        }
    }
}
