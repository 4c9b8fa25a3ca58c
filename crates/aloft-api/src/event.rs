//! The live events of `GET /api/management/v1/events` (an aloft extension): one JSON object per
//! server-sent event, `{"type": ..., "ts": ..., ...}`. A change to a deployment carries the
//! deployment's new statistics and summary, so that a listener redraws without asking again.

use serde::{Deserialize, Serialize};

use crate::management::DeploymentStatistics;
use crate::status::{DeploymentStatus, DeploymentSummary, DeviceDeploymentStatus, DeviceStatus};

/// A deployment's state after a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentProgress {
    /// Deployment id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its status.
    pub status: DeploymentStatus,
    /// Counters per device status.
    pub statistics: DeploymentStatistics,
    /// Counters per group and the verdict.
    pub summary: DeploymentSummary,
    /// Its phases, when it is phased.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<crate::management::PhaseInfo>,
    /// Where its rollout stands, when it is phased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::management::RolloutInfo>,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A device's admission status changed (or it was decommissioned).
    Device {
        /// Device id.
        id: String,
        /// Its new status.
        status: DeviceStatus,
    },
    /// A device's part in a deployment changed, reported by it or decided by the server.
    DeviceDeployment {
        /// Deployment id.
        deployment_id: String,
        /// Device id.
        device_id: String,
        /// The device's new status.
        status: DeviceDeploymentStatus,
        /// Its last substate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        substate: Option<String>,
        /// The deployment as it is now.
        deployment: DeploymentProgress,
    },
    /// A deployment was created, aborted or changed as a whole.
    Deployment(DeploymentProgress),
}

impl Event {
    /// The deployment this event is about, with its new state.
    pub fn deployment(&self) -> Option<&DeploymentProgress> {
        match self {
            Self::Device { .. } => None,
            Self::DeviceDeployment { deployment, .. } | Self::Deployment(deployment) => {
                Some(deployment)
            }
        }
    }
}

/// An event as sent: the change and when it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Envelope {
    /// RFC 3339.
    pub ts: String,
    /// The change.
    #[serde(flatten)]
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn events_keep_their_wire_names() {
        let progress = DeploymentProgress {
            id: "d1".into(),
            name: "rollout".into(),
            status: DeploymentStatus::Finished,
            statistics: DeploymentStatistics {
                status: BTreeMap::from([("success".into(), 4), ("failure".into(), 1)]),
                total_size: 10,
            },
            summary: DeploymentSummary::of(
                DeploymentStatus::Finished,
                &BTreeMap::from([("success".into(), 4), ("failure".into(), 1)]),
            ),
            phases: Vec::new(),
            rollout: None,
        };
        let e = Envelope {
            ts: "2026-01-01T00:00:00Z".into(),
            event: Event::DeviceDeployment {
                deployment_id: "d1".into(),
                device_id: "x".into(),
                status: DeviceDeploymentStatus::AlreadyInstalled,
                substate: None,
                deployment: progress.clone(),
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "device_deployment");
        assert_eq!(v["status"], "already-installed");
        assert_eq!(v["deployment"]["status"], "finished");
        assert_eq!(v["deployment"]["summary"]["outcome"], "failed");
        assert_eq!(v["deployment"]["summary"]["failure"], 1);
        assert_eq!(serde_json::from_value::<Envelope>(v).unwrap(), e);

        let d = serde_json::to_value(Event::Deployment(progress)).unwrap();
        assert_eq!(d["type"], "deployment");
        assert_eq!(d["id"], "d1");
        let dev = serde_json::json!({"type": "device", "id": "x", "status": "accepted", "ts": "t"});
        let back: Envelope = serde_json::from_value(dev).unwrap();
        assert!(back.event.deployment().is_none());
        assert!(serde_json::from_str::<Envelope>(r#"{"type":"bogus","ts":"t"}"#).is_err());
    }
}
