//! The store over SQL, written once for `SQLite` (embedded, the default) and `PostgreSQL` (shared
//! by several replicas), through sqlx's `Any` driver. Statements use `$n` placeholders,
//! `ON CONFLICT` and `RETURNING`, which both read; booleans are stored as integers; the few
//! differences are in [`super::dialect`]. Rules come from [`crate::domain`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor as _, Row, Transaction};

use super::dialect::Dialect;
use super::query::Qb;
use super::{
    AdmissionFootprint, ArtifactQuery, ArtifactRow, AttrRow, AuthOutcome, AuthSetRow,
    DeploymentQuery, DeploymentRow, DeploymentStats, DeviceDeploymentRow, DeviceRow,
    FEED_DEPLOYMENTS, FEED_REVOKED, FeedRow, Inventory, InventoryQuery, SavedFilterRow,
    StatusOutcome, Store, StoreError, StoreResult, TokenKind, TokenRow, UserRow,
};
use crate::domain::{admission, deployments as rules, tokens as token_rules};
use aloft_api::status;

/// The final device deployment statuses, as an SQL list (see `aloft_api::status::is_final`).
macro_rules! final_statuses {
    () => {
        "('success','failure','noartifact','already-installed','aborted','decommissioned')"
    };
}

/// The [`Store`] on `SQLite` or `PostgreSQL`.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
}

/// The store's former name, for the embedded default.
pub type SqliteStore = SqlStore;

#[expect(clippy::needless_pass_by_value, reason = "used as map_err(db)")]
fn db(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(d.message().to_owned())
        }
        // PostgreSQL's text holds no NUL character (22021), where SQLite's does: refused as
        // bad input, never a server error.
        sqlx::Error::Database(d) if d.code().as_deref() == Some("22021") => {
            StoreError::Invalid("text must not contain NUL characters".into())
        }
        // PostgreSQL's connection exceptions (08…) and operator interventions (57P…: shutdown,
        // restart) are passing; so are lost or exhausted connections.
        sqlx::Error::Database(d)
            if d.code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// A device's inventory as `Dialect::inventories_json` returns it: id, admission time, one
/// `[name, value_json, description, ts]` per attribute.
type StoredInventory = (String, i64, Vec<(String, String, Option<String>, i64)>);

/// The integer in a stored JSON value, a number or a decimal string as inventory scripts
/// write (`None`: absent, not an integer, out of range).
fn json_number<T: TryFrom<i64>>(text: Option<String>) -> Option<T> {
    let v: Value = serde_json::from_str(&text?).ok()?;
    let n = v.as_i64().or_else(|| v.as_str()?.trim().parse().ok())?;
    T::try_from(n).ok()
}

fn json_text(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn parse_json<T: serde::de::DeserializeOwned + Default>(s: &str) -> T {
    serde_json::from_str(s).unwrap_or_default()
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// (limit, offset) of a 1-based page; page 0 means everything.
fn limits(page: u64, per_page: u64) -> (i64, i64) {
    if page == 0 {
        (i64::MAX, 0)
    } else {
        (
            as_i64(per_page),
            as_i64((page - 1).saturating_mul(per_page)),
        )
    }
}

fn install_drivers() {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(sqlx::any::install_default_drivers);
}

/// The `sqlite://` URL of a database file (`%`, `?` and `#` escaped, as sqlx decodes them).
fn sqlite_url(path: &Path) -> String {
    let mut url = String::from("sqlite://");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => url.push_str("%25"),
            '?' => url.push_str("%3F"),
            '#' => url.push_str("%23"),
            c => url.push(c),
        }
    }
    url.push_str("?mode=rwc");
    url
}

/// What every `SQLite` connection sets: WAL, a wait for the writer instead of "locked",
/// foreign keys.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                              PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;";

impl SqlStore {
    /// Opens (creating, readable by its owner only) an `SQLite` database file.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        create_private(path)?;
        Self::sqlite(&sqlite_url(path), 8).await
    }

    /// An in-memory `SQLite` database (tests).
    pub async fn memory() -> StoreResult<Self> {
        Self::sqlite("sqlite::memory:", 1).await
    }

    /// Connects by URL: `sqlite://PATH` or `postgres://…` (`postgresql://` too).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or(path);
            return Self::open(Path::new(path)).await;
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Self::postgres(url, 16).await;
        }
        Err(StoreError::Invalid(format!(
            "unsupported database URL {:?}: expected sqlite://PATH or postgres://…",
            redact(url)
        )))
    }

    async fn sqlite(url: &str, max: u32) -> StoreResult<Self> {
        install_drivers();
        // The journal mode belongs to the file: switch it to WAL once, on one connection,
        // before a pool's connections race to do it (a new file then answers "locked").
        {
            use sqlx::Connection as _;
            let mut first = sqlx::AnyConnection::connect(url).await.map_err(db)?;
            first.execute(SQLITE_PRAGMAS).await.map_err(db)?;
            first.close().await.map_err(db)?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(db)?;
        Ok(Self {
            pool,
            dialect: Dialect::Sqlite,
        })
    }

    async fn postgres(url: &str, max: u32) -> StoreResult<Self> {
        install_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(3))
            .connect(url)
            .await
            .map_err(|e| StoreError::Backend(format!("connecting to {}: {e}", redact(url))))?;
        Ok(Self {
            pool,
            dialect: Dialect::Postgres,
        })
    }

    /// Closes every connection (waits for those in use).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Any>> {
        self.pool.begin_with(self.dialect.begin()).await.map_err(db)
    }

    /// A page of device deployments where `column = value`, in `order`, with the total.
    async fn device_deployment_page(
        &self,
        (column, value, order): (&str, &str, &str),
        st: Option<&str>,
        page: u64,
        per_page: u64,
    ) -> StoreResult<(Vec<DeviceDeploymentRow>, u64)> {
        let filter = |qb: &mut Qb| {
            qb.push(format!(" FROM device_deployments WHERE {column} = "))
                .push_bind(value.to_owned());
            if let Some(s) = st {
                push_status_filter(qb, s);
            }
        };
        let mut cq = Qb::new("SELECT COUNT(*)");
        filter(&mut cq);
        let total: i64 = cq.build_scalar()?.fetch_one(&self.pool).await.map_err(db)?;
        let mut qb = Qb::new(format!("SELECT {DD_COLUMNS}"));
        filter(&mut qb);
        let (limit, offset) = limits(page, per_page);
        qb.push(format!(" ORDER BY {order} LIMIT "))
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(offset);
        let rows = qb.build()?.fetch_all(&self.pool).await.map_err(db)?;
        Ok((rows.iter().map(dd_from_row).collect(), count(total)))
    }

    async fn load_devices(&self, rows: Vec<AnyRow>) -> StoreResult<Vec<DeviceRow>> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(device_from_row(&r));
        }
        if out.is_empty() {
            return Ok(out);
        }
        let mut qb =
            Qb::new("SELECT device_id, id, pubkey, status, ts FROM auth_sets WHERE device_id IN ");
        qb.push_list(out.iter().map(|d| d.id.clone()));
        qb.push(" ORDER BY ts, id");
        let sets = qb.build()?.fetch_all(&self.pool).await.map_err(db)?;
        let mut by_dev: BTreeMap<String, Vec<AuthSetRow>> = BTreeMap::new();
        for s in sets {
            by_dev
                .entry(s.get("device_id"))
                .or_default()
                .push(AuthSetRow {
                    id: s.get("id"),
                    pubkey: s.get("pubkey"),
                    status: s.get("status"),
                    ts: s.get("ts"),
                });
        }
        for d in &mut out {
            d.auth_sets = by_dev.remove(&d.id).unwrap_or_default();
        }
        Ok(out)
    }
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Creates the database file readable by its owner only, if it is missing (`SQLite` gives its
/// WAL and shared-memory files the same mode).
fn create_private(path: &Path) -> StoreResult<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Backend(format!(
            "creating {}: {e}",
            path.display()
        ))),
    }
}

fn device_from_row(r: &AnyRow) -> DeviceRow {
    DeviceRow {
        id: r.get("id"),
        identity: serde_json::from_str(r.get::<&str, _>("identity_json")).unwrap_or(Value::Null),
        status: r.get("status"),
        created_ts: r.get("created_ts"),
        updated_ts: r.get("updated_ts"),
        check_in_time: r.get("check_in_time"),
        inventory_ts: r.get("inventory_ts"),
        group: r.get("group_name"),
        auth_sets: Vec::new(),
    }
}

fn attr_from_row(r: &AnyRow) -> AttrRow {
    AttrRow {
        scope: r.get("scope"),
        name: r.get("name"),
        value: serde_json::from_str(r.get::<&str, _>("value_json")).unwrap_or(Value::Null),
        description: r.get("description"),
        ts: r.get("ts"),
    }
}

/// Statistics of a deployment no device reported on: every status at zero.
fn empty_stats() -> DeploymentStats {
    let mut st = DeploymentStats::default();
    for s in status::ALL {
        st.by_status.insert(s.to_owned(), 0);
    }
    st
}

fn user_from_row(r: &AnyRow) -> UserRow {
    UserRow {
        id: r.get("id"),
        email: r.get("email"),
        password_hash: r.get("password_hash"),
        created_ts: r.get("created_ts"),
        updated_ts: r.get("updated_ts"),
        login_ts: r.get("login_ts"),
    }
}

fn token_from_row(r: &AnyRow) -> TokenRow {
    let kind = match r.get::<&str, _>("kind") {
        "pat" => TokenKind::Pat,
        "device" => TokenKind::Device,
        _ => TokenKind::Session,
    };
    TokenRow {
        jti: r.get("jti"),
        kind,
        subject: r.get("subject"),
        name: r.get("name"),
        created_ts: r.get("created_ts"),
        expires_ts: r.get("expires_ts"),
        last_used: r.get("last_used"),
    }
}

fn artifact_from_row(r: &AnyRow) -> ArtifactRow {
    ArtifactRow {
        id: r.get("id"),
        name: r.get("name"),
        description: r.get("description"),
        device_types: parse_json(r.get("device_types_json")),
        depends: parse_json(r.get("depends_json")),
        provides: parse_json(r.get("provides_json")),
        clears: parse_json(r.get("clears_json")),
        updates: serde_json::from_str(r.get::<&str, _>("updates_json")).unwrap_or(Value::Null),
        format_version: u32::try_from(r.get::<i64, _>("format_version")).unwrap_or(3),
        signed: r.get::<i64, _>("signed") != 0,
        size: count(r.get("size")),
        sha256: r.get("sha256"),
        modified: r.get("modified"),
    }
}

fn deployment_from_row(r: &AnyRow) -> DeploymentRow {
    DeploymentRow {
        id: r.get("id"),
        name: r.get("name"),
        artifact_name: r.get("artifact_name"),
        created: r.get("created"),
        finished: r.get("finished"),
        status: r.get("status"),
        groups: parse_json(r.get("groups_json")),
        force_installation: r.get::<i64, _>("force_installation") != 0,
        all_devices: r.get::<i64, _>("all_devices") != 0,
        rollout: r.get("rollout"),
        rollout_state: r.get("rollout_state"),
        retries: u32::try_from(r.get::<i64, _>("retries")).unwrap_or(0),
        filter: r.get("filter_json"),
        max_devices: r
            .get::<Option<i64>, _>("max_devices")
            .map(|m| u64::try_from(m).unwrap_or(0)),
    }
}

fn saved_filter_from_row(r: &AnyRow) -> SavedFilterRow {
    SavedFilterRow {
        id: r.get("id"),
        name: r.get("name"),
        terms: r.get("terms_json"),
        created: r.get("created"),
    }
}

fn dd_from_row(r: &AnyRow) -> DeviceDeploymentRow {
    DeviceDeploymentRow {
        id: r.get("id"),
        deployment_id: r.get("deployment_id"),
        device_id: r.get("device_id"),
        status: r.get("status"),
        substate: r.get("substate"),
        created: r.get("created"),
        started: r.get("started"),
        finished: r.get("finished"),
        artifact_id: r.get("artifact_id"),
        has_log: r.get::<i64, _>("has_log") != 0,
        phase: u32::try_from(r.get::<i64, _>("phase")).unwrap_or(u32::MAX),
        retried: u32::try_from(r.get::<i64, _>("retried")).unwrap_or(u32::MAX),
    }
}

const DD_COLUMNS: &str = "id, deployment_id, device_id, status, substate, created, started, \
                          finished, artifact_id, CASE WHEN log IS NULL THEN 0 ELSE 1 END AS has_log, phase, retried";

/// SQL for a status filter that may be a group name (`pause`, `active`, `finished`).
fn push_status_filter(qb: &mut Qb, status: &str) {
    let group: &[&str] = match status {
        "pause" => &[
            status::PAUSE_BEFORE_INSTALLING,
            status::PAUSE_BEFORE_REBOOTING,
            status::PAUSE_BEFORE_COMMITTING,
        ],
        "active" => &[
            status::PENDING,
            status::DOWNLOADING,
            status::INSTALLING,
            status::REBOOTING,
            status::PAUSE_BEFORE_INSTALLING,
            status::PAUSE_BEFORE_REBOOTING,
            status::PAUSE_BEFORE_COMMITTING,
        ],
        "finished" => &[
            status::SUCCESS,
            status::FAILURE,
            status::NOARTIFACT,
            status::ALREADY_INSTALLED,
            status::ABORTED,
            status::DECOMMISSIONED,
        ],
        _ => {
            qb.push(" AND status = ").push_bind(status.to_owned());
            return;
        }
    };
    qb.push(" AND status IN ")
        .push_list(group.iter().map(|s| (*s).to_owned()));
}

/// Recomputes a deployment's status after its device deployments changed (the caller holds
/// the deployment's row lock, see [`lock_deployment`]).
async fn refresh_deployment(
    tx: &mut Transaction<'static, Any>,
    deployment_id: &str,
    now: i64,
) -> StoreResult<()> {
    let row = sqlx::query(concat!(
        "SELECT COUNT(*) AS total, CAST(COALESCE(SUM(CASE WHEN status IN ",
        final_statuses!(),
        " THEN 1 ELSE 0 END), 0) AS BIGINT) AS done, \
         CAST(COALESCE(SUM(CASE WHEN status <> 'pending' OR started IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS touched \
         FROM device_deployments WHERE deployment_id = $1",
    ))
    .bind(deployment_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(db)?;
    let members = sqlx::query("SELECT * FROM deployments WHERE id = $1")
        .bind(deployment_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?
        .map_or(rules::Members::Fixed, |r| deployment_from_row(&r).members());
    let tally = rules::Tally {
        total: count(row.try_get("total").map_err(db)?),
        done: count(row.try_get("done").map_err(db)?),
        touched: count(row.try_get("touched").map_err(db)?),
        members,
    };
    let st = rules::status_of(tally);
    let fin = (st == "finished").then_some(now);
    sqlx::query(
        "UPDATE deployments SET status = $1, finished = COALESCE(finished, $2) \
         WHERE id = $3 AND status <> 'finished'",
    )
    .bind(st)
    .bind(fin)
    .bind(deployment_id)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Locks a deployment's row until the transaction ends and returns its status: two devices
/// that end the same deployment at once on `PostgreSQL` then count each other's result.
/// Every writer locks the deployment before its device deployments, so none deadlock.
async fn lock_deployment(
    tx: &mut Transaction<'static, Any>,
    dialect: Dialect,
    deployment_id: &str,
) -> StoreResult<Option<String>> {
    sqlx::query_scalar(&format!(
        "SELECT status FROM deployments WHERE id = $1{}",
        dialect.for_update()
    ))
    .bind(deployment_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)
}

async fn refresh_device_status(
    tx: &mut Transaction<'static, Any>,
    device_id: &str,
    now: i64,
) -> StoreResult<()> {
    let sets: Vec<String> = sqlx::query_scalar("SELECT status FROM auth_sets WHERE device_id = $1")
        .bind(device_id)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
    sqlx::query("UPDATE devices SET status = $1, updated_ts = $2 WHERE id = $3")
        .bind(admission::device_status(sets.iter().map(String::as_str)))
        .bind(now)
        .bind(device_id)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// Applies the side effects of an auth-set change.
async fn apply_effects(
    tx: &mut Transaction<'static, Any>,
    dialect: Dialect,
    device_id: &str,
    effects: admission::Effects,
) -> StoreResult<()> {
    if effects.reject_other_accepted {
        sqlx::query(
            "UPDATE auth_sets SET status = 'rejected' WHERE device_id = $1 AND status = 'accepted'",
        )
        .bind(device_id)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    if effects.revoke_tokens {
        revoke_device_tokens(tx, dialect, device_id).await?;
    }
    Ok(())
}

/// Ends every unfinished device deployment of a device with `status` and refreshes the
/// deployments concerned.
async fn end_open_for_device(
    tx: &mut Transaction<'static, Any>,
    dialect: Dialect,
    device_id: &str,
    status: &str,
    now: i64,
) -> StoreResult<()> {
    let deps: Vec<String> = sqlx::query_scalar(concat!(
        "SELECT deployment_id FROM device_deployments WHERE device_id = $1 AND status NOT IN ",
        final_statuses!()
    ))
    .bind(device_id)
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?;
    let mut deps = deps;
    deps.sort();
    for d in &deps {
        lock_deployment(tx, dialect, d).await?;
    }
    sqlx::query(concat!(
        "UPDATE device_deployments SET status = $1, finished = $2 WHERE device_id = $3 AND status NOT IN ",
        final_statuses!()
    ))
    .bind(status)
    .bind(now)
    .bind(device_id)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    for d in &deps {
        refresh_deployment(tx, d, now).await?;
    }
    if !deps.is_empty() {
        feed_in(tx, dialect, FEED_DEPLOYMENTS, device_id).await?;
    }
    Ok(())
}

/// Revokes every token of a device, and tells every replica's token cache in the same
/// transaction.
async fn revoke_device_tokens(
    tx: &mut Transaction<'static, Any>,
    dialect: Dialect,
    device_id: &str,
) -> StoreResult<()> {
    sqlx::query("DELETE FROM tokens WHERE kind = 'device' AND subject = $1")
        .bind(device_id)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    feed_in(tx, dialect, FEED_REVOKED, device_id).await
}

/// Stamps a device changed at `now` (`updated_ts`), what the dynamic sweep looks for.
async fn touch_device(
    tx: &mut Transaction<'static, Any>,
    device_id: &str,
    now: i64,
) -> StoreResult<()> {
    sqlx::query("UPDATE devices SET updated_ts = $1 WHERE id = $2")
        .bind(now)
        .bind(device_id)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// Appends a feed row from the store inside a change's transaction: the other replicas learn
/// of the change exactly when it commits, and never of one rolled back.
async fn feed_in(
    tx: &mut Transaction<'static, Any>,
    dialect: Dialect,
    kind: &str,
    body: &str,
) -> StoreResult<()> {
    insert_feed(tx, dialect, (kind, "store", body), crate::time::now_us()).await
}

/// Writes one feed row `(kind, origin, body)` at `ts`, and wakes the followers at commit.
async fn insert_feed(
    tx: &mut Transaction<'static, Any>,
    dialect: Dialect,
    (kind, origin, body): (&str, &str, &str),
    ts: i64,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO feed (ts, kind, origin, body) VALUES ($1, $2, $3, $4)")
        .bind(ts)
        .bind(kind)
        .bind(origin)
        .bind(body)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    if let Some(notify) = dialect.notify_feed() {
        sqlx::query(notify).execute(&mut **tx).await.map_err(db)?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqlStore {
    async fn migrate(&self) -> StoreResult<()> {
        let migrator = match self.dialect {
            Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Backend(format!("migrating the database: {e}")))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn create_user(&self, u: &UserRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, created_ts, updated_ts) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&u.id)
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(u.created_ts)
        .bind(u.updated_ts)
        .execute(&self.pool)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(_) => StoreError::Rule("user with the same email already exists".into()),
            other => other,
        })?;
        Ok(())
    }

    async fn user(&self, id: &str) -> StoreResult<Option<UserRow>> {
        let r = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.as_ref().map(user_from_row))
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRow>> {
        let r = sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.as_ref().map(user_from_row))
    }

    async fn users(&self) -> StoreResult<Vec<UserRow>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY created_ts, id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.iter().map(user_from_row).collect())
    }

    async fn update_user(&self, u: &UserRow) -> StoreResult<()> {
        let r = sqlx::query(
            "UPDATE users SET email = $1, password_hash = $2, updated_ts = $3, login_ts = $4 WHERE id = $5",
        )
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(u.updated_ts)
        .bind(u.login_ts)
        .bind(&u.id)
        .execute(&self.pool)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(_) => StoreError::Rule("user with the same email already exists".into()),
            other => other,
        })?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound("user not found".into()));
        }
        Ok(())
    }

    async fn delete_user(&self, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM tokens WHERE subject = $1 AND kind IN ('session','pat')")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let n = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(n > 0)
    }

    async fn insert_token(
        &self,
        t: &TokenRow,
        keep_sessions: u64,
        max_pats: u64,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        if t.kind == TokenKind::Pat {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM tokens WHERE subject = $1 AND kind = 'pat'",
            )
            .bind(&t.subject)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            if count(n) >= max_pats {
                return Err(StoreError::Rule(format!(
                    "maximum number of personal access tokens ({max_pats}) reached"
                )));
            }
        }
        sqlx::query(
            "INSERT INTO tokens (jti, kind, subject, name, created_ts, expires_ts) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&t.jti)
        .bind(t.kind.as_str())
        .bind(&t.subject)
        .bind(&t.name)
        .bind(t.created_ts)
        .bind(t.expires_ts)
        .execute(&mut *tx)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(_) => StoreError::Conflict("Personal Access Token with a given name already exists".into()),
            other => other,
        })?;
        if t.kind == TokenKind::Session {
            sqlx::query(
                "DELETE FROM tokens WHERE kind = 'session' AND subject = $1 AND jti NOT IN \
                 (SELECT jti FROM tokens WHERE kind = 'session' AND subject = $2 ORDER BY created_ts DESC LIMIT $3)",
            )
            .bind(&t.subject)
            .bind(&t.subject)
            .bind(as_i64(keep_sessions))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        if t.kind == TokenKind::Device {
            sqlx::query(
                "DELETE FROM tokens WHERE kind = 'device' AND subject = $1 AND jti NOT IN \
                 (SELECT jti FROM tokens WHERE kind = 'device' AND subject = $2 ORDER BY created_ts DESC LIMIT $3)",
            )
            .bind(&t.subject)
            .bind(&t.subject)
            .bind(as_i64(token_rules::DEVICE_TOKENS_KEPT))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn use_token(&self, jti: &str, now: i64) -> StoreResult<Option<TokenRow>> {
        let r = sqlx::query("SELECT * FROM tokens WHERE jti = $1")
            .bind(jti)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let Some(t) = r.as_ref().map(token_from_row) else {
            return Ok(None);
        };
        if !token_rules::honoured(t.expires_ts, now) {
            return Ok(None);
        }
        if t.kind == TokenKind::Pat && token_rules::record_pat_use(t.last_used, now) {
            sqlx::query("UPDATE tokens SET last_used = $1 WHERE jti = $2")
                .bind(now)
                .bind(jti)
                .execute(&self.pool)
                .await
                .map_err(db)?;
        }
        Ok(Some(t))
    }

    async fn delete_token(&self, jti: &str, subject: Option<&str>) -> StoreResult<bool> {
        let n = sqlx::query("DELETE FROM tokens WHERE jti = $1 AND ($2 IS NULL OR subject = $3)")
            .bind(jti)
            .bind(subject)
            .bind(subject)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected();
        Ok(n > 0)
    }

    async fn revoke_tokens_of(
        &self,
        subject: &str,
        kinds: &[TokenKind],
        keep: Option<&str>,
    ) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let mut n = 0;
        for kind in kinds {
            n += sqlx::query(
                "DELETE FROM tokens WHERE subject = $1 AND kind = $2 AND ($3 IS NULL OR jti <> $4)",
            )
            .bind(subject)
            .bind(kind.as_str())
            .bind(keep)
            .bind(keep)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        }
        tx.commit().await.map_err(db)?;
        Ok(n)
    }

    async fn pats(&self, user_id: &str) -> StoreResult<Vec<TokenRow>> {
        let rows = sqlx::query(
            "SELECT * FROM tokens WHERE subject = $1 AND kind = 'pat' ORDER BY created_ts",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(token_from_row).collect())
    }

    async fn admission_footprint(
        &self,
        hash: &str,
        pubkey: &str,
    ) -> StoreResult<AdmissionFootprint> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT COUNT(a.id), CAST(COALESCE(SUM(CASE WHEN a.pubkey = $1 THEN 1 ELSE 0 END), 0) AS BIGINT) FROM devices d \
             LEFT JOIN auth_sets a ON a.device_id = d.id WHERE d.identity_hash = $2 GROUP BY d.id",
        )
        .bind(pubkey)
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.map_or_else(AdmissionFootprint::default, |(n, known)| {
            AdmissionFootprint {
                device_exists: true,
                key_known: known > 0,
                auth_sets: u64::try_from(n).unwrap_or(0),
            }
        }))
    }

    async fn auth_request(
        &self,
        hash: &str,
        identity: &Value,
        pubkey: &str,
        now: i64,
    ) -> StoreResult<AuthOutcome> {
        let mut tx = self.begin().await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM devices WHERE identity_hash = $1")
                .bind(hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let device_id = if let Some(id) = existing {
            id
        } else {
            let id = uuid::Uuid::new_v4().to_string();
            sqlx::query(
                "INSERT INTO devices (id, identity_hash, identity_json, status, created_ts, updated_ts) \
                 VALUES ($1, $2, $3, 'pending', $4, $5)",
            )
            .bind(&id)
            .bind(hash)
            .bind(json_text(identity))
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            id
        };
        let set: Option<(String, String)> =
            sqlx::query_as("SELECT id, status FROM auth_sets WHERE device_id = $1 AND pubkey = $2")
                .bind(&device_id)
                .bind(pubkey)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let (status, changed) = match admission::on_request(set.as_ref().map(|(_, st)| st.as_str()))
        {
            admission::OnRequest::Accept(effects) => {
                let aid = set.as_ref().map(|(id, _)| id.clone()).unwrap_or_default();
                apply_effects(&mut tx, self.dialect, &device_id, effects).await?;
                sqlx::query("UPDATE auth_sets SET status = 'accepted' WHERE id = $1")
                    .bind(&aid)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                refresh_device_status(&mut tx, &device_id, now).await?;
                ("accepted".to_owned(), true)
            }
            admission::OnRequest::Unchanged => (set.map(|(_, st)| st).unwrap_or_default(), false),
            admission::OnRequest::AddPending => {
                sqlx::query("INSERT INTO auth_sets (id, device_id, pubkey, status, ts) VALUES ($1, $2, $3, 'pending', $4)")
                    .bind(uuid::Uuid::new_v4().to_string())
                    .bind(&device_id)
                    .bind(pubkey)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                refresh_device_status(&mut tx, &device_id, now).await?;
                ("pending".to_owned(), true)
            }
        };
        tx.commit().await.map_err(db)?;
        Ok(AuthOutcome {
            device_id,
            status,
            changed,
        })
    }

    async fn preauthorize(
        &self,
        hash: &str,
        identity: &Value,
        pubkey: &str,
        force: bool,
        now: i64,
    ) -> StoreResult<Result<String, String>> {
        let mut tx = self.begin().await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM devices WHERE identity_hash = $1")
                .bind(hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let device_id = match existing {
            Some(id) if !force => return Ok(Err(id)),
            Some(id) => id,
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                sqlx::query(
                    "INSERT INTO devices (id, identity_hash, identity_json, status, created_ts, updated_ts) \
                     VALUES ($1, $2, $3, 'preauthorized', $4, $5)",
                )
                .bind(&id)
                .bind(hash)
                .bind(json_text(identity))
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                id
            }
        };
        sqlx::query(
            "INSERT INTO auth_sets (id, device_id, pubkey, status, ts) VALUES ($1, $2, $3, 'preauthorized', $4) \
             ON CONFLICT (device_id, pubkey) DO UPDATE SET status = CASE WHEN auth_sets.status = 'accepted' THEN auth_sets.status ELSE 'preauthorized' END",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(&device_id)
        .bind(pubkey)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        refresh_device_status(&mut tx, &device_id, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(Ok(device_id))
    }

    async fn device(&self, id: &str) -> StoreResult<Option<DeviceRow>> {
        let rows = sqlx::query("SELECT * FROM devices WHERE id = $1")
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(self.load_devices(rows).await?.pop())
    }

    async fn devices(
        &self,
        status: Option<&[String]>,
        ids: &[String],
        page: u64,
        per_page: u64,
    ) -> StoreResult<Vec<DeviceRow>> {
        let mut qb = Qb::new("SELECT * FROM devices WHERE 1 = 1");
        if let Some(st) = status {
            qb.push(" AND status IN ").push_list(st.iter().cloned());
        }
        if !ids.is_empty() {
            qb.push(" AND id IN ").push_list(ids.iter().cloned());
        }
        let (limit, offset) = limits(page, per_page);
        qb.push(" ORDER BY created_ts, id LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(offset);
        let rows = qb.build()?.fetch_all(&self.pool).await.map_err(db)?;
        self.load_devices(rows).await
    }

    async fn count_devices(&self, st: Option<&str>) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE $1 IS NULL OR status = $2")
                .bind(st)
                .bind(st)
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
        Ok(count(n))
    }

    async fn device_counts(&self) -> StoreResult<BTreeMap<String, u64>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM devices GROUP BY status")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        Ok(rows.into_iter().map(|(s, n)| (s, count(n))).collect())
    }

    async fn set_auth_status(
        &self,
        device_id: &str,
        auth_id: &str,
        new: &str,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let set: Option<(String, String)> =
            sqlx::query_as("SELECT device_id, status FROM auth_sets WHERE id = $1")
                .bind(auth_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let device_exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM devices WHERE id = $1")
                .bind(device_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if device_exists.is_none() {
            return Err(StoreError::NotFound("device not found".into()));
        }
        let Some((owner, current)) = set else {
            return Err(StoreError::NotFound("authentication set not found".into()));
        };
        if owner != device_id {
            return Err(StoreError::Invalid(
                "the authentication set belongs to another device".into(),
            ));
        }
        let effects = match admission::set_status(&current, new) {
            Ok(Some(effects)) => effects,
            Ok(None) => return Ok(()),
            Err(refusal) => return Err(StoreError::Invalid(refusal.to_string())),
        };
        apply_effects(&mut tx, self.dialect, device_id, effects).await?;
        sqlx::query("UPDATE auth_sets SET status = $1 WHERE id = $2")
            .bind(new)
            .bind(auth_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        refresh_device_status(&mut tx, device_id, now).await?;
        tx.commit().await.map_err(db)
    }

    async fn delete_auth_set(&self, device_id: &str, auth_id: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let st: Option<String> =
            sqlx::query_scalar("SELECT status FROM auth_sets WHERE id = $1 AND device_id = $2")
                .bind(auth_id)
                .bind(device_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let Some(st) = st else {
            return Err(StoreError::NotFound("authentication set not found".into()));
        };
        sqlx::query("DELETE FROM auth_sets WHERE id = $1")
            .bind(auth_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        apply_effects(&mut tx, self.dialect, device_id, admission::on_delete(&st)).await?;
        refresh_device_status(&mut tx, device_id, now).await?;
        tx.commit().await.map_err(db)
    }

    async fn decommission(&self, device_id: &str, now: i64) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        end_open_for_device(
            &mut tx,
            self.dialect,
            device_id,
            status::DECOMMISSIONED,
            now,
        )
        .await?;
        revoke_device_tokens(&mut tx, self.dialect, device_id).await?;
        let n = sqlx::query("DELETE FROM devices WHERE id = $1")
            .bind(device_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(n > 0)
    }

    async fn check_in(&self, device_id: &str, now: i64) -> StoreResult<()> {
        // Written at most every few seconds per device: polls stay reads.
        sqlx::query("UPDATE devices SET check_in_time = $1 WHERE id = $2 AND (check_in_time IS NULL OR check_in_time < $3)")
            .bind(now)
            .bind(device_id)
            .bind(now - token_rules::CHECK_IN_INTERVAL_US)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn check_in_many(&self, seen: &[(String, i64)]) -> StoreResult<()> {
        if seen.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for (device_id, at) in seen {
            sqlx::query(
                "UPDATE devices SET check_in_time = $1 WHERE id = $2 \
                 AND (check_in_time IS NULL OR check_in_time < $1)",
            )
            .bind(*at)
            .bind(device_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn put_inventory(
        &self,
        device_id: &str,
        attrs: &[(String, Value)],
        replace: bool,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // The device row first: concurrent writers of one inventory queue here, so each
        // rewrites `inventory_json` from rows it can see (PostgreSQL; SQLite has one writer).
        sqlx::query(&format!(
            "SELECT id FROM devices WHERE id = $1{}",
            self.dialect.for_update()
        ))
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if replace {
            sqlx::query("DELETE FROM attributes WHERE device_id = $1 AND scope = 'inventory'")
                .bind(device_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        for (name, value) in attrs {
            sqlx::query(
                "INSERT INTO attributes (device_id, scope, name, value_json, ts) VALUES ($1, 'inventory', $2, $3, $4) \
                 ON CONFLICT (device_id, scope, name) DO UPDATE SET value_json = excluded.value_json, ts = excluded.ts",
            )
            .bind(device_id)
            .bind(name)
            .bind(json_text(value))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        sqlx::query(&format!(
            "UPDATE devices SET inventory_ts = $1, check_in_time = $2, inventory_json = {} WHERE id = $3",
            self.dialect.inventory_json("devices.id")
        ))
        .bind(now)
        .bind(now)
        .bind(device_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn clear_inventory(&self, device_id: &str, now: i64) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE devices SET inventory_ts = $1, inventory_json = '[]' WHERE id = $2",
        )
        .bind(now)
        .bind(device_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        sqlx::query("DELETE FROM attributes WHERE device_id = $1 AND scope = 'inventory'")
            .bind(device_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(n > 0)
    }

    async fn attributes(&self, device_id: &str) -> StoreResult<Vec<AttrRow>> {
        let rows =
            sqlx::query("SELECT * FROM attributes WHERE device_id = $1 ORDER BY scope, name")
                .bind(device_id)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        Ok(rows.iter().map(attr_from_row).collect())
    }

    async fn put_tags(
        &self,
        device_id: &str,
        tags: &[(String, String, Option<String>)],
        replace: bool,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if exists.is_none() {
            return Err(StoreError::NotFound("device not found".into()));
        }
        if replace {
            sqlx::query("DELETE FROM attributes WHERE device_id = $1 AND scope = 'tags'")
                .bind(device_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        for (name, value, description) in tags {
            sqlx::query(
                "INSERT INTO attributes (device_id, scope, name, value_json, description, ts) VALUES ($1, 'tags', $2, $3, $4, $5) \
                 ON CONFLICT (device_id, scope, name) DO UPDATE SET value_json = excluded.value_json, \
                 description = excluded.description, ts = excluded.ts",
            )
            .bind(device_id)
            .bind(name)
            .bind(json_text(value))
            .bind(description)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        touch_device(&mut tx, device_id, now).await?;
        tx.commit().await.map_err(db)
    }

    async fn search_inventory(&self, q: &InventoryQuery) -> StoreResult<(Vec<String>, u64)> {
        let build = |qb: &mut Qb| -> StoreResult<()> {
            // First: it is the cheap test that leaves most of a large fleet out.
            if let Some(since) = q.changed_since {
                qb.push(" AND (d.updated_ts >= ")
                    .push_bind(since)
                    .push(" OR d.inventory_ts >= ")
                    .push_bind(since)
                    .push(")");
            }
            for f in &q.filters {
                push_filter(qb, self.dialect, f)?;
            }
            if !q.ids.is_empty() {
                qb.push(" AND d.id IN ").push_list(q.ids.iter().cloned());
            }
            if let Some(g) = &q.group {
                qb.push(" AND d.group_name = ").push_bind(g.clone());
            }
            if let Some(dep) = &q.not_in_deployment {
                qb.push(" AND NOT EXISTS (SELECT 1 FROM device_deployments dd WHERE dd.deployment_id = ")
                    .push_bind(dep.clone())
                    .push(" AND dd.device_id = d.id)");
            }
            match q.has_group {
                Some(true) => {
                    qb.push(" AND d.group_name IS NOT NULL");
                }
                Some(false) => {
                    qb.push(" AND d.group_name IS NULL");
                }
                None => {}
            }
            if let Some(t) = q.text.as_deref().filter(|t| !t.is_empty()) {
                let like = format!("%{}%", t.replace(['%', '_'], "").to_lowercase());
                qb.push(" AND (LOWER(d.identity_json) LIKE ")
                    .push_bind(like.clone())
                    .push(" OR EXISTS (SELECT 1 FROM attributes a WHERE a.device_id = d.id AND LOWER(a.value_json) LIKE ")
                    .push_bind(like)
                    .push("))");
            }
            Ok(())
        };
        let push_order = |qb: &mut Qb| {
            if let Some((scope, attr, desc)) = &q.sort {
                let dir = if *desc { "DESC" } else { "ASC" };
                match (scope.as_str(), attr.as_str()) {
                    ("system", "created_ts") => qb.push(format!("d.created_ts {dir}")),
                    ("system", "updated_ts") => qb.push(format!("COALESCE(d.inventory_ts, d.updated_ts) {dir}")),
                    ("system", "check_in_time") => qb.push(format!("d.check_in_time {dir}")),
                    ("system", "group") => qb.push(format!("d.group_name {dir}")),
                    ("identity", "status") => qb.push(format!("d.status {dir}")),
                    ("identity", a) => {
                        match self.dialect {
                            Dialect::Sqlite => qb
                                .push("json_extract(d.identity_json, ")
                                .push_bind(json_path(a))
                                .push(")"),
                            Dialect::Postgres => qb
                                .push("(d.identity_json::jsonb -> ")
                                .push_bind(a.to_owned())
                                .push(")"),
                        };
                        qb.push(format!(" {dir}"))
                    }
                    (s, a) => qb
                        .push("(SELECT a.value_json FROM attributes a WHERE a.device_id = d.id AND a.scope = ")
                        .push_bind(s.to_owned())
                        .push(" AND a.name = ")
                        .push_bind(a.to_owned())
                        .push(format!(") {dir}")),
                };
                qb.push(", d.id");
            } else {
                qb.push("d.created_ts, d.id");
            }
        };
        if q.page == 0 {
            // Every match: one row holding them all (a row costs the driver more than its
            // bytes; a million ids came in seconds one row each), no count.
            let mut qb = Qb::new(match self.dialect {
                Dialect::Sqlite => "SELECT json_group_array(d.id ORDER BY ",
                Dialect::Postgres => "SELECT COALESCE(json_agg(d.id ORDER BY ",
            });
            push_order(&mut qb);
            qb.push(match self.dialect {
                Dialect::Sqlite => ") FROM devices d WHERE 1 = 1",
                Dialect::Postgres => ")::text, '[]') FROM devices d WHERE 1 = 1",
            });
            build(&mut qb)?;
            let text: String = qb.build_scalar()?.fetch_one(&self.pool).await.map_err(db)?;
            let ids: Vec<String> = serde_json::from_str(&text)
                .map_err(|e| StoreError::Backend(format!("device ids are not readable: {e}")))?;
            let total = u64::try_from(ids.len()).unwrap_or(u64::MAX);
            return Ok((ids, total));
        }
        let mut cq = Qb::new("SELECT COUNT(*) FROM devices d WHERE 1 = 1");
        build(&mut cq)?;
        let total: i64 = cq.build_scalar()?.fetch_one(&self.pool).await.map_err(db)?;

        let mut qb = Qb::new("SELECT d.id FROM devices d WHERE 1 = 1");
        build(&mut qb)?;
        qb.push(" ORDER BY ");
        push_order(&mut qb);
        let (limit, offset) = limits(q.page, q.per_page);
        qb.push(" LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(offset);
        let ids: Vec<String> = qb.build_scalar()?.fetch_all(&self.pool).await.map_err(db)?;
        Ok((ids, count(total)))
    }

    async fn set_group(&self, device_id: &str, group: Option<&str>, now: i64) -> StoreResult<bool> {
        let n = sqlx::query("UPDATE devices SET group_name = $1, updated_ts = $2 WHERE id = $3")
            .bind(group)
            .bind(now)
            .bind(device_id)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected();
        Ok(n > 0)
    }

    async fn add_to_group(&self, group: &str, ids: &[String], now: i64) -> StoreResult<(u64, u64)> {
        let mut tx = self.begin().await?;
        let (mut updated, mut matched) = (0, 0);
        for id in ids {
            let cur: Option<Option<String>> =
                sqlx::query_scalar("SELECT group_name FROM devices WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            if let Some(cur) = cur {
                matched += 1;
                if cur.as_deref() != Some(group) {
                    updated += 1;
                    sqlx::query(
                        "UPDATE devices SET group_name = $1, updated_ts = $2 WHERE id = $3",
                    )
                    .bind(group)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
            }
        }
        tx.commit().await.map_err(db)?;
        Ok((updated, matched))
    }

    async fn remove_from_group(
        &self,
        group: &str,
        ids: Option<&[String]>,
        now: i64,
    ) -> StoreResult<u64> {
        let mut qb = Qb::new("UPDATE devices SET group_name = NULL, updated_ts = ");
        qb.push_bind(now)
            .push(" WHERE group_name = ")
            .push_bind(group.to_owned());
        if let Some(ids) = ids {
            if ids.is_empty() {
                return Ok(0);
            }
            qb.push(" AND id IN ").push_list(ids.iter().cloned());
        }
        let n = qb
            .build()?
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected();
        Ok(n)
    }

    async fn groups(&self, accepted_only: bool) -> StoreResult<Vec<String>> {
        let sql = if accepted_only {
            "SELECT DISTINCT group_name FROM devices WHERE group_name IS NOT NULL AND status = 'accepted' ORDER BY 1"
        } else {
            "SELECT DISTINCT group_name FROM devices WHERE group_name IS NOT NULL ORDER BY 1"
        };
        sqlx::query_scalar(sql)
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    async fn insert_artifact(&self, a: &ArtifactRow) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO artifacts (id, name, description, device_types_json, depends_json, provides_json, \
             clears_json, updates_json, format_version, signed, size, sha256, modified) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&a.id)
        .bind(&a.name)
        .bind(&a.description)
        .bind(json_text(&a.device_types))
        .bind(json_text(&a.depends))
        .bind(json_text(&a.provides))
        .bind(json_text(&a.clears))
        .bind(json_text(&a.updates))
        .bind(i64::from(a.format_version))
        .bind(i64::from(a.signed))
        .bind(as_i64(a.size))
        .bind(&a.sha256)
        .bind(a.modified)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let key = crate::domain::artifacts::conflict_key(&a.depends);
        for dt in &a.device_types {
            sqlx::query("INSERT INTO artifact_device_types (artifact_id, name, device_type, depends_key) VALUES ($1, $2, $3, $4)")
                .bind(&a.id)
                .bind(&a.name)
                .bind(dt)
                .bind(&key)
                .execute(&mut *tx)
                .await
                .map_err(|e| match db(e) {
                    StoreError::Conflict(_) => StoreError::Conflict(dt.clone()),
                    other => other,
                })?;
        }
        tx.commit().await.map_err(db)
    }

    async fn artifact(&self, id: &str) -> StoreResult<Option<ArtifactRow>> {
        let r = sqlx::query("SELECT * FROM artifacts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.as_ref().map(artifact_from_row))
    }

    async fn artifacts(&self, q: &ArtifactQuery) -> StoreResult<(Vec<ArtifactRow>, u64)> {
        let build = |qb: &mut Qb| {
            if let Some(n) = &q.name {
                qb.push(" AND name = ").push_bind(n.clone());
            }
            if let Some(d) = &q.description {
                qb.push(" AND LOWER(description) LIKE ")
                    .push_bind(format!("%{}%", d.replace(['%', '_'], "").to_lowercase()));
            }
            if let Some(t) = &q.device_type {
                qb.push(" AND id IN (SELECT artifact_id FROM artifact_device_types WHERE device_type = ")
                    .push_bind(t.clone())
                    .push(")");
            }
        };
        let mut cq = Qb::new("SELECT COUNT(*) FROM artifacts WHERE 1 = 1");
        build(&mut cq);
        let total: i64 = cq.build_scalar()?.fetch_one(&self.pool).await.map_err(db)?;
        let mut qb = Qb::new("SELECT * FROM artifacts WHERE 1 = 1");
        build(&mut qb);
        let col = if q.sort.0 == "modified" {
            "modified"
        } else {
            "name"
        };
        let dir = if q.sort.1 { "DESC" } else { "ASC" };
        qb.push(format!(" ORDER BY {col} {dir}, id"));
        let (limit, offset) = limits(q.page, q.per_page);
        qb.push(" LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(offset);
        let rows = qb.build()?.fetch_all(&self.pool).await.map_err(db)?;
        Ok((rows.iter().map(artifact_from_row).collect(), count(total)))
    }

    async fn set_artifact_description(&self, id: &str, description: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let used: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM device_deployments WHERE artifact_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        if used > 0 {
            return Err(StoreError::Rule(
                "the artifact has been used in a deployment".into(),
            ));
        }
        let n = sqlx::query("UPDATE artifacts SET description = $1 WHERE id = $2")
            .bind(description)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("artifact not found".into()));
        }
        tx.commit().await.map_err(db)
    }

    async fn delete_artifact(&self, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let Some(a) = sqlx::query("SELECT * FROM artifacts WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .as_ref()
            .map(artifact_from_row)
        else {
            return Err(StoreError::NotFound("artifact not found".into()));
        };
        // Used by an active deployment: assigned to a device that has not finished, or the
        // release of an unfinished deployment whose devices may still pick it.
        let active: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM device_deployments dd JOIN deployments d ON d.id = dd.deployment_id \
             WHERE d.status <> 'finished' AND (dd.artifact_id = $1 OR d.artifact_name = $2)",
        )
        .bind(id)
        .bind(&a.name)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if active > 0 {
            return Err(StoreError::Conflict(
                "Artifact is used in active deployment".into(),
            ));
        }
        sqlx::query("DELETE FROM artifacts WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let shared: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM artifacts WHERE sha256 = $1")
            .bind(&a.sha256)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(shared > 0)
    }

    async fn blob_in_use(&self, sha256: &str) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM artifacts WHERE sha256 = $1")
            .bind(sha256)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(n > 0)
    }

    async fn release_exists(&self, name: &str) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM artifacts WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(n > 0)
    }

    async fn insert_saved_filter(&self, f: &SavedFilterRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO saved_filters (id, name, terms_json, created) VALUES ($1, $2, $3, $4)",
        )
        .bind(&f.id)
        .bind(&f.name)
        .bind(&f.terms)
        .bind(f.created)
        .execute(&self.pool)
        .await
        .map_err(|e| match db(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("a dynamic group named {:?} exists", f.name))
            }
            other => other,
        })?;
        Ok(())
    }

    async fn saved_filters(&self) -> StoreResult<Vec<SavedFilterRow>> {
        let rows = sqlx::query("SELECT * FROM saved_filters ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.iter().map(saved_filter_from_row).collect())
    }

    async fn saved_filter(&self, id: &str) -> StoreResult<Option<SavedFilterRow>> {
        let r = sqlx::query("SELECT * FROM saved_filters WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.as_ref().map(saved_filter_from_row))
    }

    async fn delete_saved_filter(&self, id: &str) -> StoreResult<bool> {
        let n = sqlx::query("DELETE FROM saved_filters WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected();
        Ok(n > 0)
    }

    async fn create_deployment(
        &self,
        d: &DeploymentRow,
        devices: &[String],
        phases: &[u32],
        fingerprint: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let dup: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM deployments WHERE fingerprint = $1 AND status <> 'finished'",
        )
        .bind(fingerprint)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if dup > 0 {
            return Err(StoreError::Conflict(
                "a deployment with the same parameters is already in progress".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO deployments (id, name, artifact_name, created, status, groups_json, force_installation, all_devices, fingerprint, rollout, rollout_state, retries, filter_json, max_devices) \
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&d.id)
        .bind(&d.name)
        .bind(&d.artifact_name)
        .bind(d.created)
        .bind(json_text(&d.groups))
        .bind(i64::from(d.force_installation))
        .bind(i64::from(d.all_devices))
        .bind(fingerprint)
        .bind(d.rollout.as_deref())
        .bind(d.rollout_state.as_deref())
        .bind(i64::from(d.retries))
        .bind(d.filter.as_deref())
        .bind(d.max_devices.map(|m| i64::try_from(m).unwrap_or(i64::MAX)))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        for (i, dev) in devices.iter().enumerate() {
            sqlx::query(
                "INSERT INTO device_deployments (id, deployment_id, device_id, status, created, phase) VALUES ($1, $2, $3, 'pending', $4, $5) \
                 ON CONFLICT (deployment_id, device_id) DO NOTHING",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&d.id)
            .bind(dev)
            .bind(d.created)
            .bind(i64::from(phases.get(i).copied().unwrap_or(0)))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        feed_in(&mut tx, self.dialect, FEED_DEPLOYMENTS, &d.id).await?;
        tx.commit().await.map_err(db)
    }

    async fn set_rollout_state(&self, id: &str, expected: &str, new: &str) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE deployments SET rollout_state = $1 WHERE id = $2 AND rollout_state = $3",
        )
        .bind(new)
        .bind(id)
        .bind(expected)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if n > 0 {
            feed_in(&mut tx, self.dialect, FEED_DEPLOYMENTS, id).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(n > 0)
    }

    async fn phase_counts(&self, id: &str) -> StoreResult<Vec<super::PhaseCount>> {
        // Grouped in the order of `device_deployments_phases`: read from the index alone, no
        // sort (the rollout job counts every active rollout every tick).
        let rows = sqlx::query(
            "SELECT phase, status, COUNT(*) AS n, COUNT(started) AS handed \
             FROM device_deployments WHERE deployment_id = $1 GROUP BY phase, status ORDER BY phase, status",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len() * 2);
        for r in &rows {
            let phase = u32::try_from(r.get::<i64, _>("phase")).unwrap_or(u32::MAX);
            let status: String = r.get("status");
            let (n, handed) = (count(r.get("n")), count(r.get("handed")));
            for (started, count) in [(false, n.saturating_sub(handed)), (true, handed)] {
                if count > 0 {
                    out.push(super::PhaseCount {
                        phase,
                        status: status.clone(),
                        started,
                        count,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn started_since(&self, id: &str, since: i64) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM device_deployments WHERE deployment_id = $1 AND started >= $2",
        )
        .bind(id)
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(count(n))
    }

    async fn rollout_health(&self, id: &str) -> StoreResult<Vec<super::HealthRow>> {
        let rows = sqlx::query(
            "SELECT dd.status, dd.finished, d.check_in_time, \
             CASE WHEN a.value_json = '\"failing\"' THEN 1 ELSE 0 END AS failing, \
             b.value_json AS boots, b.ts AS boots_ts, t.value_json AS booted_at \
             FROM device_deployments dd JOIN devices d ON d.id = dd.device_id \
             LEFT JOIN attributes a ON a.device_id = dd.device_id AND a.scope = 'inventory' AND a.name = 'aloft.health' \
             LEFT JOIN attributes b ON b.device_id = dd.device_id AND b.scope = 'inventory' AND b.name = 'aloft.boots_since_update' \
             LEFT JOIN attributes t ON t.device_id = dd.device_id AND t.scope = 'inventory' AND t.name = 'aloft.booted_at' \
             WHERE dd.deployment_id = $1 AND dd.status IN ('success', 'pending', 'downloading', 'pause_before_installing')",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| super::HealthRow {
                status: r.get("status"),
                finished: r.get("finished"),
                check_in_time: r.get("check_in_time"),
                failing: r.get::<i64, _>("failing") != 0,
                boots: crate::domain::health::Boots {
                    since_update: json_number(r.get("boots")),
                    since_update_at: r.get("boots_ts"),
                    booted_at: json_number(r.get("booted_at")),
                },
            })
            .collect())
    }

    async fn add_health_sample(&self, id: &str, x: &super::HealthSample) -> StoreResult<()> {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO health_samples (deployment_id, ts, updated_devices, updated_failing, \
             updated_offline, updated_rebooted, control_devices, control_failing, control_offline, \
             control_rebooted) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (deployment_id, ts) DO UPDATE SET \
             updated_devices = excluded.updated_devices, updated_failing = excluded.updated_failing, \
             updated_offline = excluded.updated_offline, updated_rebooted = excluded.updated_rebooted, \
             control_devices = excluded.control_devices, control_failing = excluded.control_failing, \
             control_offline = excluded.control_offline, control_rebooted = excluded.control_rebooted",
        )
        .bind(id)
        .bind(x.ts)
        .bind(n(x.updated.devices))
        .bind(n(x.updated.failing))
        .bind(n(x.updated.offline))
        .bind(n(x.updated.rebooted))
        .bind(n(x.control.devices))
        .bind(n(x.control.failing))
        .bind(n(x.control.offline))
        .bind(n(x.control.rebooted))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn health_samples(&self, id: &str, limit: u64) -> StoreResult<Vec<super::HealthSample>> {
        let rows = sqlx::query(
            "SELECT * FROM health_samples WHERE deployment_id = $1 ORDER BY ts DESC LIMIT $2",
        )
        .bind(id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut out: Vec<super::HealthSample> = rows
            .iter()
            .map(|r| {
                let cohort = |of: &str| crate::domain::health::Cohort {
                    devices: count(r.get::<i64, _>(format!("{of}_devices").as_str())),
                    failing: count(r.get::<i64, _>(format!("{of}_failing").as_str())),
                    offline: count(r.get::<i64, _>(format!("{of}_offline").as_str())),
                    rebooted: count(r.get::<i64, _>(format!("{of}_rebooted").as_str())),
                };
                super::HealthSample {
                    ts: r.get("ts"),
                    updated: cohort("updated"),
                    control: cohort("control"),
                }
            })
            .collect();
        out.reverse();
        Ok(out)
    }

    async fn active_rollouts(&self) -> StoreResult<Vec<DeploymentRow>> {
        let rows = sqlx::query(
            "SELECT * FROM deployments WHERE rollout IS NOT NULL AND status <> 'finished' ORDER BY created, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(deployment_from_row).collect())
    }

    async fn active_dynamic(&self) -> StoreResult<Vec<DeploymentRow>> {
        let rows = sqlx::query(
            "SELECT * FROM deployments WHERE filter_json IS NOT NULL AND status <> 'finished' ORDER BY created, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(deployment_from_row).collect())
    }

    async fn join_deployment(
        &self,
        id: &str,
        devices: &[(String, u32)],
        now: i64,
    ) -> StoreResult<Vec<String>> {
        let mut tx = self.begin().await?;
        let Some(row) = sqlx::query(&format!(
            "SELECT * FROM deployments WHERE id = $1{}",
            self.dialect.for_update()
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .map(|r| deployment_from_row(&r)) else {
            return Ok(Vec::new());
        };
        if row.status == "finished" {
            return Ok(Vec::new());
        }
        let members = row.members();
        let mut total: u64 = count(
            sqlx::query_scalar("SELECT COUNT(*) FROM device_deployments WHERE deployment_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?,
        );
        let mut joined = Vec::new();
        for (dev, phase) in devices {
            if !members.may_join(total) {
                break;
            }
            let n = sqlx::query(
                "INSERT INTO device_deployments (id, deployment_id, device_id, status, created, phase) VALUES ($1, $2, $3, 'pending', $4, $5) \
                 ON CONFLICT (deployment_id, device_id) DO NOTHING",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(id)
            .bind(dev)
            .bind(now)
            .bind(i64::from(*phase))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            if n > 0 {
                total += 1;
                joined.push(dev.clone());
            }
        }
        if joined.is_empty() {
            return Ok(joined);
        }
        refresh_deployment(&mut tx, id, now).await?;
        feed_in(&mut tx, self.dialect, FEED_DEPLOYMENTS, id).await?;
        tx.commit().await.map_err(db)?;
        Ok(joined)
    }

    async fn switch(&self, name: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM switches WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn set_switch(&self, name: &str, value: Option<&str>, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        match value {
            Some(v) => sqlx::query(
                "INSERT INTO switches (name, value, updated) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated = excluded.updated",
            )
            .bind(name)
            .bind(v)
            .bind(now),
            None => sqlx::query("DELETE FROM switches WHERE name = $1").bind(name),
        }
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        feed_in(&mut tx, self.dialect, FEED_DEPLOYMENTS, name).await?;
        tx.commit().await.map_err(db)
    }

    async fn deployment(&self, id: &str) -> StoreResult<Option<DeploymentRow>> {
        let r = sqlx::query("SELECT * FROM deployments WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.as_ref().map(deployment_from_row))
    }

    async fn deployments(&self, q: &DeploymentQuery) -> StoreResult<(Vec<DeploymentRow>, u64)> {
        let build = |qb: &mut Qb| {
            match q.status.as_deref() {
                Some("aborted") => {
                    qb.push(" AND status = 'finished' AND EXISTS (SELECT 1 FROM device_deployments dd WHERE dd.deployment_id = deployments.id AND dd.status = 'aborted')");
                }
                Some(s) => {
                    qb.push(" AND status = ").push_bind(s.to_owned());
                }
                None => {}
            }
            if let Some(s) = q.search.as_deref().filter(|s| !s.is_empty()) {
                let like = format!("%{}%", s.replace(['%', '_'], "").to_lowercase());
                qb.push(" AND (LOWER(name) LIKE ")
                    .push_bind(like.clone())
                    .push(" OR LOWER(artifact_name) LIKE ")
                    .push_bind(like)
                    .push(")");
            }
            if let Some(b) = q.created_before {
                qb.push(" AND created <= ").push_bind(b);
            }
            if let Some(a) = q.created_after {
                qb.push(" AND created >= ").push_bind(a);
            }
        };
        let mut cq = Qb::new("SELECT COUNT(*) FROM deployments WHERE 1 = 1");
        build(&mut cq);
        let total: i64 = cq.build_scalar()?.fetch_one(&self.pool).await.map_err(db)?;
        let mut qb = Qb::new("SELECT * FROM deployments WHERE 1 = 1");
        build(&mut qb);
        qb.push(if q.ascending {
            " ORDER BY created ASC, id"
        } else {
            " ORDER BY created DESC, id"
        });
        let (limit, offset) = limits(q.page, q.per_page);
        qb.push(" LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(offset);
        let rows = qb.build()?.fetch_all(&self.pool).await.map_err(db)?;
        Ok((rows.iter().map(deployment_from_row).collect(), count(total)))
    }

    async fn deployment_stats(&self, id: &str) -> StoreResult<DeploymentStats> {
        let mut all = self.deployment_stats_of(&[id.to_owned()]).await?;
        Ok(all.remove(id).unwrap_or_else(empty_stats))
    }

    async fn deployment_stats_of(
        &self,
        ids: &[String],
    ) -> StoreResult<BTreeMap<String, DeploymentStats>> {
        let mut out: BTreeMap<String, DeploymentStats> =
            ids.iter().map(|id| (id.clone(), empty_stats())).collect();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut q = Qb::new(
            "SELECT deployment_id, status, COUNT(*) AS n, \
             CAST(COALESCE(SUM(CASE WHEN started IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT) AS started \
             FROM device_deployments WHERE deployment_id IN ",
        );
        q.push_list(ids.iter().cloned())
            .push(" GROUP BY deployment_id, status");
        for r in q.build()?.fetch_all(&self.pool).await.map_err(db)? {
            let dep: String = r.try_get("deployment_id").map_err(db)?;
            let st: String = r.try_get("status").map_err(db)?;
            let n = count(r.try_get("n").map_err(db)?);
            if let Some(s) = out.get_mut(&dep) {
                s.max_devices += n;
                s.device_count += count(r.try_get("started").map_err(db)?);
                *s.by_status.entry(st).or_default() += n;
            }
        }
        let mut q = Qb::new(
            "SELECT DISTINCT dd.deployment_id, a.id, a.size FROM device_deployments dd \
             JOIN artifacts a ON a.id = dd.artifact_id WHERE dd.deployment_id IN ",
        );
        q.push_list(ids.iter().cloned()).push(" ORDER BY a.id");
        for r in q.build()?.fetch_all(&self.pool).await.map_err(db)? {
            let dep: String = r.try_get("deployment_id").map_err(db)?;
            if let Some(s) = out.get_mut(&dep) {
                s.artifacts.push(r.try_get("id").map_err(db)?);
                s.total_size += count(r.try_get("size").map_err(db)?);
            }
        }
        Ok(out)
    }

    async fn inventory_of(&self, ids: &[String]) -> StoreResult<Vec<(DeviceRow, Vec<AttrRow>)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let devices = self.devices(None, ids, 0, 0).await?;
        let mut q = Qb::new("SELECT * FROM attributes WHERE device_id IN ");
        q.push_list(ids.iter().cloned())
            .push(" ORDER BY scope, name");
        let mut attrs: BTreeMap<String, Vec<AttrRow>> = BTreeMap::new();
        for r in q.build()?.fetch_all(&self.pool).await.map_err(db)? {
            attrs
                .entry(r.try_get("device_id").map_err(db)?)
                .or_default()
                .push(attr_from_row(&r));
        }
        let mut by_id: BTreeMap<String, DeviceRow> =
            devices.into_iter().map(|d| (d.id.clone(), d)).collect();
        Ok(ids
            .iter()
            .filter_map(|id| {
                let d = by_id.remove(id)?;
                let a = attrs.remove(id).unwrap_or_default();
                Some((d, a))
            })
            .collect())
    }

    async fn inventories(&self, ids: &[String]) -> StoreResult<Vec<Inventory>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = Qb::new(format!(
            "SELECT {} FROM devices d WHERE d.id",
            self.dialect.inventories_json()
        ));
        self.dialect.push_in_texts(&mut q, ids);
        let text: String = q.build_scalar()?.fetch_one(&self.pool).await.map_err(db)?;
        let rows: Vec<StoredInventory> = serde_json::from_str(&text)
            .map_err(|e| StoreError::Backend(format!("inventories are not readable: {e}")))?;
        let mut by_id: HashMap<String, Inventory> = HashMap::with_capacity(rows.len());
        for (id, created_ts, attrs) in rows {
            let attrs = attrs
                .into_iter()
                .map(|(name, value, description, ts)| AttrRow {
                    scope: "inventory".into(),
                    name,
                    value: serde_json::from_str(&value).unwrap_or(Value::Null),
                    description,
                    ts,
                })
                .collect();
            by_id.insert(
                id.clone(),
                Inventory {
                    id,
                    created_ts,
                    attrs,
                },
            );
        }
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    async fn deployment_counts(&self) -> StoreResult<BTreeMap<String, u64>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM deployments GROUP BY status")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        Ok(rows.into_iter().map(|(s, n)| (s, count(n))).collect())
    }

    async fn abort_deployment(&self, id: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let st = lock_deployment(&mut tx, self.dialect, id).await?;
        match st.as_deref() {
            None => return Err(StoreError::NotFound("deployment not found".into())),
            Some("finished") => return Err(StoreError::Rule("Deployment already finished".into())),
            Some(_) => {}
        }
        sqlx::query(concat!(
            "UPDATE device_deployments SET status = 'aborted', finished = $1 \
             WHERE deployment_id = $2 AND status NOT IN ",
            final_statuses!()
        ))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("UPDATE deployments SET status = 'finished', finished = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        feed_in(&mut tx, self.dialect, FEED_DEPLOYMENTS, id).await?;
        tx.commit().await.map_err(db)
    }

    async fn abort_device(&self, device_id: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        end_open_for_device(&mut tx, self.dialect, device_id, status::ABORTED, now).await?;
        tx.commit().await.map_err(db)
    }

    async fn delete_device_history(&self, device_id: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(concat!(
            "DELETE FROM device_deployments WHERE device_id = $1 AND status IN ",
            final_statuses!()
        ))
        .bind(device_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        // A change the dynamic sweep looks at: the device may match a running deployment anew.
        touch_device(&mut tx, device_id, now).await?;
        tx.commit().await.map_err(db)
    }

    async fn device_deployments(
        &self,
        deployment_id: &str,
        st: Option<&str>,
        page: u64,
        per_page: u64,
    ) -> StoreResult<(Vec<DeviceDeploymentRow>, u64)> {
        let of = ("deployment_id", deployment_id, "created, device_id");
        self.device_deployment_page(of, st, page, per_page).await
    }

    async fn device_history(
        &self,
        device_id: &str,
        st: Option<&str>,
        page: u64,
        per_page: u64,
    ) -> StoreResult<(Vec<DeviceDeploymentRow>, u64)> {
        let of = ("device_id", device_id, "created DESC, id");
        self.device_deployment_page(of, st, page, per_page).await
    }

    async fn open_device_deployments(
        &self,
        device_id: &str,
    ) -> StoreResult<Vec<DeviceDeploymentRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {DD_COLUMNS} FROM device_deployments WHERE device_id = $1 AND status NOT IN {} \
             ORDER BY created, id",
            final_statuses!()
        ))
        .bind(device_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(dd_from_row).collect())
    }

    async fn artifacts_for(&self, name: &str, device_type: &str) -> StoreResult<Vec<ArtifactRow>> {
        let rows = sqlx::query(
            "SELECT a.* FROM artifacts a JOIN artifact_device_types t ON t.artifact_id = a.id \
             WHERE a.name = $1 AND t.device_type = $2 ORDER BY a.modified DESC",
        )
        .bind(name)
        .bind(device_type)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(artifact_from_row).collect())
    }

    async fn fleet_releases(
        &self,
        device_type: &str,
        limit: usize,
    ) -> StoreResult<Vec<(String, u64)>> {
        let rows = sqlx::query(
            "SELECT a.value_json AS release, CAST(COUNT(*) AS BIGINT) AS devices FROM attributes a \
             JOIN attributes t ON t.device_id = a.device_id AND t.scope = 'inventory' AND t.name = 'device_type' \
             WHERE a.scope = 'inventory' AND a.name = 'artifact_name' AND t.value_json = $1 \
             GROUP BY a.value_json ORDER BY devices DESC, release LIMIT $2",
        )
        .bind(json_text(&device_type))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let text: String = r.try_get("release").ok()?;
                let name: String = serde_json::from_str(&text).ok()?;
                let n: i64 = r.try_get("devices").ok()?;
                Some((name, u64::try_from(n).unwrap_or(0)))
            })
            .collect())
    }

    async fn assign(
        &self,
        dd_id: &str,
        artifact_id: Option<&str>,
        final_status: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let dep: Option<String> =
            sqlx::query_scalar("SELECT deployment_id FROM device_deployments WHERE id = $1")
                .bind(dd_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let Some(dep) = dep else {
            return Err(StoreError::NotFound("device deployment not found".into()));
        };
        lock_deployment(&mut tx, self.dialect, &dep).await?;
        sqlx::query(
            "UPDATE device_deployments SET artifact_id = COALESCE($1, artifact_id), started = COALESCE(started, $2), \
             status = COALESCE($3, status), finished = CASE WHEN $4 IS NULL THEN finished ELSE $5 END WHERE id = $6",
        )
        .bind(artifact_id)
        .bind(now)
        .bind(final_status)
        .bind(final_status)
        .bind(now)
        .bind(dd_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        refresh_deployment(&mut tx, &dep, now).await?;
        tx.commit().await.map_err(db)
    }

    async fn report_status(
        &self,
        deployment_id: &str,
        device_id: &str,
        new: &str,
        substate: Option<&str>,
        now: i64,
    ) -> StoreResult<StatusOutcome> {
        let mut tx = self.begin().await?;
        lock_deployment(&mut tx, self.dialect, deployment_id).await?;
        let cur = sqlx::query(
            "SELECT dd.status, dd.retried, dd.artifact_id, d.retries FROM device_deployments dd \
             JOIN deployments d ON d.id = dd.deployment_id WHERE dd.deployment_id = $1 AND dd.device_id = $2",
        )
        .bind(deployment_id)
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(cur) = cur else {
            return Err(StoreError::NotFound(
                "deployment not found for this device".into(),
            ));
        };
        let attempts = rules::Attempts {
            retried: u32::try_from(cur.try_get::<i64, _>("retried").map_err(db)?)
                .unwrap_or(u32::MAX),
            retries: u32::try_from(cur.try_get::<i64, _>("retries").map_err(db)?).unwrap_or(0),
            handed_out: cur
                .try_get::<Option<String>, _>("artifact_id")
                .map_err(db)?
                .is_some(),
        };
        let current: String = cur.try_get("status").map_err(db)?;
        // A retry goes back to pending with no artifact: the next poll chooses again, through
        // the rollout's gates. The failure's text stays as the substate, its log stays.
        let (status, finished, outcome, sql) = match rules::on_report(&current, new, attempts) {
            rules::Report::Record { finished } => (
                new,
                finished.then_some(now),
                StatusOutcome::Recorded,
                "UPDATE device_deployments SET status = $1, substate = $2, finished = $3, started = COALESCE(started, $4) \
                 WHERE deployment_id = $5 AND device_id = $6",
            ),
            rules::Report::Retry => (
                status::PENDING,
                None,
                StatusOutcome::Retried,
                "UPDATE device_deployments SET status = $1, substate = $2, finished = $3, started = COALESCE(started, $4), \
                 artifact_id = NULL, retried = retried + 1 WHERE deployment_id = $5 AND device_id = $6",
            ),
            rules::Report::Repeat => return Ok(StatusOutcome::Recorded),
            rules::Report::Stop => return Ok(StatusOutcome::Aborted),
            rules::Report::Refuse(why) => return Err(StoreError::Rule(why)),
        };
        sqlx::query(sql)
            .bind(status)
            .bind(substate)
            .bind(finished)
            .bind(now)
            .bind(deployment_id)
            .bind(device_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        refresh_deployment(&mut tx, deployment_id, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(outcome)
    }

    async fn put_log(&self, deployment_id: &str, device_id: &str, log: &str) -> StoreResult<()> {
        let n = sqlx::query(
            "UPDATE device_deployments SET log = $1 WHERE deployment_id = $2 AND device_id = $3",
        )
        .bind(log)
        .bind(deployment_id)
        .bind(device_id)
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(
                "deployment not found for this device".into(),
            ));
        }
        Ok(())
    }

    async fn log(&self, deployment_id: &str, device_id: &str) -> StoreResult<Option<String>> {
        let r: Option<Option<String>> = sqlx::query_scalar(
            "SELECT log FROM device_deployments WHERE deployment_id = $1 AND device_id = $2",
        )
        .bind(deployment_id)
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.flatten())
    }

    async fn feed_append(&self, kind: &str, origin: &str, body: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_feed(&mut tx, self.dialect, (kind, origin, body), now).await?;
        tx.commit().await.map_err(db)
    }

    async fn feed_since(&self, since: i64, limit: u64) -> StoreResult<Vec<FeedRow>> {
        let rows = sqlx::query(
            "SELECT id, ts, kind, origin, body FROM feed WHERE ts >= $1 ORDER BY ts, id LIMIT $2",
        )
        .bind(since)
        .bind(as_i64(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(FeedRow {
                    id: r.try_get("id").map_err(db)?,
                    ts: r.try_get("ts").map_err(db)?,
                    kind: r.try_get("kind").map_err(db)?,
                    origin: r.try_get("origin").map_err(db)?,
                    body: r.try_get("body").map_err(db)?,
                })
            })
            .collect()
    }

    async fn feed_prune(&self, before: i64) -> StoreResult<u64> {
        let n = sqlx::query("DELETE FROM feed WHERE ts < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected();
        Ok(n)
    }

    async fn claim_job(&self, name: &str, holder: &str, now: i64, lease: i64) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO jobs (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        // One UPDATE decides: on PostgreSQL the row lock makes a second claimant re-read the
        // moved lease and match nothing.
        let won: Option<String> = sqlx::query_scalar(
            "UPDATE jobs SET holder = $1, lease_until = $2 WHERE name = $3 AND lease_until <= $4 \
             RETURNING name",
        )
        .bind(holder)
        .bind(now.saturating_add(lease))
        .bind(name)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(won.is_some())
    }

    async fn cluster_value(
        &self,
        name: &str,
        value: &str,
        now: i64,
        stale_before: i64,
    ) -> StoreResult<String> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO cluster (name, value, updated) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated = excluded.updated \
             WHERE cluster.value = excluded.value OR cluster.updated < $4",
        )
        .bind(name)
        .bind(value)
        .bind(now)
        .bind(stale_before)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let stored: String = sqlx::query_scalar("SELECT value FROM cluster WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(stored)
    }
}

fn json_path(attr: &str) -> String {
    format!("$.\"{}\"", attr.replace('"', ""))
}

/// One inventory filter as SQL over `devices d`.
fn push_filter(qb: &mut Qb, dialect: Dialect, f: &super::Filter) -> StoreResult<()> {
    let op = f.op.as_str();
    let values: Vec<Value> = match (&f.value, op) {
        (Value::Array(items), "$in" | "$nin") => items.clone(),
        (_, "$in" | "$nin") => return Err(StoreError::Invalid(format!("{op} needs a list value"))),
        (v, _) => vec![v.clone()],
    };
    match f.scope.as_str() {
        "inventory" | "identity" | "system" | "tags" | "monitor" => {}
        s => return Err(StoreError::Invalid(format!("unknown scope {s:?}"))),
    }
    // The attribute, as JSON text, for each scope (NULL when the device lacks it).
    let attr = |qb: &mut Qb| match (f.scope.as_str(), f.attribute.as_str()) {
        ("identity", "status") => {
            qb.push(dialect.json_quote("d.status"));
        }
        ("identity", a) => dialect.push_json_member(qb, "d.identity_json", a),
        ("system", "group") => {
            qb.push(dialect.json_quote("d.group_name"));
        }
        (s, a) => {
            qb.push(
                "(SELECT a.value_json FROM attributes a WHERE a.device_id = d.id AND a.scope = ",
            )
            .push_bind(s.to_owned())
            .push(" AND a.name = ")
            .push_bind(a.to_owned())
            .push(")");
        }
    };
    match op {
        "$exists" => {
            let want = f.value.as_bool().unwrap_or(true);
            qb.push(" AND (");
            attr(qb);
            qb.push(if want { " IS NOT NULL)" } else { " IS NULL)" });
        }
        "$eq" | "$in" | "$ne" | "$nin" => {
            let negate = matches!(op, "$ne" | "$nin");
            // A missing attribute is "not equal": NOT COALESCE(NULL, FALSE) holds.
            qb.push(if negate {
                " AND NOT COALESCE(("
            } else {
                " AND (("
            });
            let mut first = true;
            for v in &values {
                let text = serde_json::to_string(v).unwrap_or_default();
                if !first {
                    qb.push(" OR ");
                }
                first = false;
                // A scalar equals the value, or a list holds it.
                qb.push("(");
                attr(qb);
                qb.push(" = ").push_bind(text.clone()).push(" OR ");
                dialect.push_json_array_holds(qb, &attr, &text);
                qb.push(")");
            }
            if first {
                qb.push("1 = 0");
            }
            qb.push(if negate { "), 1 = 0)" } else { "))" });
        }
        "$gt" | "$gte" | "$lt" | "$lte" => {
            let sym = match op {
                "$gt" => ">",
                "$gte" => ">=",
                "$lt" => "<",
                _ => "<=",
            };
            qb.push(" AND ");
            match &f.value {
                Value::Number(n) => {
                    dialect.push_json_number(qb, &attr);
                    qb.push(format!(" {sym} "))
                        .push_bind(n.as_f64().unwrap_or(0.0));
                }
                Value::String(s) => {
                    dialect.push_json_string(qb, &attr);
                    qb.push(format!(" {sym} ")).push_bind(s.clone());
                }
                _ => {
                    return Err(StoreError::Invalid(format!(
                        "{op} needs a number or a string"
                    )));
                }
            }
        }
        other => {
            return Err(StoreError::Invalid(format!(
                "unknown filter type {other:?}"
            )));
        }
    }
    Ok(())
}
