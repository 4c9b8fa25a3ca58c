//! Every status of the management and device APIs, typed, in Mender's spelling on the wire, and
//! the one grouping of device-deployment statuses that the server, the web UI and `aloftctl`
//! all show ([`Group`], summed up per deployment by [`DeploymentSummary::of`]).
//!
//! The string constants stay for code that stores statuses as text (the `SQLite` store): they
//! are the same strings the enums serialise to.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The device has not reported yet.
pub const PENDING: &str = DeviceDeploymentStatus::Pending.as_str();
/// Downloading the artifact.
pub const DOWNLOADING: &str = DeviceDeploymentStatus::Downloading.as_str();
/// Waiting (update control map) before install.
pub const PAUSE_BEFORE_INSTALLING: &str = DeviceDeploymentStatus::PauseBeforeInstalling.as_str();
/// Installing.
pub const INSTALLING: &str = DeviceDeploymentStatus::Installing.as_str();
/// Waiting before the reboot.
pub const PAUSE_BEFORE_REBOOTING: &str = DeviceDeploymentStatus::PauseBeforeRebooting.as_str();
/// Rebooting into the new software.
pub const REBOOTING: &str = DeviceDeploymentStatus::Rebooting.as_str();
/// Waiting before the commit.
pub const PAUSE_BEFORE_COMMITTING: &str = DeviceDeploymentStatus::PauseBeforeCommitting.as_str();
/// Final: installed and committed.
pub const SUCCESS: &str = DeviceDeploymentStatus::Success.as_str();
/// Final: failed (and rolled back where possible).
pub const FAILURE: &str = DeviceDeploymentStatus::Failure.as_str();
/// Final: the device already ran the artifact.
pub const ALREADY_INSTALLED: &str = DeviceDeploymentStatus::AlreadyInstalled.as_str();
/// Final: no compatible artifact for the device.
pub const NOARTIFACT: &str = DeviceDeploymentStatus::Noartifact.as_str();
/// Final: the deployment was aborted.
pub const ABORTED: &str = DeviceDeploymentStatus::Aborted.as_str();
/// Final: the device was decommissioned.
pub const DECOMMISSIONED: &str = DeviceDeploymentStatus::Decommissioned.as_str();

/// The statuses a device may report.
pub const REPORTABLE: [&str; 9] = [
    DOWNLOADING,
    PAUSE_BEFORE_INSTALLING,
    INSTALLING,
    PAUSE_BEFORE_REBOOTING,
    REBOOTING,
    PAUSE_BEFORE_COMMITTING,
    SUCCESS,
    FAILURE,
    ALREADY_INSTALLED,
];

/// All 13 statistics keys, in Mender's order.
pub const ALL: [&str; 13] = [
    SUCCESS,
    PENDING,
    DOWNLOADING,
    REBOOTING,
    INSTALLING,
    FAILURE,
    NOARTIFACT,
    ALREADY_INSTALLED,
    ABORTED,
    DECOMMISSIONED,
    PAUSE_BEFORE_INSTALLING,
    PAUSE_BEFORE_COMMITTING,
    PAUSE_BEFORE_REBOOTING,
];

/// Whether `s` ends a device deployment (unknown text does not).
pub fn is_final(s: &str) -> bool {
    s.parse::<DeviceDeploymentStatus>()
        .is_ok_and(DeviceDeploymentStatus::is_final)
}

/// A status text that is not one of the enum's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStatus {
    /// Which kind of status was parsed.
    pub kind: &'static str,
    /// The text given.
    pub given: String,
}

impl fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}", self.kind, self.given)
    }
}

impl std::error::Error for UnknownStatus {}

/// Defines a status enum whose variants serialise to the given strings, with `as_str`,
/// `FromStr`, `Display` and `ALL`.
macro_rules! status_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The wire text.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, UnknownStatus> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownStatus { kind: $kind, given: s.to_owned() })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_enum! {
    /// One device's status in a deployment.
    DeviceDeploymentStatus, "device deployment status" {
        /// Not picked up yet.
        Pending = "pending",
        /// Downloading.
        Downloading = "downloading",
        /// Paused before installing.
        PauseBeforeInstalling = "pause_before_installing",
        /// Installing.
        Installing = "installing",
        /// Paused before rebooting.
        PauseBeforeRebooting = "pause_before_rebooting",
        /// Rebooting.
        Rebooting = "rebooting",
        /// Paused before committing.
        PauseBeforeCommitting = "pause_before_committing",
        /// Installed and committed.
        Success = "success",
        /// Failed on the device.
        Failure = "failure",
        /// The device already ran the release.
        AlreadyInstalled = "already-installed",
        /// No artifact of the release fits the device.
        Noartifact = "noartifact",
        /// Aborted by an operator.
        Aborted = "aborted",
        /// The device was decommissioned.
        Decommissioned = "decommissioned",
    }
}

status_enum! {
    /// A deployment's status.
    DeploymentStatus, "deployment status" {
        /// No device has picked it up yet.
        Pending = "pending",
        /// Some device is working on it.
        InProgress = "inprogress",
        /// Every device has ended (or it was aborted).
        Finished = "finished",
    }
}

status_enum! {
    /// The status of one identity + key pair.
    AuthSetStatus, "auth set status" {
        /// Waiting for an operator.
        Pending = "pending",
        /// May authenticate.
        Accepted = "accepted",
        /// Refused.
        Rejected = "rejected",
        /// Accepted in advance, before the device asked.
        Preauthorized = "preauthorized",
    }
}

status_enum! {
    /// A device's admission status (derived from its auth sets).
    DeviceStatus, "device status" {
        /// Waiting for an operator.
        Pending = "pending",
        /// Admitted.
        Accepted = "accepted",
        /// Refused.
        Rejected = "rejected",
        /// Accepted in advance.
        Preauthorized = "preauthorized",
        /// No auth set left.
        Noauth = "noauth",
        /// Removed with all its data (only in live events).
        Decommissioned = "decommissioned",
    }
}

/// The one grouping of device-deployment statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// Not started.
    Pending,
    /// Downloading, installing, rebooting or paused.
    InProgress,
    /// Ended running the release: `success`, `already-installed`.
    Success,
    /// The update failed on the device: `failure`.
    Failure,
    /// Ended without the release and without a failed install: `noartifact`, `aborted`,
    /// `decommissioned`.
    Skipped,
}

impl Group {
    /// Whether the device is done with the deployment.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Success | Self::Failure | Self::Skipped)
    }
}

impl DeviceDeploymentStatus {
    /// Its group.
    pub fn group(self) -> Group {
        match self {
            Self::Pending => Group::Pending,
            Self::Downloading
            | Self::PauseBeforeInstalling
            | Self::Installing
            | Self::PauseBeforeRebooting
            | Self::Rebooting
            | Self::PauseBeforeCommitting => Group::InProgress,
            Self::Success | Self::AlreadyInstalled => Group::Success,
            Self::Failure => Group::Failure,
            Self::Noartifact | Self::Aborted | Self::Decommissioned => Group::Skipped,
        }
    }

    /// Whether it ends the device's part in the deployment.
    pub fn is_final(self) -> bool {
        self.group().is_final()
    }

    /// Whether a device may report it (the others are decided by the server).
    pub fn is_reportable(self) -> bool {
        REPORTABLE.contains(&self.as_str())
    }
}

impl DeploymentStatus {
    /// Whether the deployment has ended.
    pub fn is_final(self) -> bool {
        self == Self::Finished
    }
}

/// How a deployment went, as one word for a badge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No device has started.
    Pending,
    /// Running.
    InProgress,
    /// Finished, every device in the success group.
    Succeeded,
    /// Finished, at least one device failed.
    Failed,
    /// Finished by an abort, no device failed.
    Aborted,
    /// Finished, no failure, but some devices were skipped (no artifact, decommissioned).
    Incomplete,
}

/// Device counts per [`Group`], of a deployment's phase, say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Counts {
    /// Not started.
    pub pending: u64,
    /// Working on it.
    pub in_progress: u64,
    /// Ended running the release.
    pub success: u64,
    /// Failed.
    pub failure: u64,
    /// Ended without it otherwise.
    pub skipped: u64,
    /// All devices counted.
    pub total: u64,
}

impl Counts {
    /// Sums per-status counters (unknown keys are ignored).
    pub fn of(by_status: &BTreeMap<String, u64>) -> Self {
        let mut c = Self::default();
        for (k, &n) in by_status {
            let Ok(dd) = k.parse::<DeviceDeploymentStatus>() else {
                continue;
            };
            c.add(dd.group(), n);
        }
        c
    }

    /// Counts `n` more devices in `group`.
    pub fn add(&mut self, group: Group, n: u64) {
        *match group {
            Group::Pending => &mut self.pending,
            Group::InProgress => &mut self.in_progress,
            Group::Success => &mut self.success,
            Group::Failure => &mut self.failure,
            Group::Skipped => &mut self.skipped,
        } += n;
        self.total += n;
    }
}

/// A deployment's device counts per [`Group`] and its [`Outcome`], served beside the
/// statistics so that no client re-derives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentSummary {
    /// Its devices per group.
    #[serde(flatten)]
    pub counts: Counts,
    /// The verdict.
    pub outcome: Outcome,
}

impl DeploymentSummary {
    /// Sums the per-status counters (Mender's `statistics.status`; unknown keys are ignored).
    pub fn of(status: DeploymentStatus, by_status: &BTreeMap<String, u64>) -> Self {
        let c = Counts::of(by_status);
        let aborted = by_status
            .get(DeviceDeploymentStatus::Aborted.as_str())
            .copied()
            .unwrap_or(0);
        let outcome = match status {
            DeploymentStatus::Pending => Outcome::Pending,
            DeploymentStatus::InProgress => Outcome::InProgress,
            DeploymentStatus::Finished if c.failure > 0 => Outcome::Failed,
            DeploymentStatus::Finished if aborted > 0 => Outcome::Aborted,
            DeploymentStatus::Finished if c.skipped > 0 => Outcome::Incomplete,
            DeploymentStatus::Finished => Outcome::Succeeded,
        };
        Self { counts: c, outcome }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_device_deployment_status_has_one_group() {
        use DeviceDeploymentStatus as S;
        let table = [
            (S::Pending, "pending", Group::Pending, false, false),
            (
                S::Downloading,
                "downloading",
                Group::InProgress,
                false,
                true,
            ),
            (
                S::PauseBeforeInstalling,
                "pause_before_installing",
                Group::InProgress,
                false,
                true,
            ),
            (S::Installing, "installing", Group::InProgress, false, true),
            (
                S::PauseBeforeRebooting,
                "pause_before_rebooting",
                Group::InProgress,
                false,
                true,
            ),
            (S::Rebooting, "rebooting", Group::InProgress, false, true),
            (
                S::PauseBeforeCommitting,
                "pause_before_committing",
                Group::InProgress,
                false,
                true,
            ),
            (S::Success, "success", Group::Success, true, true),
            (S::Failure, "failure", Group::Failure, true, true),
            (
                S::AlreadyInstalled,
                "already-installed",
                Group::Success,
                true,
                true,
            ),
            (S::Noartifact, "noartifact", Group::Skipped, true, false),
            (S::Aborted, "aborted", Group::Skipped, true, false),
            (
                S::Decommissioned,
                "decommissioned",
                Group::Skipped,
                true,
                false,
            ),
        ];
        assert_eq!(table.len(), S::ALL.len());
        assert_eq!(ALL.len(), S::ALL.len());
        for (s, text, group, fin, reportable) in table {
            assert_eq!(s.as_str(), text);
            assert_eq!(text.parse::<S>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{text}\""));
            assert_eq!(
                serde_json::from_str::<S>(&format!("\"{text}\"")).unwrap(),
                s
            );
            assert_eq!(s.group(), group, "{text}");
            assert_eq!(s.is_final(), fin, "{text}");
            assert_eq!(is_final(text), fin, "{text}");
            assert_eq!(s.is_reportable(), reportable, "{text}");
            assert!(ALL.contains(&text));
        }
        assert!(!is_final("Success"));
        let e = "finished".parse::<S>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown device deployment status \"finished\""
        );
        assert!(serde_json::from_str::<S>("\"bogus\"").is_err());
    }

    #[test]
    fn other_statuses_round_trip() {
        for s in DeploymentStatus::ALL {
            assert_eq!(s.as_str().parse::<DeploymentStatus>(), Ok(*s));
        }
        assert!(DeploymentStatus::Finished.is_final());
        assert!(!DeploymentStatus::InProgress.is_final());
        assert_eq!(DeploymentStatus::InProgress.as_str(), "inprogress");
        for s in AuthSetStatus::ALL {
            assert_eq!(s.as_str().parse::<AuthSetStatus>(), Ok(*s));
        }
        assert!("noauth".parse::<AuthSetStatus>().is_err());
        for s in DeviceStatus::ALL {
            assert_eq!(s.as_str().parse::<DeviceStatus>(), Ok(*s));
        }
        assert_eq!("noauth".parse::<DeviceStatus>(), Ok(DeviceStatus::Noauth));
    }

    #[test]
    fn summary_counts_groups_and_decides_the_outcome() {
        type Row<'a> = (DeploymentStatus, &'a [(&'a str, u64)], [u64; 5], Outcome);
        use DeploymentStatus::{Finished, InProgress, Pending};
        let stats = |pairs: &[(&str, u64)]| {
            let mut m: BTreeMap<String, u64> = ALL.iter().map(|k| ((*k).to_owned(), 0)).collect();
            for (k, n) in pairs {
                m.insert((*k).to_owned(), *n);
            }
            m
        };
        // (deployment status, counters, [pending, in progress, success, failure, skipped], outcome)
        let table: [Row<'_>; 8] = [
            (
                Pending,
                &[("pending", 3)],
                [3, 0, 0, 0, 0],
                Outcome::Pending,
            ),
            (
                InProgress,
                &[
                    ("pending", 1),
                    ("downloading", 1),
                    ("pause_before_rebooting", 1),
                ],
                [1, 2, 0, 0, 0],
                Outcome::InProgress,
            ),
            (
                Finished,
                &[("success", 4), ("already-installed", 1)],
                [0, 0, 5, 0, 0],
                Outcome::Succeeded,
            ),
            (
                Finished,
                &[("success", 4), ("failure", 1)],
                [0, 0, 4, 1, 0],
                Outcome::Failed,
            ),
            (
                Finished,
                &[("success", 1), ("aborted", 2), ("failure", 1)],
                [0, 0, 1, 1, 2],
                Outcome::Failed,
            ),
            (
                Finished,
                &[("success", 1), ("aborted", 2)],
                [0, 0, 1, 0, 2],
                Outcome::Aborted,
            ),
            (
                Finished,
                &[("success", 2), ("noartifact", 1), ("decommissioned", 1)],
                [0, 0, 2, 0, 2],
                Outcome::Incomplete,
            ),
            (
                InProgress,
                &[("success", 2), ("bogus", 7)],
                [0, 0, 2, 0, 0],
                Outcome::InProgress,
            ),
        ];
        for (status, pairs, [p, ip, ok, bad, skip], outcome) in table {
            let s = DeploymentSummary::of(status, &stats(pairs));
            let c = s.counts;
            assert_eq!(
                [c.pending, c.in_progress, c.success, c.failure, c.skipped],
                [p, ip, ok, bad, skip],
                "{pairs:?}"
            );
            assert_eq!(c.total, p + ip + ok + bad + skip);
            assert_eq!(s.outcome, outcome, "{pairs:?}");
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(json["success"], ok, "the wire shape stays flat: {json}");
        }
    }
}
