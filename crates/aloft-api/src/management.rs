//! The management API (`/api/management/...`): the objects of Mender's core subset.
//!
//! Request bodies ignore unknown fields on purpose: Mender's tools send fields an open-source
//! server does not implement (`retries`, `token2fa`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    pub status: String,
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
    pub status: String,
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
    /// Accepted and ignored (a paid Mender feature).
    #[serde(default)]
    pub retries: Option<u32>,
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
    /// Accepted and ignored.
    #[serde(default)]
    pub retries: Option<u32>,
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
    pub status: String,
    /// `software`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Devices that have checked in for it.
    pub device_count: u64,
    /// Devices targeted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_devices: Option<u64>,
    /// Static groups targeted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Artifact ids handed out so far.
    pub artifacts: Vec<String>,
    /// Whether installs are forced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_installation: bool,
    /// Counters per device status.
    pub statistics: DeploymentStatistics,
}

/// The `statistics` of a deployment object.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    pub status: String,
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
