//! Metadata storage behind one trait, [`Store`]. [`sql::SqlStore`] is its one implementation,
//! written once for embedded `SQLite` (the default) and for `PostgreSQL` (a fleet that outgrows
//! one machine, or several replicas); both run the same conformance tests.
//!
//! Every method is one transaction: it either happens entirely or not at all, so a crash or a
//! refused request never leaves a half-written row behind. Times are UNIX microseconds.

pub mod dialect;
pub mod query;
pub mod sql;

pub use sql::{SqlStore, SqliteStore};

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::Value;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A uniqueness rule was broken.
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed for the store (e.g. a bad filter).
    #[error("{0}")]
    Invalid(String),
    /// A business rule forbids it.
    #[error("{0}")]
    Rule(String),
    /// The database cannot be reached (down, restarting, no free connection): try again.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database failed.
    #[error("database: {0}")]
    Backend(String),
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// A user row.
#[derive(Debug, Clone)]
pub struct UserRow {
    /// UUID.
    pub id: String,
    /// Lower-case e-mail.
    pub email: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// Created.
    pub created_ts: i64,
    /// Updated.
    pub updated_ts: i64,
    /// Last login.
    pub login_ts: Option<i64>,
}

/// The kinds of issued tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A login session of a user.
    Session,
    /// A personal access token of a user.
    Pat,
    /// A device token.
    Device,
}

impl TokenKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Pat => "pat",
            Self::Device => "device",
        }
    }
}

/// An issued token that is still honoured.
#[derive(Debug, Clone)]
pub struct TokenRow {
    /// The JWT id.
    pub jti: String,
    /// Kind.
    pub kind: TokenKind,
    /// User id or device id.
    pub subject: String,
    /// PAT name.
    pub name: Option<String>,
    /// Issued.
    pub created_ts: i64,
    /// Expiry; `None` never expires.
    pub expires_ts: Option<i64>,
    /// Last use (PATs).
    pub last_used: Option<i64>,
}

/// A device with its auth sets.
#[derive(Debug, Clone)]
pub struct DeviceRow {
    /// UUID.
    pub id: String,
    /// Canonical identity JSON (sorted keys).
    pub identity: Value,
    /// Derived status.
    pub status: String,
    /// Created.
    pub created_ts: i64,
    /// Updated.
    pub updated_ts: i64,
    /// Last contact.
    pub check_in_time: Option<i64>,
    /// Last inventory update.
    pub inventory_ts: Option<i64>,
    /// Static group.
    pub group: Option<String>,
    /// Auth sets, oldest first.
    pub auth_sets: Vec<AuthSetRow>,
}

/// An auth set.
#[derive(Debug, Clone)]
pub struct AuthSetRow {
    /// UUID.
    pub id: String,
    /// Normalised PEM.
    pub pubkey: String,
    /// `pending`, `accepted`, `rejected`, `preauthorized`.
    pub status: String,
    /// Created.
    pub ts: i64,
}

/// What an auth request found.
#[derive(Debug, Clone)]
pub struct AuthOutcome {
    /// The device.
    pub device_id: String,
    /// The status of the presented auth set after the request.
    pub status: String,
    /// Whether the request changed something (a new auth set, a preauthorized one accepted).
    pub changed: bool,
}

/// What an auth request would add to the store (read before admitting one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdmissionFootprint {
    /// Whether a device with this identity exists.
    pub device_exists: bool,
    /// Whether the presented key is one of its auth sets.
    pub key_known: bool,
    /// How many auth sets the device has.
    pub auth_sets: u64,
}

/// An attribute row (inventory or tags scope).
#[derive(Debug, Clone)]
pub struct AttrRow {
    /// Scope.
    pub scope: String,
    /// Name.
    pub name: String,
    /// Value.
    pub value: Value,
    /// Description.
    pub description: Option<String>,
    /// Set at.
    pub ts: i64,
}

/// A device's admission time and inventory (scope `inventory` only).
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The device id.
    pub id: String,
    /// When it was admitted (UNIX µs).
    pub created_ts: i64,
    /// Its inventory attributes, by name.
    pub attrs: Vec<AttrRow>,
}

/// One filter of an inventory search.
#[derive(Debug, Clone)]
pub struct Filter {
    /// `inventory`, `identity`, `system` or `tags`.
    pub scope: String,
    /// Attribute.
    pub attribute: String,
    /// `$eq`, `$ne`, `$in`, `$nin`, `$exists`, `$gt`, `$gte`, `$lt`, `$lte`.
    pub op: String,
    /// Operand.
    pub value: Value,
}

/// An inventory query.
#[derive(Debug, Clone, Default)]
pub struct InventoryQuery {
    /// All must hold.
    pub filters: Vec<Filter>,
    /// Only these ids (empty: all).
    pub ids: Vec<String>,
    /// Only this group.
    pub group: Option<String>,
    /// Only grouped (true) or ungrouped (false) devices.
    pub has_group: Option<bool>,
    /// Only devices not yet in this deployment.
    pub not_in_deployment: Option<String>,
    /// Only devices whose admission, group, tags or inventory changed at or after this time
    /// (UNIX µs).
    pub changed_since: Option<i64>,
    /// Sort by (scope, attribute, descending).
    pub sort: Option<(String, String, bool)>,
    /// Free text over identity and inventory values.
    pub text: Option<String>,
    /// 1-based page.
    pub page: u64,
    /// Page size.
    pub per_page: u64,
}

/// A stored artifact.
#[derive(Debug, Clone)]
pub struct ArtifactRow {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Compatible device types.
    pub device_types: Vec<String>,
    /// `artifact_depends` (with `device_type`).
    pub depends: BTreeMap<String, Value>,
    /// `artifact_provides`.
    pub provides: BTreeMap<String, String>,
    /// `clears_artifact_provides`.
    pub clears: Vec<String>,
    /// `updates` as JSON.
    pub updates: Value,
    /// 2 or 3.
    pub format_version: u32,
    /// Has `manifest.sig`.
    pub signed: bool,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the file (hex): its blob key.
    pub sha256: String,
    /// Uploaded.
    pub modified: i64,
}

/// Artifact list options.
#[derive(Debug, Clone, Default)]
pub struct ArtifactQuery {
    /// Exact name.
    pub name: Option<String>,
    /// Substring of the description.
    pub description: Option<String>,
    /// Compatible device type.
    pub device_type: Option<String>,
    /// Sort column (`name` or `modified`) and descending.
    pub sort: (String, bool),
    /// Page (0: everything).
    pub page: u64,
    /// Page size.
    pub per_page: u64,
}

/// A deployment row.
#[derive(Debug, Clone)]
pub struct DeploymentRow {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Release.
    pub artifact_name: String,
    /// Created.
    pub created: i64,
    /// Finished.
    pub finished: Option<i64>,
    /// `pending`, `inprogress`, `finished`.
    pub status: String,
    /// Static groups.
    pub groups: Vec<String>,
    /// Forced.
    pub force_installation: bool,
    /// Targeted every accepted device.
    pub all_devices: bool,
    /// Its rollout plan (`domain::rollouts::Plan` as JSON), when it is phased.
    pub rollout: Option<String>,
    /// Where its rollout stands (`domain::rollouts::State` as JSON), when it is phased.
    pub rollout_state: Option<String>,
    /// How many times a device that failed starts over (Mender's `retries`).
    pub retries: u32,
    /// The saved filter a dynamic deployment follows (`aloft_api::management::SavedFilter`
    /// as JSON, copied when it was created); `None` for a fixed list of devices.
    pub filter: Option<String>,
    /// The most devices a dynamic deployment takes.
    pub max_devices: Option<u64>,
}

impl DeploymentRow {
    /// Whether more devices may join it.
    #[must_use]
    pub fn members(&self) -> crate::domain::deployments::Members {
        use crate::domain::deployments::Members;
        match self.filter {
            Some(_) => Members::Open {
                max: self.max_devices,
            },
            None => Members::Fixed,
        }
    }
}

/// A saved inventory filter: a dynamic group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedFilterRow {
    /// UUID.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Its predicates (`aloft_api::management::FilterTerm` list as JSON).
    pub terms: String,
    /// Created (µs).
    pub created: i64,
}

/// Aggregates of one deployment.
#[derive(Debug, Clone, Default)]
pub struct DeploymentStats {
    /// Device deployments per status.
    pub by_status: BTreeMap<String, u64>,
    /// Devices targeted.
    pub max_devices: u64,
    /// Devices that checked in.
    pub device_count: u64,
    /// Distinct artifact ids handed out.
    pub artifacts: Vec<String>,
    /// Sum of their sizes.
    pub total_size: u64,
}

/// Deployment list options.
#[derive(Debug, Clone, Default)]
pub struct DeploymentQuery {
    /// `pending`, `inprogress`, `finished` (`aborted` too).
    pub status: Option<String>,
    /// Substring of name or artifact name.
    pub search: Option<String>,
    /// Created at or before (µs).
    pub created_before: Option<i64>,
    /// Created at or after (µs).
    pub created_after: Option<i64>,
    /// Oldest first.
    pub ascending: bool,
    /// Page (1-based).
    pub page: u64,
    /// Page size.
    pub per_page: u64,
}

/// One device's part in a deployment.
#[derive(Debug, Clone)]
pub struct DeviceDeploymentRow {
    /// UUID of this record.
    pub id: String,
    /// Deployment.
    pub deployment_id: String,
    /// Device.
    pub device_id: String,
    /// Status.
    pub status: String,
    /// Substate.
    pub substate: Option<String>,
    /// Created.
    pub created: i64,
    /// Picked up.
    pub started: Option<i64>,
    /// Ended.
    pub finished: Option<i64>,
    /// Artifact assigned.
    pub artifact_id: Option<String>,
    /// Whether a log exists.
    pub has_log: bool,
    /// The phase it was dealt into (0: the first).
    pub phase: u32,
    /// How many times it started over after a failure.
    pub retried: u32,
}

/// One device of a rollout's health gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRow {
    /// Its status in the deployment (`success`, or one before the install).
    pub status: String,
    /// When it finished (UNIX µs; `None` while it runs).
    pub finished: Option<i64>,
    /// UNIX µs of its last check-in.
    pub check_in_time: Option<i64>,
    /// Whether its health probe fails.
    pub failing: bool,
    /// What it reported about its boots.
    pub boots: crate::domain::health::Boots,
}

/// One sample of a rollout's health comparison: the updated cohort and the control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthSample {
    /// UNIX µs (the start of its bucket).
    pub ts: i64,
    /// The updated cohort.
    pub updated: crate::domain::health::Cohort,
    /// The control cohort.
    pub control: crate::domain::health::Cohort,
}

/// How many device deployments of one phase have one status, and whether they were handed
/// out (`started`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseCount {
    /// The phase (0: the first).
    pub phase: u32,
    /// The status.
    pub status: String,
    /// Whether the update was handed out.
    pub started: bool,
    /// How many.
    pub count: u64,
}

/// What a status report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusOutcome {
    /// Recorded (or a repeat of the final status).
    Recorded,
    /// A failure with retries left: the device deployment is `pending` again.
    Retried,
    /// The deployment was aborted: the device must stop (409).
    Aborted,
}

/// One row of the replicas' feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRow {
    /// Increasing, but rows may become visible out of order (read by time window).
    pub id: i64,
    /// Written at (µs).
    pub ts: i64,
    /// [`FEED_REVOKED`], [`FEED_DEPLOYMENTS`] or [`FEED_EVENT`].
    pub kind: String,
    /// The replica that wrote it (`store` for rows the store writes in a change's transaction).
    pub origin: String,
    /// The payload (a live event's JSON).
    pub body: String,
}

/// Feed kind: some device token was revoked (the token caches must check again).
pub const FEED_REVOKED: &str = "revoked";
/// Feed kind: a deployment was created, aborted or ended for a device (idle caches expire).
pub const FEED_DEPLOYMENTS: &str = "deployments";
/// Feed kind: a live event for the management side's listeners.
pub const FEED_EVENT: &str = "event";

/// The metadata store.
#[async_trait]
pub trait Store: Send + Sync {
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// A cheap round trip (readiness).
    async fn ping(&self) -> StoreResult<()>;

    // ---- users and tokens ----
    /// Inserts a user; `Conflict` if the e-mail exists.
    async fn create_user(&self, user: &UserRow) -> StoreResult<()>;
    /// By id.
    async fn user(&self, id: &str) -> StoreResult<Option<UserRow>>;
    /// By lower-case e-mail.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRow>>;
    /// All users.
    async fn users(&self) -> StoreResult<Vec<UserRow>>;
    /// Replaces e-mail and password hash; `Conflict` on a taken e-mail.
    async fn update_user(&self, user: &UserRow) -> StoreResult<()>;
    /// Deletes a user and their tokens.
    async fn delete_user(&self, id: &str) -> StoreResult<bool>;
    /// Records a token; for sessions keeps at most `keep_sessions` per user (oldest dropped);
    /// for PATs `Conflict` on a duplicate name and `Rule` above `max_pats`.
    async fn insert_token(
        &self,
        token: &TokenRow,
        keep_sessions: u64,
        max_pats: u64,
    ) -> StoreResult<()>;
    /// The token, if still honoured; records its use.
    async fn use_token(&self, jti: &str, now: i64) -> StoreResult<Option<TokenRow>>;
    /// Revokes a token of a subject (any subject when `None`).
    async fn delete_token(&self, jti: &str, subject: Option<&str>) -> StoreResult<bool>;
    /// A user's personal access tokens.
    async fn pats(&self, user_id: &str) -> StoreResult<Vec<TokenRow>>;
    /// Revokes every token of `subject` of the given kinds except `keep` (a jti); returns how
    /// many were revoked.
    async fn revoke_tokens_of(
        &self,
        subject: &str,
        kinds: &[TokenKind],
        keep: Option<&str>,
    ) -> StoreResult<u64>;

    // ---- devices ----
    /// Handles an authentication request: finds or creates the device (by identity hash) and
    /// the auth set (by key); a preauthorized set becomes accepted.
    async fn auth_request(
        &self,
        identity_hash: &str,
        identity: &Value,
        pubkey: &str,
        now: i64,
    ) -> StoreResult<AuthOutcome>;
    /// Whether the identity and key are known, and how many auth sets the device has.
    async fn admission_footprint(
        &self,
        identity_hash: &str,
        pubkey: &str,
    ) -> StoreResult<AdmissionFootprint>;
    /// Creates a preauthorized device; `Conflict(existing id)` if the identity exists and
    /// not `force`.
    async fn preauthorize(
        &self,
        identity_hash: &str,
        identity: &Value,
        pubkey: &str,
        force: bool,
        now: i64,
    ) -> StoreResult<Result<String, String>>;
    /// One device.
    async fn device(&self, id: &str) -> StoreResult<Option<DeviceRow>>;
    /// Devices by status and ids, oldest first.
    async fn devices(
        &self,
        status: Option<&[String]>,
        ids: &[String],
        page: u64,
        per_page: u64,
    ) -> StoreResult<Vec<DeviceRow>>;
    /// Count by status (all when `None`).
    async fn count_devices(&self, status: Option<&str>) -> StoreResult<u64>;
    /// Devices per status.
    async fn device_counts(&self) -> StoreResult<BTreeMap<String, u64>>;
    /// Changes an auth set's status under Mender's rules; revokes the device's tokens when it
    /// stops being accepted.
    async fn set_auth_status(
        &self,
        device_id: &str,
        auth_id: &str,
        status: &str,
        now: i64,
    ) -> StoreResult<()>;
    /// Deletes one auth set.
    async fn delete_auth_set(&self, device_id: &str, auth_id: &str, now: i64) -> StoreResult<()>;
    /// Deletes a device with its auth sets, tokens and inventory; its unfinished device
    /// deployments become `decommissioned`.
    async fn decommission(&self, device_id: &str, now: i64) -> StoreResult<bool>;
    /// Records contact by an accepted device.
    async fn check_in(&self, device_id: &str, now: i64) -> StoreResult<()>;
    /// Records the contacts of many devices in one transaction (a time never goes back).
    async fn check_in_many(&self, seen: &[(String, i64)]) -> StoreResult<()>;

    // ---- inventory ----
    /// Replaces (`replace`) or upserts the device-reported attributes.
    async fn put_inventory(
        &self,
        device_id: &str,
        attrs: &[(String, Value)],
        replace: bool,
        now: i64,
    ) -> StoreResult<()>;
    /// Clears the device-reported attributes.
    async fn clear_inventory(&self, device_id: &str, now: i64) -> StoreResult<bool>;
    /// Stored attributes (inventory and tags scopes).
    async fn attributes(&self, device_id: &str) -> StoreResult<Vec<AttrRow>>;
    /// Devices with their attributes, in the order of `ids` (unknown ids left out): one
    /// inventory page in three queries.
    async fn inventory_of(&self, ids: &[String]) -> StoreResult<Vec<(DeviceRow, Vec<AttrRow>)>>;
    /// The admission time and inventory-scope attributes of each of `ids` that exists, in
    /// the order of `ids`, in one query: what plans and rollouts deal and decide by.
    async fn inventories(&self, ids: &[String]) -> StoreResult<Vec<Inventory>>;
    /// Sets tags: replace all or upsert.
    async fn put_tags(
        &self,
        device_id: &str,
        tags: &[(String, String, Option<String>)],
        replace: bool,
        now: i64,
    ) -> StoreResult<()>;
    /// Matching device ids (accepted or not) and the total count.
    async fn search_inventory(&self, q: &InventoryQuery) -> StoreResult<(Vec<String>, u64)>;
    /// Sets or clears a device's group.
    async fn set_group(&self, device_id: &str, group: Option<&str>, now: i64) -> StoreResult<bool>;
    /// Moves devices into a group; returns (updated, matched).
    async fn add_to_group(&self, group: &str, ids: &[String], now: i64) -> StoreResult<(u64, u64)>;
    /// Removes devices from a group (`None`: all of them); returns how many.
    async fn remove_from_group(
        &self,
        group: &str,
        ids: Option<&[String]>,
        now: i64,
    ) -> StoreResult<u64>;
    /// Group names (of accepted devices only when `accepted_only`).
    async fn groups(&self, accepted_only: bool) -> StoreResult<Vec<String>>;

    // ---- artifacts ----
    /// Stores an artifact's metadata; `Conflict` on the same name with overlapping depends.
    async fn insert_artifact(&self, a: &ArtifactRow) -> StoreResult<()>;
    /// One artifact.
    async fn artifact(&self, id: &str) -> StoreResult<Option<ArtifactRow>>;
    /// Artifacts and the total count.
    async fn artifacts(&self, q: &ArtifactQuery) -> StoreResult<(Vec<ArtifactRow>, u64)>;
    /// Changes a description; `Rule` once the artifact was deployed.
    async fn set_artifact_description(&self, id: &str, description: &str) -> StoreResult<()>;
    /// Deletes an artifact unless an active deployment uses it; returns whether another
    /// artifact still references the same blob.
    async fn delete_artifact(&self, id: &str) -> StoreResult<bool>;
    /// Whether any artifact is stored under this file digest.
    async fn blob_in_use(&self, sha256: &str) -> StoreResult<bool>;
    /// Whether any artifact has this name.
    async fn release_exists(&self, name: &str) -> StoreResult<bool>;

    // ---- dynamic groups ----
    /// Saves a filter; `Conflict` when its name is taken.
    async fn insert_saved_filter(&self, f: &SavedFilterRow) -> StoreResult<()>;
    /// Every saved filter, by name.
    async fn saved_filters(&self) -> StoreResult<Vec<SavedFilterRow>>;
    /// One saved filter.
    async fn saved_filter(&self, id: &str) -> StoreResult<Option<SavedFilterRow>>;
    /// Deletes a saved filter (dynamic deployments keep their copy); false when absent.
    async fn delete_saved_filter(&self, id: &str) -> StoreResult<bool>;

    // ---- deployments ----
    /// Creates a deployment for a fixed list of devices, device `i` in phase `phases[i]` (0
    /// where `phases` is shorter); `Conflict` when an active one with the same parameters
    /// exists.
    async fn create_deployment(
        &self,
        d: &DeploymentRow,
        devices: &[String],
        phases: &[u32],
        fingerprint: &str,
    ) -> StoreResult<()>;
    /// Replaces a rollout's state if it is still `expected` (compare-and-set: of replicas
    /// deciding at once, one wins); returns whether it did.
    async fn set_rollout_state(&self, id: &str, expected: &str, new: &str) -> StoreResult<bool>;
    /// A deployment's device deployments counted by phase, status and handed out.
    async fn phase_counts(&self, id: &str) -> StoreResult<Vec<PhaseCount>>;
    /// How many of a deployment's devices were handed the update at or after `since` (µs).
    async fn started_since(&self, id: &str, since: i64) -> StoreResult<u64>;
    /// For a rollout's health gate: each device of the deployment that ended `success` or has
    /// not installed yet (`pending`, `downloading`, `pause_before_installing`: it runs the old
    /// release), with its last check-in and whether its `aloft.health` is `failing`.
    async fn rollout_health(&self, id: &str) -> StoreResult<Vec<HealthRow>>;
    /// Keeps a sample of a rollout's health comparison; a later one for the same `ts` (its
    /// bucket, whichever replica runs the job) replaces it.
    async fn add_health_sample(&self, id: &str, sample: &HealthSample) -> StoreResult<()>;
    /// A rollout's newest health samples (at most `limit`), oldest first.
    async fn health_samples(&self, id: &str, limit: u64) -> StoreResult<Vec<HealthSample>>;
    /// The phased deployments not finished.
    async fn active_rollouts(&self) -> StoreResult<Vec<DeploymentRow>>;
    /// The dynamic deployments not finished.
    async fn active_dynamic(&self) -> StoreResult<Vec<DeploymentRow>>;
    /// Adds devices (each with its phase) to an unfinished dynamic deployment, in order, while
    /// its `max_devices` allows; devices already in it are skipped. Returns those added.
    async fn join_deployment(
        &self,
        id: &str,
        devices: &[(String, u32)],
        now: i64,
    ) -> StoreResult<Vec<String>>;
    /// A fleet-wide switch's value, while it is engaged.
    async fn switch(&self, name: &str) -> StoreResult<Option<String>>;
    /// Engages (`Some`) or releases (`None`) a fleet-wide switch.
    async fn set_switch(&self, name: &str, value: Option<&str>, now: i64) -> StoreResult<()>;
    /// One deployment.
    async fn deployment(&self, id: &str) -> StoreResult<Option<DeploymentRow>>;
    /// Deployments and the total count.
    async fn deployments(&self, q: &DeploymentQuery) -> StoreResult<(Vec<DeploymentRow>, u64)>;
    /// Aggregates of a deployment.
    async fn deployment_stats(&self, id: &str) -> StoreResult<DeploymentStats>;
    /// Aggregates of several deployments at once (a list page), by id.
    async fn deployment_stats_of(
        &self,
        ids: &[String],
    ) -> StoreResult<BTreeMap<String, DeploymentStats>>;
    /// Deployments per status.
    async fn deployment_counts(&self) -> StoreResult<BTreeMap<String, u64>>;
    /// Aborts: unfinished device deployments become `aborted`, the deployment `finished`.
    /// `Rule` if already finished.
    async fn abort_deployment(&self, id: &str, now: i64) -> StoreResult<()>;
    /// Aborts every unfinished deployment of a device.
    async fn abort_device(&self, device_id: &str, now: i64) -> StoreResult<()>;
    /// Forgets a device's finished history (the device counts as changed at `now`).
    async fn delete_device_history(&self, device_id: &str, now: i64) -> StoreResult<()>;
    /// Device deployments of a deployment, optional status (or group name), paged (0: all).
    async fn device_deployments(
        &self,
        deployment_id: &str,
        status: Option<&str>,
        page: u64,
        per_page: u64,
    ) -> StoreResult<(Vec<DeviceDeploymentRow>, u64)>;
    /// A device's history, newest first.
    async fn device_history(
        &self,
        device_id: &str,
        status: Option<&str>,
        page: u64,
        per_page: u64,
    ) -> StoreResult<(Vec<DeviceDeploymentRow>, u64)>;
    /// The device's unfinished device deployments, oldest deployment first.
    async fn open_device_deployments(
        &self,
        device_id: &str,
    ) -> StoreResult<Vec<DeviceDeploymentRow>>;
    /// Compatible artifacts of a release for a device type, newest first.
    async fn artifacts_for(&self, name: &str, device_type: &str) -> StoreResult<Vec<ArtifactRow>>;
    /// The releases devices of a type run (their inventory's `artifact_name`), with how many
    /// run each, most common first, at most `limit`.
    async fn fleet_releases(
        &self,
        device_type: &str,
        limit: usize,
    ) -> StoreResult<Vec<(String, u64)>>;
    /// Hands a deployment to a device: sets the artifact and `started` (status unchanged), or
    /// ends it with a final status (`noartifact`, `already-installed`).
    async fn assign(
        &self,
        dd_id: &str,
        artifact_id: Option<&str>,
        final_status: Option<&str>,
        now: i64,
    ) -> StoreResult<()>;
    /// Records a status report of a device.
    async fn report_status(
        &self,
        deployment_id: &str,
        device_id: &str,
        status: &str,
        substate: Option<&str>,
        now: i64,
    ) -> StoreResult<StatusOutcome>;
    /// Stores a deployment log.
    async fn put_log(&self, deployment_id: &str, device_id: &str, log: &str) -> StoreResult<()>;
    /// A deployment log.
    async fn log(&self, deployment_id: &str, device_id: &str) -> StoreResult<Option<String>>;

    // ---- replicas ----
    /// Appends to the feed (and wakes the other replicas on `PostgreSQL`).
    async fn feed_append(&self, kind: &str, origin: &str, body: &str, now: i64) -> StoreResult<()>;
    /// Feed rows written at or after `since` (µs), oldest first, at most `limit`.
    async fn feed_since(&self, since: i64, limit: u64) -> StoreResult<Vec<FeedRow>>;
    /// Deletes feed rows older than `before` (µs); returns how many.
    async fn feed_prune(&self, before: i64) -> StoreResult<u64>;
    /// Claims periodic job `name` for `holder` when its lease has run out: exactly one of the
    /// replicas asking at once gets `true`, and nobody else until `now + lease`.
    async fn claim_job(&self, name: &str, holder: &str, now: i64, lease: i64) -> StoreResult<bool>;
    /// Records `value` under `name` (refreshing it) unless another value was recorded or
    /// refreshed after `stale_before` (µs); returns the value stored now.
    async fn cluster_value(
        &self,
        name: &str,
        value: &str,
        now: i64,
        stale_before: i64,
    ) -> StoreResult<String>;
}
