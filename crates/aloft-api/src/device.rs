//! The device API (`/api/devices/...`), as the Mender client 3.4 speaks it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Body of `POST /api/devices/v1/authentication/auth_requests`. The signature in
/// `X-MEN-Signature` covers the raw bytes of this body, never a re-serialisation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthRequest {
    /// The identity: a string that holds a JSON object.
    pub id_data: String,
    /// The device's public key, `SubjectPublicKeyInfo` PEM.
    pub pubkey: String,
    /// Tenant token; empty without multi-tenancy.
    #[serde(default)]
    pub tenant_token: String,
}

/// One inventory attribute as a device reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InventoryAttribute {
    /// Attribute name.
    pub name: String,
    /// A string, a number, or a list of strings or numbers.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub value: Value,
    /// Optional description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Body of `POST /api/devices/v2/deployments/device/deployments/next`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NextRequestV2 {
    /// `artifact_name`, `device_type` and every provide of the installed software.
    pub device_provides: BTreeMap<String, String>,
    /// Whether the device understands update control maps.
    #[serde(default)]
    pub update_control_map: bool,
    /// An aloft extension: the device downloads a deployment whose instructions say it may not
    /// install yet ([`InstallControl`]) and waits; without it the server hands such a
    /// deployment out only once it may install.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub aloft_install_control: bool,
}

/// The 200 answer of `next`: what to install.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentInstructions {
    /// Deployment id (a UUID), used in the status and log URLs.
    pub id: String,
    /// The artifact to fetch.
    pub artifact: InstructionArtifact,
    /// An aloft extension, only for devices that asked with `aloft_install_control`: when and
    /// how to install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aloft: Option<InstallControl>,
}

/// When and how a device installs a deployment it was handed (an aloft extension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallControl {
    /// `forced`, `soft` (ask the consent hook before the install and the reboot) or
    /// `download-only`.
    pub install: crate::management::InstallPolicy,
    /// Why the device must not install yet (download, verify and ask again); none: go on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    /// RFC 3339: when the hold ends by itself (the window opens), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// The artifact part of [`DeploymentInstructions`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstructionArtifact {
    /// Artifact id.
    pub id: String,
    /// The artifact name, equal to the one in its header.
    pub artifact_name: String,
    /// Where to download it.
    pub source: ArtifactSource,
    /// Device types; a subset of the artifact's own list.
    pub device_types_compatible: Vec<String>,
}

/// A pre-signed download location.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactSource {
    /// URL usable without an `Authorization` header.
    pub uri: String,
    /// RFC 3339 expiry of the URL.
    pub expire: String,
}

/// Body of `PUT .../deployments/{id}/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusReport {
    /// One of [`crate::status::REPORTABLE`].
    pub status: String,
    /// Free text, e.g. the state script being run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substate: Option<String>,
}

/// Body of `PUT .../deployments/{id}/log`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentLog {
    /// The log lines.
    pub messages: Vec<LogMessage>,
}

/// One line of a deployment log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogMessage {
    /// RFC 3339 time.
    pub timestamp: String,
    /// `debug`, `info`, `warning`, `error`, ...
    pub level: String,
    /// The message.
    pub message: String,
}
