//! The management API (`/api/management/...`): the objects of Mender's core subset.
//!
//! Request bodies ignore unknown fields on purpose: Mender's tools send fields an open-source
//! server does not implement (`token2fa`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::status::{
    AuthSetStatus, DeploymentStatus, DeploymentSummary, DeviceDeploymentStatus, DeviceStatus,
};

/// The error body of every 4xx/5xx answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// The request id, also in the `X-MEN-RequestID` header.
    pub request_id: String,
}

/// A user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    /// UUID.
    pub id: String,
    /// E-mail, lower case.
    pub email: String,
    /// RFC 3339.
    pub created_ts: String,
    /// RFC 3339.
    pub updated_ts: String,
    /// Last login, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_ts: Option<String>,
}

/// `POST /users` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewUser {
    /// E-mail.
    pub email: String,
    /// Password, at least 8 characters.
    pub password: String,
}

/// `PUT /users/{id}` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserUpdate {
    /// New e-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// New password.
    #[serde(default)]
    pub password: Option<String>,
    /// The current password, required to change one's own password.
    #[serde(default)]
    pub current_password: Option<String>,
}

/// `POST /settings/tokens` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewToken {
    /// A name unique per user.
    pub name: String,
    /// Lifetime in seconds; 0 or missing: never expires.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// A personal access token's metadata (never its value).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    /// Token id (its `jti`).
    pub id: String,
    /// Name.
    pub name: String,
    /// RFC 3339.
    pub created_ts: String,
    /// RFC 3339; absent when it never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<String>,
}

/// A device as device authentication sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Device {
    /// UUID.
    pub id: String,
    /// Identity attributes.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub identity_data: Value,
    /// `accepted`, `preauthorized`, `pending`, `rejected` or `noauth`.
    pub status: DeviceStatus,
    /// Always false: decommissioning is immediate.
    pub decommissioning: bool,
    /// RFC 3339.
    pub created_ts: String,
    /// RFC 3339.
    pub updated_ts: String,
    /// Last contact of an accepted device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_in_time: Option<String>,
    /// The key/identity pairs the device presented.
    pub auth_sets: Vec<AuthSet>,
}

/// One identity + key pair of a device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthSet {
    /// UUID.
    pub id: String,
    /// Identity attributes.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub identity_data: Value,
    /// PEM public key.
    pub pubkey: String,
    /// `pending`, `accepted`, `rejected` or `preauthorized`.
    pub status: AuthSetStatus,
    /// RFC 3339.
    pub ts: String,
}

/// `POST /devauth/devices` (preauthorize) body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreauthRequest {
    /// Identity attributes.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub identity_data: Value,
    /// PEM public key.
    pub pubkey: String,
    /// Add the set to an existing device instead of answering 409.
    #[serde(default)]
    pub force: bool,
}

/// `{"status": ...}`: auth set status changes and abort requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusBody {
    /// The status.
    pub status: String,
}

/// A device's inventory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceInventory {
    /// Device UUID.
    pub id: String,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_ts: Option<String>,
    /// All attributes over every scope.
    pub attributes: Vec<Attribute>,
}

/// One inventory attribute with its scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attribute {
    /// Name.
    pub name: String,
    /// A string, a number, or a list of either.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub value: Value,
    /// `inventory`, `identity`, `system` or `tags`.
    pub scope: String,
    /// Description (tags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When a tag was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// A tag as operators set it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tag {
    /// Name.
    pub name: String,
    /// Value: a string.
    pub value: String,
    /// Optional description.
    #[serde(default)]
    pub description: Option<String>,
}

/// `{"group": ...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupBody {
    /// Group name, `^[A-Za-z0-9_-]+$`, or null.
    pub group: Option<String>,
}

/// The longest static group name.
pub const GROUP_NAME_MAX: usize = 1024;

/// Whether `name` may name a static group: 1 to [`GROUP_NAME_MAX`] letters, digits, `-` and
/// `_` (Mender's rule). Such a name needs no escaping in a URL path.
#[must_use]
pub fn is_group_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= GROUP_NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One predicate of a saved filter (a dynamic group), as in Mender's inventory v2 search:
/// `scope` is `inventory`, `identity`, `system`, `tags` or `monitor`; `type` one of `$eq`,
/// `$ne`, `$in`, `$nin`, `$exists`, `$gt`, `$gte`, `$lt`, `$lte`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FilterTerm {
    /// Where the attribute lives.
    pub scope: String,
    /// Its name.
    pub attribute: String,
    /// The operator.
    #[serde(rename = "type")]
    pub op: String,
    /// The operand (a list for `$in` and `$nin`, a boolean for `$exists`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub value: serde_json::Value,
}

/// `POST /api/management/v2/inventory/filters` body: a dynamic group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewSavedFilter {
    /// Its name, unique, with the rule of static group names.
    pub name: String,
    /// Its predicates, all of which must hold (1 to 64).
    pub terms: Vec<FilterTerm>,
}

/// A saved filter: a dynamic group (Mender Enterprise's shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SavedFilter {
    /// UUID.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its predicates.
    pub terms: Vec<FilterTerm>,
}

/// `POST /api/management/v2/deployments/deployments` body: a dynamic deployment (Mender
/// Enterprise's shape, with aloft's options): the accepted devices matching the saved filter
/// now, and every device that matches it later while the deployment runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewDynamicDeployment {
    /// Deployment name.
    pub name: String,
    /// The release to deploy.
    pub artifact_name: String,
    /// The saved filter (dynamic group); the deployment keeps a copy of its terms.
    pub filter_id: String,
    /// The most devices the deployment takes (the first that match, in admission order,
    /// then in the order they join); without it, it takes devices until it is aborted.
    #[serde(default)]
    pub max_devices: Option<u64>,
    /// Install even where the device already runs the artifact.
    #[serde(default)]
    pub force_installation: Option<bool>,
    /// As for [`NewDeployment`].
    #[serde(default)]
    pub retries: Option<u32>,
    /// As for [`NewDeployment`].
    #[serde(default)]
    pub phases: Option<Vec<NewPhase>>,
    /// As for [`NewDeployment`].
    #[serde(default)]
    pub rollout: Option<RolloutOptions>,
    /// As for [`NewDeployment`].
    #[serde(default)]
    pub expect_plan: Option<String>,
}

/// An uploaded artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Artifact {
    /// UUID.
    pub id: String,
    /// Artifact name.
    pub name: String,
    /// Free text; left out when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Device types from `artifact_depends.device_type`.
    pub device_types_compatible: Vec<String>,
    /// `{"format": "mender", "version": 3}`.
    pub info: ArtifactFormat,
    /// Whether the artifact carries a signature.
    pub signed: bool,
    /// Its payloads.
    pub updates: Vec<Update>,
    /// What the artifact provides once installed.
    pub artifact_provides: BTreeMap<String, String>,
    /// What it requires of the device.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub artifact_depends: BTreeMap<String, Value>,
    /// Provides cleared on install.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clears_artifact_provides: Vec<String>,
    /// Size of the `.mender` file.
    pub size: u64,
    /// RFC 3339 upload time.
    pub modified: String,
}

/// Artifact format and version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactFormat {
    /// Always `mender`.
    pub format: String,
    /// 2 or 3.
    pub version: u32,
}

/// One payload of an artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Update {
    /// `{"type": ...}`.
    pub type_info: TypeInfo,
    /// Payload meta-data (an object).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub meta_data: Value,
    /// The payload files.
    pub files: Vec<UpdateFile>,
}

/// A payload type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TypeInfo {
    /// E.g. `rootfs-image`; null for an empty payload.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// A payload file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateFile {
    /// File name.
    pub name: String,
    /// SHA-256, hex.
    pub checksum: String,
    /// Bytes.
    pub size: u64,
    /// RFC 3339.
    pub date: String,
}

/// `{"uri", "expire"}`: an artifact download link.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DownloadLink {
    /// Pre-signed URL.
    pub uri: String,
    /// RFC 3339 expiry.
    pub expire: String,
}

/// `PUT /artifacts/{id}` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactUpdate {
    /// New description.
    #[serde(default)]
    pub description: String,
}

/// `POST /deployments/deployments` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewDeployment {
    /// Deployment name.
    pub name: String,
    /// The release to deploy.
    pub artifact_name: String,
    /// Explicit device ids.
    #[serde(default)]
    pub devices: Option<Vec<String>>,
    /// Every accepted device.
    #[serde(default)]
    pub all_devices: Option<bool>,
    /// Install even where the device already runs the artifact.
    #[serde(default)]
    pub force_installation: Option<bool>,
    /// How many times a device whose install fails starts over (Mender Enterprise's field;
    /// 0 to 100, default 0). Its failure is kept as its substate and log meanwhile.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Phases (Mender Enterprise's shape): the devices are split into them in order, and a
    /// phase's devices get the update only once it opens.
    #[serde(default)]
    pub phases: Option<Vec<NewPhase>>,
    /// How a phased deployment orders its devices and moves on (an aloft extension).
    #[serde(default)]
    pub rollout: Option<RolloutOptions>,
    /// The `digest` of a plan made before (an aloft extension): creating is refused (409,
    /// with the difference) when the fleet changed since and the plan no longer holds.
    #[serde(default)]
    pub expect_plan: Option<String>,
}

/// One phase of a new deployment: a share of its devices (`batch_size` percent, or
/// `devices`; neither on the last phase: the rest) and the earliest time it may open.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewPhase {
    /// Percent of the deployment's devices (1 to 100).
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// A number of devices (an aloft extension; not with `batch_size`).
    #[serde(default)]
    pub devices: Option<u64>,
    /// RFC 3339: the phase opens no earlier.
    #[serde(default)]
    pub start_ts: Option<String>,
}

/// The order devices are dealt into phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PhaseOrder {
    /// Oldest device first (admission order), then by id.
    #[default]
    Creation,
    /// A random order that the `seed` fixes.
    Random,
    /// Each value of an inventory `attribute` (a site, an uplink) spread evenly over the
    /// phases.
    Spread,
}

/// What opens the next phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AdvanceMode {
    /// Its `start_ts` (Mender Enterprise's phases).
    #[default]
    Time,
    /// The open phase meeting its success threshold for the soak time (and the next
    /// phase's `start_ts`, when it has one).
    Auto,
    /// Only an operator.
    Manual,
}

/// What a failure threshold crossed does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FailureAction {
    /// Pause the rollout (an operator resumes or aborts it).
    #[default]
    Pause,
    /// Abort the deployment.
    Abort,
}

/// How a phased deployment orders its devices and moves on. Thresholds are percentages of
/// a phase's devices that the update applies to (all but `noartifact`, `aborted` and
/// `decommissioned`): the success threshold is met at or above it, the failure threshold is
/// crossed strictly above it (ARCHITECTURE.md, "Rollouts").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RolloutOptions {
    /// The order of devices into phases.
    #[serde(default)]
    pub order: PhaseOrder,
    /// The seed of the `random` order.
    #[serde(default)]
    pub seed: Option<u64>,
    /// The inventory attribute the `spread` order spreads.
    #[serde(default)]
    pub attribute: Option<String>,
    /// Device ids dealt first, in this order (the canaries).
    #[serde(default)]
    pub canaries: Vec<String>,
    /// What opens the next phase.
    #[serde(default)]
    pub advance: AdvanceMode,
    /// Percent of a phase's devices that must succeed for `auto` to advance (default 100).
    #[serde(default)]
    pub success_threshold: Option<u32>,
    /// Seconds the success threshold must have held before `auto` advances (default 0).
    #[serde(default)]
    pub soak_seconds: Option<u64>,
    /// Percent of an open phase's devices whose failure stops the rollout (none: failures
    /// never stop it).
    #[serde(default)]
    pub failure_threshold: Option<u32>,
    /// What crossing the failure threshold does.
    #[serde(default)]
    pub on_failure: FailureAction,
    /// At most this many devices installing at once (handed out, not yet finished).
    #[serde(default)]
    pub max_installing: Option<u64>,
    /// At most this many devices start per minute (handed the update in the last 60 s).
    #[serde(default)]
    pub max_per_minute: Option<u64>,
    /// The per-minute limit doubles with every this many successes (none: it stays).
    #[serde(default)]
    pub rate_doubling: Option<u64>,
    /// The health gate: pause when the updated devices are unhealthier than the rest.
    #[serde(default)]
    pub health: Option<HealthGate>,
    /// When devices may install: outside the window they may download, not install.
    #[serde(default)]
    pub window: Option<MaintenanceWindow>,
    /// How devices install: at once, after the device's consent, or when released.
    #[serde(default)]
    pub install: InstallPolicy,
    /// Webhooks asked before a phase advances by itself (`time` or `auto`): each must answer
    /// 2xx, beside the built-in gates. An operator's advance does not ask them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<WebhookGate>,
}

/// A webhook a rollout asks before a phase advances by itself: the server POSTs the rollout's
/// standing as JSON ([`GateQuestion`]) and advances only on a 2xx answer; any other answer,
/// or none within the timeout, keeps the phase closed and is asked again later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WebhookGate {
    /// An `https://` (or `http://`) URL. The API shows it without credentials, query or
    /// fragment.
    pub url: String,
    /// Seconds to wait for the answer (1 to 30, default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// What a webhook gate is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GateQuestion {
    /// The deployment.
    pub deployment_id: String,
    /// Its name.
    pub name: String,
    /// Its artifact.
    pub artifact_name: String,
    /// The phase that would open, from 1.
    pub phase: u32,
    /// How many phases it has.
    pub phases: u32,
    /// The open phases' devices per status group, phase by phase.
    pub open_phases: Vec<crate::status::Counts>,
}

/// A recurring maintenance window: it opens at each time the cron expression names, in its
/// time zone, and stays open for its duration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// Five fields (minute, hour, day of month, month, day of week), e.g. `0 22 * * MON-FRI`.
    pub cron: String,
    /// How long each opening lasts, from 60 seconds to 7 days.
    pub duration_seconds: u64,
    /// An IANA time zone such as `Europe/Oslo` (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// How a rollout's devices install what they downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum InstallPolicy {
    /// As soon as it may (inside the window, when there is one).
    #[default]
    Forced,
    /// The aloft daemon asks its consent hook before the install and before the reboot, which
    /// may answer "later"; stock Mender clients install as under `forced`.
    Soft,
    /// Download and verify now; install once an operator releases the rollout (or, with a
    /// window, once the window opens).
    DownloadOnly,
}

impl InstallPolicy {
    /// The name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forced => "forced",
            Self::Soft => "soft",
            Self::DownloadOnly => "download-only",
        }
    }
}

/// A rollout's health gate: the devices it updated (`success`) compared with its devices not
/// yet updated (`pending`); a device is unhealthy when its health probe fails (the aloft
/// daemon's `aloft.health`) or it did not check in for `offline_after_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HealthGate {
    /// Percentage points by which the updated devices' unhealthy share may exceed the rest's.
    pub margin: u32,
    /// Seconds without a check-in after which a device counts as offline.
    pub offline_after_seconds: u64,
    /// When the gate stops the rollout, also deploy the release most of its devices ran
    /// before (recorded at creation) to the devices it updated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub roll_back: bool,
}

/// A cohort of a rollout's health comparison at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthCohort {
    /// Devices in it.
    pub devices: u64,
    /// Of which fail their health probe.
    pub failing: u64,
    /// Of which did not check in for the gate's offline time.
    pub offline: u64,
    /// Of which rebooted while measured (after their update; the control cohort: after the
    /// rollout started).
    #[serde(default)]
    pub rebooted: u64,
    /// Unhealthy for any of those reasons, each device once: what the gate compares.
    #[serde(default)]
    pub unhealthy: u64,
}

/// The health gate's comparison at one time (sampled every 30 s while the rollout runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthPoint {
    /// RFC 3339.
    pub ts: String,
    /// The devices the rollout updated.
    pub updated: HealthCohort,
    /// Its devices not yet updated.
    pub control: HealthCohort,
}

/// `GET .../deployments/{id}/health`: a rollout's health comparison over time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutHealth {
    /// The gate's margin in percentage points.
    pub margin: u32,
    /// Oldest first, at most the last 2880 (a day).
    pub samples: Vec<HealthPoint>,
}

/// One phase of a deployment as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PhaseInfo {
    /// Its number, from 1.
    pub id: String,
    /// Percent of the devices, when it was given so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// RFC 3339: it opens no earlier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ts: Option<String>,
    /// Its devices.
    pub device_count: u64,
    /// Whether it is open (its devices get the update).
    pub open: bool,
    /// Its devices per status group.
    pub summary: crate::status::Counts,
}

/// Where a phased deployment stands (an aloft extension of the deployment object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutInfo {
    /// The last open phase, from 1.
    pub phase: u32,
    /// How many phases it has.
    pub phases: u32,
    /// Why it is paused (an operator's pause or a gate's verdict, with the numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// Whether the fleet-wide halt holds it (and every other deployment).
    pub halted: bool,
    /// RFC 3339: when the last open phase opened.
    pub phase_started: String,
    /// RFC 3339: when the open phase met its success threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_met: Option<String>,
    /// Why devices that downloaded do not install now (the window is closed, the release is
    /// awaited); none: they install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_held: Option<String>,
    /// RFC 3339: when an operator released the installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<String>,
    /// Why a webhook gate keeps the next phase closed (its last answer), while it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_held: Option<String>,
    /// Its options.
    pub options: RolloutOptions,
}

/// What a device would get from a proposed deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum PlannedOutcome {
    /// It downloads and installs `artifact_id`.
    Update,
    /// Skipped: it runs the release already.
    AlreadyInstalled,
    /// Skipped: no artifact of the release fits it (see `reason`).
    Noartifact,
    /// Left out: the deployment's `max_devices` is reached before it (its `phase` is 0).
    OverMax,
}

/// One device of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlannedDevice {
    /// Device id.
    pub id: String,
    /// Its phase, from 1 (0: left out, over `max_devices`).
    pub phase: u32,
    /// What it would get.
    pub outcome: PlannedOutcome,
    /// The artifact, for an update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_id: Option<String>,
    /// Bytes it would fetch.
    pub bytes: u64,
    /// Why it is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One phase of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlannedPhase {
    /// Its number, from 1.
    pub id: String,
    /// Its devices.
    pub device_count: u64,
    /// Of which would update.
    pub updates: u64,
    /// Bytes its devices would fetch.
    pub bytes: u64,
    /// RFC 3339: the earliest it can open (none under manual advance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest_start: Option<String>,
}

/// Totals of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanTotals {
    /// Devices targeted.
    pub devices: u64,
    /// Of which would update.
    pub updates: u64,
    /// Of which are skipped.
    pub skipped: u64,
    /// Bytes to fetch in all.
    pub bytes: u64,
}

/// `POST /deployments/plan`: what a proposed deployment would do, before it exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentPlan {
    /// Every targeted device, in phase order.
    pub devices: Vec<PlannedDevice>,
    /// Per phase (one for a plain deployment).
    pub phases: Vec<PlannedPhase>,
    /// Totals.
    pub totals: PlanTotals,
    /// Give it as `expect_plan` when creating: the server refuses if the plan changed.
    pub digest: String,
}

/// `PUT /deployments/halt` body and `GET` answer: the fleet-wide kill switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Halt {
    /// While true, no device starts an update of any deployment (those under way go on).
    pub halted: bool,
    /// Why (shown with every held deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `PUT /api/management/v1/test/clock` body: move a test server's rollout clock forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClockMove {
    /// Seconds to move forward (at most 400 days at once).
    pub forward_seconds: u64,
}

/// The answer of a clock move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClockNow {
    /// RFC 3339: the rollout clock now.
    pub now: String,
    /// Seconds it is ahead of the real time.
    pub ahead_seconds: i64,
}

/// `POST /deployments/{id}/pause` body (optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PauseBody {
    /// Why (shown with the deployment).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /deployments/deployments/group/{name}` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewGroupDeployment {
    /// Deployment name.
    pub name: String,
    /// The release to deploy.
    pub artifact_name: String,
    /// Install even where the device already runs the artifact.
    #[serde(default)]
    pub force_installation: Option<bool>,
    /// Refused here: the group names the devices.
    #[serde(default)]
    pub devices: Option<Vec<String>>,
    /// Refused here: the group names the devices.
    #[serde(default)]
    pub all_devices: Option<bool>,
    /// As for [`NewDeployment`].
    #[serde(default)]
    pub retries: Option<u32>,
    /// Phases, as for [`NewDeployment`].
    #[serde(default)]
    pub phases: Option<Vec<NewPhase>>,
    /// As for [`NewDeployment`].
    #[serde(default)]
    pub rollout: Option<RolloutOptions>,
    /// As for [`NewDeployment`].
    #[serde(default)]
    pub expect_plan: Option<String>,
}

/// A deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deployment {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Release deployed.
    pub artifact_name: String,
    /// RFC 3339.
    pub created: String,
    /// RFC 3339, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// `pending`, `inprogress` or `finished`.
    pub status: DeploymentStatus,
    /// Device counts per group and the verdict (an aloft extension; absent from Mender).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<DeploymentSummary>,
    /// `software`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Devices that have checked in for it.
    pub device_count: u64,
    /// Devices targeted; for a dynamic deployment with a cap, the cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_devices: Option<u64>,
    /// The dynamic group it follows (a copy of the saved filter when it was created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<SavedFilter>,
    /// Static groups targeted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Artifact ids handed out so far.
    pub artifacts: Vec<String>,
    /// Whether installs are forced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_installation: bool,
    /// How many times a device that failed starts over (left out when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Counters per device status.
    pub statistics: DeploymentStatistics,
    /// Its phases (Mender Enterprise's field), when it has more than one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseInfo>,
    /// Where its rollout stands, when it is phased (an aloft extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutInfo>,
}

/// The `statistics` of a deployment object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentStatistics {
    /// All 13 counters.
    pub status: BTreeMap<String, u64>,
    /// Bytes of artifacts assigned.
    pub total_size: u64,
}

/// One device's part in a deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceDeployment {
    /// Device id.
    pub id: String,
    /// Device deployment status.
    pub status: DeviceDeploymentStatus,
    /// Last substate reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substate: Option<String>,
    /// RFC 3339.
    pub created: String,
    /// When the device first picked it up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// Whether a log was uploaded.
    pub log: bool,
    /// The artifact assigned to the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Artifact>,
    /// The phase it was dealt into, from 1 (an aloft extension; 1 unless phased).
    #[serde(default = "first_phase")]
    pub phase: u32,
    /// How many times it started over after a failure, under the deployment's `retries` (an
    /// aloft extension; left out when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retried: u32,
}

fn first_phase() -> u32 {
    1
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One entry of a device's deployment history.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceHistoryEntry {
    /// Device deployment id.
    pub id: String,
    /// The deployment.
    pub deployment: Deployment,
    /// The device's part.
    pub device: DeviceDeployment,
}

/// A release: all artifacts of one name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseV1 {
    /// Name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Last upload, RFC 3339.
    #[serde(rename = "Modified")]
    pub modified: String,
    /// Its artifacts.
    #[serde(rename = "Artifacts")]
    pub artifacts: Vec<Artifact>,
    /// How many.
    #[serde(rename = "ArtifactsCount")]
    pub artifacts_count: u64,
    /// Tags.
    pub tags: Vec<String>,
    /// Notes.
    pub notes: String,
}

/// `{"count": N}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Count {
    /// The count.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::{GROUP_NAME_MAX, is_group_name};

    #[test]
    fn group_names_are_letters_digits_dashes_and_underscores() {
        let long = "g".repeat(GROUP_NAME_MAX);
        let too_long = "g".repeat(GROUP_NAME_MAX + 1);
        let table: [(&str, bool); 9] = [
            ("canary", true),
            ("site-7_east", true),
            ("A1", true),
            (&long, true),
            ("", false),
            (&too_long, false),
            ("with space", false),
            ("a/b", false),
            ("café", false),
        ];
        for (name, want) in table {
            assert_eq!(is_group_name(name), want, "{name:?}");
        }
    }
}
