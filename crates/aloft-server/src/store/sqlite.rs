//! The embedded store: `SQLite` in WAL mode through sqlx.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};

use super::{
    ArtifactQuery, ArtifactRow, AttrRow, AuthOutcome, AuthSetRow, DeploymentQuery, DeploymentRow,
    DeploymentStats, DeviceDeploymentRow, DeviceRow, InventoryQuery, StatusOutcome, Store,
    StoreError, StoreResult, TokenKind, TokenRow, UserRow,
};
use aloft_api::status;

/// The final device deployment statuses, as an SQL list (see `aloft_api::status::is_final`).
macro_rules! final_statuses {
    () => {
        "('success','failure','noartifact','already-installed','aborted','decommissioned')"
    };
}

/// SQLite-backed [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

#[expect(clippy::needless_pass_by_value, reason = "used as map_err(db)")]
fn db(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e
        && d.is_unique_violation()
    {
        return StoreError::Conflict(d.message().to_owned());
    }
    StoreError::Backend(e.to_string())
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
        (-1, 0)
    } else {
        (
            as_i64(per_page),
            as_i64((page - 1).saturating_mul(per_page)),
        )
    }
}

/// A device's status from its auth sets (Mender's rule).
fn derive_status(sets: &[&str]) -> &'static str {
    if sets.contains(&"accepted") {
        "accepted"
    } else if sets.contains(&"preauthorized") {
        "preauthorized"
    } else if sets.contains(&"pending") {
        "pending"
    } else if sets.is_empty() {
        "noauth"
    } else {
        "rejected"
    }
}

impl SqliteStore {
    /// Opens (creating) the database file.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // The journal mode belongs to the file: switch it to WAL once, on one connection,
        // before a pool's connections race to do it (a new file then answers "locked").
        {
            use sqlx::Connection as _;
            let first = sqlx::SqliteConnection::connect_with(&opts)
                .await
                .map_err(db)?;
            first.close().await.map_err(db)?;
        }
        Self::with_options(opts, 8).await
    }

    /// An in-memory database (tests).
    pub async fn memory() -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(db)?
            .foreign_keys(true);
        Self::with_options(opts, 1).await
    }

    async fn with_options(opts: SqliteConnectOptions, max: u32) -> StoreResult<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await
            .map_err(db)?;
        Ok(Self { pool })
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        // BEGIN IMMEDIATE takes the write lock at once, so two writers never deadlock on an
        // upgrade from read to write.
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)
    }

    async fn load_devices(&self, rows: Vec<SqliteRow>) -> StoreResult<Vec<DeviceRow>> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(device_from_row(&r));
        }
        if out.is_empty() {
            return Ok(out);
        }
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT device_id, id, pubkey, status, ts FROM auth_sets WHERE device_id IN (",
        );
        let mut sep = qb.separated(", ");
        for d in &out {
            sep.push_bind(d.id.clone());
        }
        qb.push(") ORDER BY ts, id");
        let sets = qb.build().fetch_all(&self.pool).await.map_err(db)?;
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

fn device_from_row(r: &SqliteRow) -> DeviceRow {
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

fn user_from_row(r: &SqliteRow) -> UserRow {
    UserRow {
        id: r.get("id"),
        email: r.get("email"),
        password_hash: r.get("password_hash"),
        created_ts: r.get("created_ts"),
        updated_ts: r.get("updated_ts"),
        login_ts: r.get("login_ts"),
    }
}

fn token_from_row(r: &SqliteRow) -> TokenRow {
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

fn artifact_from_row(r: &SqliteRow) -> ArtifactRow {
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

fn deployment_from_row(r: &SqliteRow) -> DeploymentRow {
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
    }
}

fn dd_from_row(r: &SqliteRow) -> DeviceDeploymentRow {
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
    }
}

const DD_COLUMNS: &str = "id, deployment_id, device_id, status, substate, created, started, \
                          finished, artifact_id, (log IS NOT NULL) AS has_log";

/// SQL for a status filter that may be a group name (`pause`, `active`, `finished`).
fn push_status_filter(qb: &mut QueryBuilder<'_, Sqlite>, status: &str) {
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
    qb.push(" AND status IN (");
    let mut sep = qb.separated(", ");
    for s in group {
        sep.push_bind(*s);
    }
    qb.push(")");
}

/// Recomputes a deployment's status after its device deployments changed.
async fn refresh_deployment(
    tx: &mut Transaction<'static, Sqlite>,
    deployment_id: &str,
    now: i64,
) -> StoreResult<()> {
    let row = sqlx::query(concat!(
        "SELECT COUNT(*) AS total, SUM(CASE WHEN status IN ",
        final_statuses!(),
        " THEN 1 ELSE 0 END) AS done, \
         SUM(CASE WHEN status <> 'pending' OR started IS NOT NULL THEN 1 ELSE 0 END) AS touched \
         FROM device_deployments WHERE deployment_id = ?",
    ))
    .bind(deployment_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(db)?;
    let total: i64 = row.get("total");
    let done: i64 = row.try_get("done").unwrap_or(0);
    let touched: i64 = row.try_get("touched").unwrap_or(0);
    let (st, fin) = if total > 0 && done == total {
        ("finished", Some(now))
    } else if touched > 0 {
        ("inprogress", None)
    } else {
        ("pending", None)
    };
    sqlx::query(
        "UPDATE deployments SET status = ?, finished = COALESCE(finished, ?) \
         WHERE id = ? AND status <> 'finished'",
    )
    .bind(st)
    .bind(fin)
    .bind(deployment_id)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

async fn refresh_device_status(
    tx: &mut Transaction<'static, Sqlite>,
    device_id: &str,
    now: i64,
) -> StoreResult<()> {
    let sets: Vec<String> = sqlx::query_scalar("SELECT status FROM auth_sets WHERE device_id = ?")
        .bind(device_id)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
    let refs: Vec<&str> = sets.iter().map(String::as_str).collect();
    sqlx::query("UPDATE devices SET status = ?, updated_ts = ? WHERE id = ?")
        .bind(derive_status(&refs))
        .bind(now)
        .bind(device_id)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// Ends every unfinished device deployment of a device with `status` and refreshes the
/// deployments concerned.
async fn end_open_for_device(
    tx: &mut Transaction<'static, Sqlite>,
    device_id: &str,
    status: &str,
    now: i64,
) -> StoreResult<()> {
    let deps: Vec<String> = sqlx::query_scalar(concat!(
        "SELECT deployment_id FROM device_deployments WHERE device_id = ? AND status NOT IN ",
        final_statuses!()
    ))
    .bind(device_id)
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?;
    sqlx::query(concat!(
        "UPDATE device_deployments SET status = ?, finished = ? WHERE device_id = ? AND status NOT IN ",
        final_statuses!()
    ))
    .bind(status)
    .bind(now)
    .bind(device_id)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    for d in deps {
        refresh_deployment(tx, &d, now).await?;
    }
    Ok(())
}

/// Revokes every token of a device.
async fn revoke_device_tokens(
    tx: &mut Transaction<'static, Sqlite>,
    device_id: &str,
) -> StoreResult<()> {
    sqlx::query("DELETE FROM tokens WHERE kind = 'device' AND subject = ?")
        .bind(device_id)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))
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
            "INSERT INTO users (id, email, password_hash, created_ts, updated_ts) VALUES (?, ?, ?, ?, ?)",
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
        let r = sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.as_ref().map(user_from_row))
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRow>> {
        let r = sqlx::query("SELECT * FROM users WHERE email = ?")
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
            "UPDATE users SET email = ?, password_hash = ?, updated_ts = ?, login_ts = ? WHERE id = ?",
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
        sqlx::query("DELETE FROM tokens WHERE subject = ? AND kind IN ('session','pat')")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let n = sqlx::query("DELETE FROM users WHERE id = ?")
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
                "SELECT COUNT(*) FROM tokens WHERE subject = ? AND kind = 'pat'",
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
            "INSERT INTO tokens (jti, kind, subject, name, created_ts, expires_ts) VALUES (?, ?, ?, ?, ?, ?)",
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
                "DELETE FROM tokens WHERE kind = 'session' AND subject = ? AND jti NOT IN \
                 (SELECT jti FROM tokens WHERE kind = 'session' AND subject = ? ORDER BY created_ts DESC LIMIT ?)",
            )
            .bind(&t.subject)
            .bind(&t.subject)
            .bind(as_i64(keep_sessions))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        if t.kind == TokenKind::Device {
            // A device keeps only its newest few tokens.
            sqlx::query(
                "DELETE FROM tokens WHERE kind = 'device' AND subject = ? AND jti NOT IN \
                 (SELECT jti FROM tokens WHERE kind = 'device' AND subject = ? ORDER BY created_ts DESC LIMIT 4)",
            )
            .bind(&t.subject)
            .bind(&t.subject)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn use_token(&self, jti: &str, now: i64) -> StoreResult<Option<TokenRow>> {
        let r = sqlx::query("SELECT * FROM tokens WHERE jti = ?")
            .bind(jti)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let Some(t) = r.as_ref().map(token_from_row) else {
            return Ok(None);
        };
        if t.expires_ts.is_some_and(|e| e <= now) {
            return Ok(None);
        }
        // Record PAT use at most once a minute, so polling tools do not turn reads into writes.
        if t.kind == TokenKind::Pat && t.last_used.is_none_or(|l| now - l > 60_000_000) {
            sqlx::query("UPDATE tokens SET last_used = ? WHERE jti = ?")
                .bind(now)
                .bind(jti)
                .execute(&self.pool)
                .await
                .map_err(db)?;
        }
        Ok(Some(t))
    }

    async fn delete_token(&self, jti: &str, subject: Option<&str>) -> StoreResult<bool> {
        let n = sqlx::query("DELETE FROM tokens WHERE jti = ? AND (? IS NULL OR subject = ?)")
            .bind(jti)
            .bind(subject)
            .bind(subject)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected();
        Ok(n > 0)
    }

    async fn pats(&self, user_id: &str) -> StoreResult<Vec<TokenRow>> {
        let rows = sqlx::query(
            "SELECT * FROM tokens WHERE subject = ? AND kind = 'pat' ORDER BY created_ts",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(token_from_row).collect())
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
            sqlx::query_scalar("SELECT id FROM devices WHERE identity_hash = ?")
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
                 VALUES (?, ?, ?, 'pending', ?, ?)",
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
            sqlx::query_as("SELECT id, status FROM auth_sets WHERE device_id = ? AND pubkey = ?")
                .bind(&device_id)
                .bind(pubkey)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let mut changed = false;
        let status = match set {
            Some((aid, st)) if st == "preauthorized" => {
                changed = true;
                sqlx::query("UPDATE auth_sets SET status = 'rejected' WHERE device_id = ? AND status = 'accepted'")
                    .bind(&device_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                sqlx::query("UPDATE auth_sets SET status = 'accepted' WHERE id = ?")
                    .bind(&aid)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                refresh_device_status(&mut tx, &device_id, now).await?;
                "accepted".to_owned()
            }
            Some((_, st)) => st,
            None => {
                sqlx::query("INSERT INTO auth_sets (id, device_id, pubkey, status, ts) VALUES (?, ?, ?, 'pending', ?)")
                    .bind(uuid::Uuid::new_v4().to_string())
                    .bind(&device_id)
                    .bind(pubkey)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                refresh_device_status(&mut tx, &device_id, now).await?;
                changed = true;
                "pending".to_owned()
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
            sqlx::query_scalar("SELECT id FROM devices WHERE identity_hash = ?")
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
                     VALUES (?, ?, ?, 'preauthorized', ?, ?)",
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
            "INSERT INTO auth_sets (id, device_id, pubkey, status, ts) VALUES (?, ?, ?, 'preauthorized', ?) \
             ON CONFLICT (device_id, pubkey) DO UPDATE SET status = CASE WHEN status = 'accepted' THEN status ELSE 'preauthorized' END",
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
        let rows = sqlx::query("SELECT * FROM devices WHERE id = ?")
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
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT * FROM devices WHERE 1 = 1");
        if let Some(st) = status {
            qb.push(" AND status IN (");
            let mut sep = qb.separated(", ");
            for s in st {
                sep.push_bind(s.clone());
            }
            qb.push(")");
        }
        if !ids.is_empty() {
            qb.push(" AND id IN (");
            let mut sep = qb.separated(", ");
            for s in ids {
                sep.push_bind(s.clone());
            }
            qb.push(")");
        }
        let (limit, offset) = limits(page, per_page);
        qb.push(" ORDER BY created_ts, id LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(offset);
        let rows = qb.build().fetch_all(&self.pool).await.map_err(db)?;
        self.load_devices(rows).await
    }

    async fn count_devices(&self, st: Option<&str>) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE ? IS NULL OR status = ?")
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
            sqlx::query_as("SELECT device_id, status FROM auth_sets WHERE id = ?")
                .bind(auth_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let device_exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM devices WHERE id = ?")
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
        if current == new {
            return Ok(());
        }
        if current == "preauthorized" {
            return Err(StoreError::Invalid(
                "a preauthorized set cannot change status by hand".into(),
            ));
        }
        if new == "accepted" {
            sqlx::query("UPDATE auth_sets SET status = 'rejected' WHERE device_id = ? AND status = 'accepted'")
                .bind(device_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query("UPDATE auth_sets SET status = ? WHERE id = ?")
            .bind(new)
            .bind(auth_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if current == "accepted" || new == "accepted" {
            // Whatever key the device used before, its tokens end here.
            revoke_device_tokens(&mut tx, device_id).await?;
        }
        refresh_device_status(&mut tx, device_id, now).await?;
        tx.commit().await.map_err(db)
    }

    async fn delete_auth_set(&self, device_id: &str, auth_id: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let st: Option<String> =
            sqlx::query_scalar("SELECT status FROM auth_sets WHERE id = ? AND device_id = ?")
                .bind(auth_id)
                .bind(device_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let Some(st) = st else {
            return Err(StoreError::NotFound("authentication set not found".into()));
        };
        sqlx::query("DELETE FROM auth_sets WHERE id = ?")
            .bind(auth_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if st == "accepted" {
            revoke_device_tokens(&mut tx, device_id).await?;
        }
        refresh_device_status(&mut tx, device_id, now).await?;
        tx.commit().await.map_err(db)
    }

    async fn decommission(&self, device_id: &str, now: i64) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        end_open_for_device(&mut tx, device_id, status::DECOMMISSIONED, now).await?;
        revoke_device_tokens(&mut tx, device_id).await?;
        let n = sqlx::query("DELETE FROM devices WHERE id = ?")
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
        sqlx::query("UPDATE devices SET check_in_time = ? WHERE id = ? AND (check_in_time IS NULL OR check_in_time < ?)")
            .bind(now)
            .bind(device_id)
            .bind(now - 5_000_000)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn put_inventory(
        &self,
        device_id: &str,
        attrs: &[(String, Value)],
        replace: bool,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        if replace {
            sqlx::query("DELETE FROM attributes WHERE device_id = ? AND scope = 'inventory'")
                .bind(device_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        for (name, value) in attrs {
            sqlx::query(
                "INSERT INTO attributes (device_id, scope, name, value_json, ts) VALUES (?, 'inventory', ?, ?, ?) \
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
        sqlx::query("UPDATE devices SET inventory_ts = ?, check_in_time = ? WHERE id = ?")
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
        let n = sqlx::query("UPDATE devices SET inventory_ts = ? WHERE id = ?")
            .bind(now)
            .bind(device_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        sqlx::query("DELETE FROM attributes WHERE device_id = ? AND scope = 'inventory'")
            .bind(device_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(n > 0)
    }

    async fn attributes(&self, device_id: &str) -> StoreResult<Vec<AttrRow>> {
        let rows = sqlx::query("SELECT * FROM attributes WHERE device_id = ? ORDER BY scope, name")
            .bind(device_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| AttrRow {
                scope: r.get("scope"),
                name: r.get("name"),
                value: serde_json::from_str(r.get::<&str, _>("value_json")).unwrap_or(Value::Null),
                description: r.get("description"),
                ts: r.get("ts"),
            })
            .collect())
    }

    async fn put_tags(
        &self,
        device_id: &str,
        tags: &[(String, String, Option<String>)],
        replace: bool,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM devices WHERE id = ?")
            .bind(device_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if exists.is_none() {
            return Err(StoreError::NotFound("device not found".into()));
        }
        if replace {
            sqlx::query("DELETE FROM attributes WHERE device_id = ? AND scope = 'tags'")
                .bind(device_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        for (name, value, description) in tags {
            sqlx::query(
                "INSERT INTO attributes (device_id, scope, name, value_json, description, ts) VALUES (?, 'tags', ?, ?, ?, ?) \
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
        tx.commit().await.map_err(db)
    }

    async fn search_inventory(&self, q: &InventoryQuery) -> StoreResult<(Vec<String>, u64)> {
        let build = |qb: &mut QueryBuilder<'_, Sqlite>| -> StoreResult<()> {
            for f in &q.filters {
                push_filter(qb, f)?;
            }
            if !q.ids.is_empty() {
                qb.push(" AND d.id IN (");
                let mut sep = qb.separated(", ");
                for s in &q.ids {
                    sep.push_bind(s.clone());
                }
                qb.push(")");
            }
            if let Some(g) = &q.group {
                qb.push(" AND d.group_name = ").push_bind(g.clone());
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
                let like = format!("%{}%", t.replace(['%', '_'], ""));
                qb.push(" AND (d.identity_json LIKE ")
                    .push_bind(like.clone())
                    .push(" OR EXISTS (SELECT 1 FROM attributes a WHERE a.device_id = d.id AND a.value_json LIKE ")
                    .push_bind(like)
                    .push("))");
            }
            Ok(())
        };
        let mut cq = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM devices d WHERE 1 = 1");
        build(&mut cq)?;
        let total: i64 = cq
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;

        let mut qb = QueryBuilder::<Sqlite>::new("SELECT d.id FROM devices d WHERE 1 = 1");
        build(&mut qb)?;
        qb.push(" ORDER BY ");
        if let Some((scope, attr, desc)) = &q.sort {
            let dir = if *desc { "DESC" } else { "ASC" };
            match (scope.as_str(), attr.as_str()) {
                ("system", "created_ts") => qb.push(format!("d.created_ts {dir}")),
                ("system", "updated_ts") => qb.push(format!("COALESCE(d.inventory_ts, d.updated_ts) {dir}")),
                ("system", "check_in_time") => qb.push(format!("d.check_in_time {dir}")),
                ("system", "group") => qb.push(format!("d.group_name {dir}")),
                ("identity", "status") => qb.push(format!("d.status {dir}")),
                ("identity", a) => qb
                    .push("json_extract(d.identity_json, ")
                    .push_bind(json_path(a))
                    .push(format!(") {dir}")),
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
        let (limit, offset) = limits(q.page, q.per_page);
        qb.push(" LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(offset);
        let ids: Vec<String> = qb
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok((ids, count(total)))
    }

    async fn set_group(&self, device_id: &str, group: Option<&str>, now: i64) -> StoreResult<bool> {
        let n = sqlx::query("UPDATE devices SET group_name = ?, updated_ts = ? WHERE id = ?")
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
                sqlx::query_scalar("SELECT group_name FROM devices WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            if let Some(cur) = cur {
                matched += 1;
                if cur.as_deref() != Some(group) {
                    updated += 1;
                    sqlx::query("UPDATE devices SET group_name = ?, updated_ts = ? WHERE id = ?")
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
        let mut qb =
            QueryBuilder::<Sqlite>::new("UPDATE devices SET group_name = NULL, updated_ts = ");
        qb.push_bind(now)
            .push(" WHERE group_name = ")
            .push_bind(group.to_owned());
        if let Some(ids) = ids {
            if ids.is_empty() {
                return Ok(0);
            }
            qb.push(" AND id IN (");
            let mut sep = qb.separated(", ");
            for id in ids {
                sep.push_bind(id.clone());
            }
            qb.push(")");
        }
        let n = qb
            .build()
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        // Depends other than device_type, canonical: two artifacts conflict when they share the
        // name, a device type and these.
        let mut rest = a.depends.clone();
        rest.remove("device_type");
        let key = json_text(&rest);
        for dt in &a.device_types {
            sqlx::query("INSERT INTO artifact_device_types (artifact_id, name, device_type, depends_key) VALUES (?, ?, ?, ?)")
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
        let r = sqlx::query("SELECT * FROM artifacts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.as_ref().map(artifact_from_row))
    }

    async fn artifacts(&self, q: &ArtifactQuery) -> StoreResult<(Vec<ArtifactRow>, u64)> {
        let build = |qb: &mut QueryBuilder<'_, Sqlite>| {
            if let Some(n) = &q.name {
                qb.push(" AND name = ").push_bind(n.clone());
            }
            if let Some(d) = &q.description {
                qb.push(" AND description LIKE ")
                    .push_bind(format!("%{}%", d.replace(['%', '_'], "")));
            }
            if let Some(t) = &q.device_type {
                qb.push(" AND id IN (SELECT artifact_id FROM artifact_device_types WHERE device_type = ")
                    .push_bind(t.clone())
                    .push(")");
            }
        };
        let mut cq = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM artifacts WHERE 1 = 1");
        build(&mut cq);
        let total: i64 = cq
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT * FROM artifacts WHERE 1 = 1");
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
        let rows = qb.build().fetch_all(&self.pool).await.map_err(db)?;
        Ok((rows.iter().map(artifact_from_row).collect(), count(total)))
    }

    async fn set_artifact_description(&self, id: &str, description: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let used: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM device_deployments WHERE artifact_id = ?")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        if used > 0 {
            return Err(StoreError::Rule(
                "the artifact has been used in a deployment".into(),
            ));
        }
        let n = sqlx::query("UPDATE artifacts SET description = ? WHERE id = ?")
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
        let Some(a) = sqlx::query("SELECT * FROM artifacts WHERE id = ?")
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
             WHERE d.status <> 'finished' AND (dd.artifact_id = ? OR d.artifact_name = ?)",
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
        sqlx::query("DELETE FROM artifacts WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let shared: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM artifacts WHERE sha256 = ?")
            .bind(&a.sha256)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(shared > 0)
    }

    async fn blob_in_use(&self, sha256: &str) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM artifacts WHERE sha256 = ?")
            .bind(sha256)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(n > 0)
    }

    async fn release_exists(&self, name: &str) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM artifacts WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(n > 0)
    }

    async fn create_deployment(
        &self,
        d: &DeploymentRow,
        devices: &[String],
        fingerprint: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let dup: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM deployments WHERE fingerprint = ? AND status <> 'finished'",
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
            "INSERT INTO deployments (id, name, artifact_name, created, status, groups_json, force_installation, all_devices, fingerprint) \
             VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
        )
        .bind(&d.id)
        .bind(&d.name)
        .bind(&d.artifact_name)
        .bind(d.created)
        .bind(json_text(&d.groups))
        .bind(i64::from(d.force_installation))
        .bind(i64::from(d.all_devices))
        .bind(fingerprint)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        for dev in devices {
            sqlx::query(
                "INSERT OR IGNORE INTO device_deployments (id, deployment_id, device_id, status, created) VALUES (?, ?, ?, 'pending', ?)",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&d.id)
            .bind(dev)
            .bind(d.created)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn deployment(&self, id: &str) -> StoreResult<Option<DeploymentRow>> {
        let r = sqlx::query("SELECT * FROM deployments WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.as_ref().map(deployment_from_row))
    }

    async fn deployments(&self, q: &DeploymentQuery) -> StoreResult<(Vec<DeploymentRow>, u64)> {
        let build = |qb: &mut QueryBuilder<'_, Sqlite>| {
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
                let like = format!("%{}%", s.replace(['%', '_'], ""));
                qb.push(" AND (name LIKE ")
                    .push_bind(like.clone())
                    .push(" OR artifact_name LIKE ")
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
        let mut cq = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM deployments WHERE 1 = 1");
        build(&mut cq);
        let total: i64 = cq
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT * FROM deployments WHERE 1 = 1");
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
        let rows = qb.build().fetch_all(&self.pool).await.map_err(db)?;
        Ok((rows.iter().map(deployment_from_row).collect(), count(total)))
    }

    async fn deployment_stats(&self, id: &str) -> StoreResult<DeploymentStats> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM device_deployments WHERE deployment_id = ? GROUP BY status")
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        let mut st = DeploymentStats::default();
        for s in status::ALL {
            st.by_status.insert(s.to_owned(), 0);
        }
        for (s, n) in rows {
            st.max_devices += count(n);
            *st.by_status.entry(s).or_default() += count(n);
        }
        let r = sqlx::query(
            "SELECT COUNT(*) AS n FROM device_deployments WHERE deployment_id = ? AND started IS NOT NULL",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        st.device_count = count(r.get("n"));
        let arts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT a.id, a.size FROM artifacts a WHERE a.id IN \
             (SELECT DISTINCT artifact_id FROM device_deployments WHERE deployment_id = ? AND artifact_id IS NOT NULL) ORDER BY a.id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        for (a, size) in arts {
            st.artifacts.push(a);
            st.total_size += count(size);
        }
        Ok(st)
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
        let st: Option<String> = sqlx::query_scalar("SELECT status FROM deployments WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        match st.as_deref() {
            None => return Err(StoreError::NotFound("deployment not found".into())),
            Some("finished") => return Err(StoreError::Rule("Deployment already finished".into())),
            Some(_) => {}
        }
        sqlx::query(concat!(
            "UPDATE device_deployments SET status = 'aborted', finished = ? \
             WHERE deployment_id = ? AND status NOT IN ",
            final_statuses!()
        ))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("UPDATE deployments SET status = 'finished', finished = ? WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn abort_device(&self, device_id: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        end_open_for_device(&mut tx, device_id, status::ABORTED, now).await?;
        tx.commit().await.map_err(db)
    }

    async fn delete_device_history(&self, device_id: &str) -> StoreResult<()> {
        sqlx::query(concat!(
            "DELETE FROM device_deployments WHERE device_id = ? AND status IN ",
            final_statuses!()
        ))
        .bind(device_id)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn device_deployments(
        &self,
        deployment_id: &str,
        st: Option<&str>,
        page: u64,
        per_page: u64,
    ) -> StoreResult<(Vec<DeviceDeploymentRow>, u64)> {
        let mut cq = QueryBuilder::<Sqlite>::new(
            "SELECT COUNT(*) FROM device_deployments WHERE deployment_id = ",
        );
        cq.push_bind(deployment_id.to_owned());
        if let Some(s) = st {
            push_status_filter(&mut cq, s);
        }
        let total: i64 = cq
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {DD_COLUMNS} FROM device_deployments WHERE deployment_id = "
        ));
        qb.push_bind(deployment_id.to_owned());
        if let Some(s) = st {
            push_status_filter(&mut qb, s);
        }
        qb.push(" ORDER BY created, device_id");
        let (limit, offset) = limits(page, per_page);
        qb.push(" LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(offset);
        let rows = qb.build().fetch_all(&self.pool).await.map_err(db)?;
        Ok((rows.iter().map(dd_from_row).collect(), count(total)))
    }

    async fn device_history(
        &self,
        device_id: &str,
        st: Option<&str>,
        page: u64,
        per_page: u64,
    ) -> StoreResult<(Vec<DeviceDeploymentRow>, u64)> {
        let mut cq = QueryBuilder::<Sqlite>::new(
            "SELECT COUNT(*) FROM device_deployments WHERE device_id = ",
        );
        cq.push_bind(device_id.to_owned());
        if let Some(s) = st {
            push_status_filter(&mut cq, s);
        }
        let total: i64 = cq
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {DD_COLUMNS} FROM device_deployments WHERE device_id = "
        ));
        qb.push_bind(device_id.to_owned());
        if let Some(s) = st {
            push_status_filter(&mut qb, s);
        }
        qb.push(" ORDER BY created DESC, id");
        let (limit, offset) = limits(page, per_page);
        qb.push(" LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(offset);
        let rows = qb.build().fetch_all(&self.pool).await.map_err(db)?;
        Ok((rows.iter().map(dd_from_row).collect(), count(total)))
    }

    async fn open_device_deployments(
        &self,
        device_id: &str,
    ) -> StoreResult<Vec<DeviceDeploymentRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {DD_COLUMNS} FROM device_deployments WHERE device_id = ? AND status NOT IN {} \
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
             WHERE a.name = ? AND t.device_type = ? ORDER BY a.modified DESC",
        )
        .bind(name)
        .bind(device_type)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(artifact_from_row).collect())
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
            sqlx::query_scalar("SELECT deployment_id FROM device_deployments WHERE id = ?")
                .bind(dd_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let Some(dep) = dep else {
            return Err(StoreError::NotFound("device deployment not found".into()));
        };
        sqlx::query(
            "UPDATE device_deployments SET artifact_id = COALESCE(?, artifact_id), started = COALESCE(started, ?), \
             status = COALESCE(?, status), finished = CASE WHEN ? IS NULL THEN finished ELSE ? END WHERE id = ?",
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
        let cur: Option<String> = sqlx::query_scalar(
            "SELECT status FROM device_deployments WHERE deployment_id = ? AND device_id = ?",
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
        if cur == status::ABORTED || cur == status::DECOMMISSIONED {
            return Ok(StatusOutcome::Aborted);
        }
        if status::is_final(&cur) {
            if cur == new {
                return Ok(StatusOutcome::Recorded);
            }
            return Err(StoreError::Rule(format!(
                "the deployment already ended with status {cur}"
            )));
        }
        let fin = status::is_final(new).then_some(now);
        sqlx::query(
            "UPDATE device_deployments SET status = ?, substate = ?, finished = ?, started = COALESCE(started, ?) \
             WHERE deployment_id = ? AND device_id = ?",
        )
        .bind(new)
        .bind(substate)
        .bind(fin)
        .bind(now)
        .bind(deployment_id)
        .bind(device_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        refresh_deployment(&mut tx, deployment_id, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(StatusOutcome::Recorded)
    }

    async fn put_log(&self, deployment_id: &str, device_id: &str, log: &str) -> StoreResult<()> {
        let n = sqlx::query(
            "UPDATE device_deployments SET log = ? WHERE deployment_id = ? AND device_id = ?",
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
            "SELECT log FROM device_deployments WHERE deployment_id = ? AND device_id = ?",
        )
        .bind(deployment_id)
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.flatten())
    }
}

fn json_path(attr: &str) -> String {
    format!("$.\"{}\"", attr.replace('"', ""))
}

/// One inventory filter as SQL over `devices d`.
fn push_filter(qb: &mut QueryBuilder<'_, Sqlite>, f: &super::Filter) -> StoreResult<()> {
    let op = f.op.as_str();
    let values: Vec<Value> = match (&f.value, op) {
        (Value::Array(items), "$in" | "$nin") => items.clone(),
        (_, "$in" | "$nin") => return Err(StoreError::Invalid(format!("{op} needs a list value"))),
        (v, _) => vec![v.clone()],
    };
    let exists_clause = |qb: &mut QueryBuilder<'_, Sqlite>| {
        // The attribute expression, as a JSON text value, for each scope.
        match (f.scope.as_str(), f.attribute.as_str()) {
            ("identity", "status") => {
                qb.push("json_quote(d.status)");
            }
            ("identity", a) => {
                qb.push("(SELECT json_quote(json_extract(d.identity_json, ")
                    .push_bind(json_path(a))
                    .push(")))");
            }
            ("system", "group") => {
                qb.push("json_quote(d.group_name)");
            }
            (s, a) => {
                qb.push("(SELECT a.value_json FROM attributes a WHERE a.device_id = d.id AND a.scope = ")
                    .push_bind(s.to_owned())
                    .push(" AND a.name = ")
                    .push_bind(a.to_owned())
                    .push(")");
            }
        }
    };
    match f.scope.as_str() {
        "inventory" | "identity" | "system" | "tags" | "monitor" => {}
        s => return Err(StoreError::Invalid(format!("unknown scope {s:?}"))),
    }
    match op {
        "$exists" => {
            let want = f.value.as_bool().unwrap_or(true);
            qb.push(" AND (");
            exists_clause(qb);
            qb.push(if want { " IS NOT NULL)" } else { " IS NULL)" });
        }
        "$eq" | "$in" | "$ne" | "$nin" => {
            let negate = matches!(op, "$ne" | "$nin");
            // A missing attribute is "not equal": NOT COALESCE(NULL, 0) holds.
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
                // A scalar equals the value, or a list contains it.
                qb.push("(");
                exists_clause(qb);
                qb.push(" = ")
                    .push_bind(text.clone())
                    .push(" OR EXISTS (SELECT 1 FROM json_each(");
                exists_clause(qb);
                qb.push(") j WHERE json_type(");
                exists_clause(qb);
                qb.push(") = 'array' AND json_quote(j.value) = ")
                    .push_bind(text)
                    .push("))");
            }
            if first {
                qb.push("0");
            }
            qb.push(if negate { "), 0)" } else { "))" });
        }
        "$gt" | "$gte" | "$lt" | "$lte" => {
            let sym = match op {
                "$gt" => ">",
                "$gte" => ">=",
                "$lt" => "<",
                _ => "<=",
            };
            qb.push(" AND json_extract(");
            exists_clause(qb);
            qb.push(", '$') ").push(sym).push(" ");
            match &f.value {
                Value::Number(n) => {
                    qb.push_bind(n.as_f64().unwrap_or(0.0));
                }
                Value::String(s) => {
                    qb.push_bind(s.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_status_follows_auth_sets() {
        assert_eq!(derive_status(&[]), "noauth");
        assert_eq!(derive_status(&["rejected", "pending"]), "pending");
        assert_eq!(derive_status(&["pending", "accepted"]), "accepted");
        assert_eq!(
            derive_status(&["preauthorized", "pending"]),
            "preauthorized"
        );
        assert_eq!(derive_status(&["rejected"]), "rejected");
    }
}
