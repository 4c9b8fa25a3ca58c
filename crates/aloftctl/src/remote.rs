//! `aloftctl login | devices | artifacts | deployments`: the operator's side of a server's
//! management API. Only Mender-compatible calls are used, so these commands also work against
//! a Mender server, except `deployments show --watch`, which follows aloft's live events.
//!
//! The login token is kept per server in `$ALOFT_CONFIG_DIR` (default
//! `$XDG_CONFIG_HOME/aloft`, else `~/.config/aloft`) as `credentials.json`, mode 0600.

use std::collections::BTreeMap;
use std::io::{BufRead as _, IsTerminal as _, Read, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aloft_api::event::Envelope;
use aloft_api::management::{
    Deployment, DeploymentPlan, DeploymentStatistics, Device, DeviceDeployment, DeviceInventory,
    PlannedOutcome,
};
use aloft_api::status::{DeploymentStatus, DeploymentSummary, Outcome};
use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cli::{
    ArtifactsCommand, DeploymentSpec, DeploymentsCommand, DevicesCommand, ServerArgs,
};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Credentials {
    current: Option<String>,
    servers: BTreeMap<String, Saved>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    user: String,
    token: String,
    ca_cert: Option<PathBuf>,
}

fn config_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("ALOFT_CONFIG_DIR") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("aloft"));
    }
    let home = std::env::var_os("HOME").ok_or_else(|| anyhow!("no HOME to keep the login in"))?;
    Ok(PathBuf::from(home).join(".config/aloft"))
}

fn load_credentials() -> Result<Credentials> {
    let path = config_dir()?.join("credentials.json");
    match std::fs::read(&path) {
        Ok(b) => {
            serde_json::from_slice(&b).with_context(|| format!("{} is damaged", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Credentials::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn save_credentials(c: &Credentials) -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let dir = config_dir()?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let path = dir.join("credentials.json");
    let tmp = dir.join(".credentials.json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(c)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

fn base_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("https://{url}")
    }
}

fn agent(ca_cert: Option<&Path>, body_timeout: Option<Duration>) -> Result<ureq::Agent> {
    let tls = aloft_device::fetch::tls_config(ca_cert)?;
    Ok(ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .user_agent(concat!("aloftctl/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_per_read(body_timeout)
        .build()
        .into())
}

/// The error text of an answer.
fn server_error(status: u16, body: &str) -> anyhow::Error {
    let text = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(300).collect());
    match status {
        401 => {
            anyhow!("the server refused the login token (401: {text}); run `aloftctl login` again")
        }
        _ => anyhow!("the server answered {status}: {text}"),
    }
}

/// `aloftctl login`.
pub(crate) fn login(
    server: &str,
    user: &str,
    password_stdin: bool,
    ca_cert: Option<PathBuf>,
) -> Result<()> {
    let base = base_url(server);
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else if let Ok(p) = std::env::var("ALOFT_PASSWORD") {
        p
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Password for {user} at {base}: "))?
    } else {
        bail!("no password: use --password-stdin or ALOFT_PASSWORD");
    };
    let ca_cert = ca_cert.map(|p| std::path::absolute(&p).unwrap_or(p));
    let agent = agent(ca_cert.as_deref(), Some(Duration::from_secs(120)))?;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut r = agent
        .post(format!("{base}/api/management/v1/useradm/auth/login"))
        .header("Authorization", format!("Basic {basic}"))
        .send_empty()
        .with_context(|| format!("cannot reach {base}"))?;
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string()?;
    if status != 200 {
        if status == 401 {
            bail!("wrong e-mail or password for {base}");
        }
        return Err(server_error(status, &body));
    }
    let mut creds = load_credentials()?;
    creds.servers.insert(
        base.clone(),
        Saved {
            user: user.to_owned(),
            token: body.trim().to_owned(),
            ca_cert,
        },
    );
    creds.current = Some(base.clone());
    let path = save_credentials(&creds)?;
    eprintln!(
        "logged in to {base} as {user} (token kept in {})",
        path.display()
    );
    Ok(())
}

/// `aloftctl logout`: revokes the token at the server (best effort) and forgets it.
pub(crate) fn logout(server: Option<&str>) -> Result<()> {
    let mut creds = load_credentials()?;
    let base = server
        .map(base_url)
        .or(creds.current.clone())
        .ok_or_else(|| anyhow!("not logged in"))?;
    let saved = creds
        .servers
        .remove(&base)
        .ok_or_else(|| anyhow!("not logged in to {base}"))?;
    let revoked = agent(saved.ca_cert.as_deref(), Some(Duration::from_secs(30)))
        .ok()
        .and_then(|a| {
            a.post(format!("{base}/api/management/v1/useradm/auth/logout"))
                .header("Authorization", format!("Bearer {}", saved.token))
                .send_empty()
                .ok()
        })
        .is_some_and(|r| r.status().is_success());
    if creds.current.as_deref() == Some(base.as_str()) {
        creds.current = creds.servers.keys().next().cloned();
    }
    save_credentials(&creds)?;
    if revoked {
        eprintln!("logged out of {base}");
    } else {
        eprintln!(
            "forgot the token of {base} (the server could not be told; it expires by itself)"
        );
    }
    Ok(())
}

/// A logged-in connection.
struct Remote {
    agent: ureq::Agent,
    base: String,
    token: String,
    ca_cert: Option<PathBuf>,
    json: bool,
}

impl Remote {
    fn open(args: &ServerArgs) -> Result<Self> {
        let creds = load_credentials()?;
        let base = args
            .server
            .as_deref()
            .map(base_url)
            .or(creds.current.clone())
            .ok_or_else(|| {
                anyhow!("not logged in: run `aloftctl login SERVER --user EMAIL` first")
            })?;
        let saved = creds.servers.get(&base).ok_or_else(|| {
            anyhow!("not logged in to {base}: run `aloftctl login {base} --user EMAIL`")
        })?;
        Ok(Self {
            agent: agent(saved.ca_cert.as_deref(), Some(Duration::from_secs(120)))?,
            base,
            token: saved.token.clone(),
            ca_cert: saved.ca_cert.clone(),
            json: args.json,
        })
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String, Option<String>)> {
        let url = format!("{}/api/management{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let sent = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            ("POST", Some(b)) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(b),
            ("PUT", Some(b)) => self
                .agent
                .put(&url)
                .header("Authorization", &auth)
                .send_json(b),
            _ => bail!("{method} needs a body"),
        };
        let mut r = sent.with_context(|| format!("cannot reach {}", self.base))?;
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = r.body_mut().read_to_string()?;
        if status >= 300 {
            return Err(server_error(status, &text));
        }
        Ok((status, text, location))
    }

    fn get(&self, path: &str) -> Result<Value> {
        self.get_as(path)
    }

    /// A GET whose answer is read into an `aloft-api` type.
    fn get_as<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let (_, text, _) = self.call("GET", path, None)?;
        serde_json::from_str(&text)
            .with_context(|| format!("the server's answer to GET {path} is not what aloft sends"))
    }

    /// A call with a JSON body whose answer is read into an `aloft-api` type.
    fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<T> {
        let (_, text, _) = self.call(method, path, Some(body))?;
        serde_json::from_str(&text).with_context(|| {
            format!("the server's answer to {method} {path} is not what aloft sends")
        })
    }

    fn print(
        &self,
        value: &impl serde::Serialize,
        table: impl FnOnce() -> Vec<Vec<String>>,
    ) -> Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer_pretty(&mut out, value)?;
            writeln!(out)?;
        } else {
            print_table(&mut out, &table())?;
        }
        Ok(())
    }

    fn done(&self, value: &Value, text: &str) -> Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer(&mut out, value)?;
        } else {
            write!(out, "{text}")?;
        }
        writeln!(out)?;
        Ok(())
    }
}

fn print_table(out: &mut impl std::io::Write, rows: &[Vec<String>]) -> Result<()> {
    if rows.len() <= 1 {
        writeln!(out, "(none)")?;
        return Ok(());
    }
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<w$}", w = widths[i]))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// `aloftctl devices ...`.
pub(crate) fn devices(args: &ServerArgs, command: DevicesCommand) -> Result<()> {
    let r = Remote::open(args)?;
    match command {
        DevicesCommand::List { status } => {
            let query = status.map_or_else(String::new, |s| format!("&status={s}"));
            let list: Vec<Device> =
                r.get_as(&format!("/v2/devauth/devices?per_page=500{query}"))?;
            r.print(&list, || {
                let mut rows = vec![vec![
                    "ID".into(),
                    "STATUS".into(),
                    "IDENTITY".into(),
                    "UPDATED".into(),
                ]];
                for d in &list {
                    let identity = d
                        .identity_data
                        .as_object()
                        .map(|o| {
                            o.iter()
                                .map(|(k, v)| format!("{k}={}", s(v)))
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default();
                    rows.push(vec![
                        d.id.clone(),
                        d.status.to_string(),
                        identity,
                        d.updated_ts.clone(),
                    ]);
                }
                rows
            })
        }
        DevicesCommand::Show { id } => {
            let id = device_id(&r, &id)?;
            let dev: Device = r.get_as(&format!("/v2/devauth/devices/{id}"))?;
            // Not accepted yet: no inventory.
            let inventory: Option<DeviceInventory> =
                r.get_as(&format!("/v1/inventory/devices/{id}")).ok();
            let all = json!({"device": dev, "inventory": inventory});
            r.print(&all, || {
                let mut rows = vec![vec!["FIELD".into(), "VALUE".into()]];
                rows.push(vec!["id".into(), dev.id.clone()]);
                rows.push(vec!["status".into(), dev.status.to_string()]);
                rows.push(vec!["identity".into(), dev.identity_data.to_string()]);
                for a in inventory.iter().flat_map(|i| &i.attributes) {
                    rows.push(vec![format!("{}:{}", a.scope, a.name), s(&a.value)]);
                }
                rows
            })
        }
        DevicesCommand::Accept { id } => set_status(&r, &device_id(&r, &id)?, "accepted"),
        DevicesCommand::Reject { id } => set_status(&r, &device_id(&r, &id)?, "rejected"),
        DevicesCommand::Decommission { id } => {
            let id = device_id(&r, &id)?;
            r.call("DELETE", &format!("/v2/devauth/devices/{id}"), None)?;
            r.done(
                &json!({"id": id, "status": "decommissioned"}),
                &format!("device {id} decommissioned"),
            )
        }
    }
}

/// The length of a full id (a UUID); anything shorter is taken as a prefix.
const ID_LEN: usize = 36;
/// The shortest prefix accepted (the UI shows 8 characters).
const MIN_PREFIX: usize = 4;

#[derive(serde::Deserialize)]
struct IdOnly {
    id: String,
}

/// The one id among `ids` that starts with `given`, or a clear error.
fn unique_prefix(what: &str, given: &str, ids: &[String]) -> Result<String> {
    if given.len() == ID_LEN {
        return Ok(given.to_owned());
    }
    if given.len() < MIN_PREFIX {
        bail!("{what} id {given:?} is too short: give at least {MIN_PREFIX} characters");
    }
    let found: Vec<&String> = ids.iter().filter(|id| id.starts_with(given)).collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!("no {what} has an id starting with {given:?}"),
        many => bail!(
            "{what} id {given:?} is ambiguous: it starts {}",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Resolves a full id or a unique prefix against every page of a list.
fn resolve_id(r: &Remote, what: &str, list: &str, given: &str) -> Result<String> {
    if given.len() == ID_LEN {
        return Ok(given.to_owned());
    }
    let per_page = 500;
    let mut ids = Vec::new();
    for page in 1.. {
        let items: Vec<IdOnly> = r.get_as(&format!("{list}?page={page}&per_page={per_page}"))?;
        let n = items.len();
        ids.extend(
            items
                .into_iter()
                .map(|i| i.id)
                .filter(|id| id.starts_with(given)),
        );
        if n < per_page {
            break;
        }
    }
    unique_prefix(what, given, &ids)
}

fn device_id(r: &Remote, given: &str) -> Result<String> {
    resolve_id(r, "device", "/v2/devauth/devices", given)
}

fn deployment_id(r: &Remote, given: &str) -> Result<String> {
    resolve_id(r, "deployment", "/v1/deployments/deployments", given)
}

fn set_status(r: &Remote, id: &str, status: &str) -> Result<()> {
    let dev: Device = r.get_as(&format!("/v2/devauth/devices/{id}"))?;
    // The newest auth set is the one the device uses now.
    let auth = dev
        .auth_sets
        .last()
        .map(|a| a.id.as_str())
        .ok_or_else(|| anyhow!("device {id} has no auth set"))?;
    r.call(
        "PUT",
        &format!("/v2/devauth/devices/{id}/auth/{auth}/status"),
        Some(&json!({"status": status})),
    )?;
    r.done(
        &json!({"id": id, "status": status}),
        &format!("device {id} {status}"),
    )
}

fn find_artifact(r: &Remote, key: &str) -> Result<Value> {
    let list = r.get("/v1/deployments/artifacts")?;
    list.as_array()
        .into_iter()
        .flatten()
        .find(|a| a["id"] == key || a["name"] == key)
        .cloned()
        .ok_or_else(|| anyhow!("no artifact with id or name {key:?}"))
}

/// Counts bytes read, for the upload's progress bar.
struct Counting<R> {
    inner: R,
    bar: indicatif::ProgressBar,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// `aloftctl artifacts ...`.
pub(crate) fn artifacts(args: &ServerArgs, command: ArtifactsCommand) -> Result<()> {
    let r = Remote::open(args)?;
    match command {
        ArtifactsCommand::Upload { file, description } => {
            let f = fs_err::File::open(&file)?;
            let size = f.metadata()?.len();
            let boundary = "aloftctl-upload-7f3a9c";
            let head = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\n{description}\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"size\"\r\n\r\n{size}\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"artifact\"; filename=\"artifact.mender\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            );
            let tail = format!("\r\n--{boundary}--\r\n");
            let total = head.len() as u64 + size + tail.len() as u64;
            let bar = crate::progress::bytes(size, "uploading", r.json);
            let body = std::io::Cursor::new(head.into_bytes())
                .chain(Counting {
                    inner: f,
                    bar: bar.clone(),
                })
                .chain(std::io::Cursor::new(tail.into_bytes()));
            let url = format!("{}/api/management/v1/deployments/artifacts", r.base);
            let mut resp = r
                .agent
                .post(&url)
                .header("Authorization", format!("Bearer {}", r.token))
                .header(
                    "Content-Type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .header("Content-Length", total.to_string())
                .send(ureq::SendBody::from_owned_reader(body))
                .with_context(|| format!("cannot upload to {}", r.base))?;
            bar.finish_and_clear();
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string()?;
            if status != 201 {
                return Err(server_error(status, &text));
            }
            let id = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.rsplit('/').next())
                .unwrap_or_default()
                .to_owned();
            r.done(
                &json!({"id": id, "file": file}),
                &format!("uploaded {} as artifact {id}", file.display()),
            )
        }
        ArtifactsCommand::List => {
            let list = r.get("/v1/deployments/artifacts")?;
            r.print(&list, || {
                let mut rows = vec![vec![
                    "ID".into(),
                    "NAME".into(),
                    "TYPE".into(),
                    "DEVICE TYPES".into(),
                    "SIZE".into(),
                    "SIGNED".into(),
                ]];
                for a in list.as_array().into_iter().flatten() {
                    let kinds: Vec<String> = a["updates"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|u| s(&u["type_info"]["type"]))
                        .collect();
                    rows.push(vec![
                        s(&a["id"]),
                        s(&a["name"]),
                        kinds.join(","),
                        s(&a["device_types_compatible"]),
                        s(&a["size"]),
                        s(&a["signed"]),
                    ]);
                }
                rows
            })
        }
        ArtifactsCommand::Show { artifact } => {
            let a = find_artifact(&r, &artifact)?;
            r.print(&a, || {
                let mut rows = vec![vec!["FIELD".into(), "VALUE".into()]];
                for k in [
                    "id",
                    "name",
                    "description",
                    "device_types_compatible",
                    "signed",
                    "size",
                    "modified",
                ] {
                    rows.push(vec![k.into(), s(&a[k])]);
                }
                rows.push(vec!["provides".into(), a["artifact_provides"].to_string()]);
                rows.push(vec!["depends".into(), a["artifact_depends"].to_string()]);
                for u in a["updates"].as_array().into_iter().flatten() {
                    for f in u["files"].as_array().into_iter().flatten() {
                        rows.push(vec![
                            format!("file ({})", s(&u["type_info"]["type"])),
                            format!(
                                "{} {} bytes sha256:{}",
                                s(&f["name"]),
                                s(&f["size"]),
                                s(&f["checksum"])
                            ),
                        ]);
                    }
                }
                rows
            })
        }
        ArtifactsCommand::Delete { artifact } => {
            let a = find_artifact(&r, &artifact)?;
            let id = s(&a["id"]);
            r.call("DELETE", &format!("/v1/deployments/artifacts/{id}"), None)?;
            r.done(
                &json!({"id": id, "deleted": true}),
                &format!("artifact {} ({id}) deleted", s(&a["name"])),
            )
        }
    }
}

/// `aloftctl deployments ...`.
pub(crate) fn deployments(args: &ServerArgs, command: DeploymentsCommand) -> Result<()> {
    let r = Remote::open(args)?;
    match command {
        DeploymentsCommand::Create { spec, expect_plan } => {
            let (mut body, group) = deployment_body(&r, &spec)?;
            if let Some(digest) = expect_plan {
                body["expect_plan"] = json!(digest);
            }
            let path = group.map_or_else(
                || "/v1/deployments/deployments".to_owned(),
                |g| format!("/v1/deployments/deployments/group/{g}"),
            );
            let (_, _, location) = r.call("POST", &path, Some(&body))?;
            let id = location
                .as_deref()
                .and_then(|l| l.rsplit('/').next())
                .unwrap_or_default()
                .to_owned();
            r.done(
                &json!({"id": id, "name": body["name"]}),
                &format!("deployment {id} created"),
            )
        }
        DeploymentsCommand::Plan { spec } => {
            let (mut body, group) = deployment_body(&r, &spec)?;
            if let Some(g) = group {
                // The plan takes device ids: the group's, as the group endpoint would.
                let ids: Value =
                    r.get_as(&format!("/v1/inventory/groups/{g}/devices?per_page=500"))?;
                body["devices"] = ids;
            }
            let plan: DeploymentPlan =
                r.call_as("POST", "/v1/deployments/deployments/plan", &body)?;
            r.print(&plan, || plan_rows(&plan))
        }
        DeploymentsCommand::List => {
            let list: Vec<Deployment> = r.get_as("/v1/deployments/deployments?per_page=100")?;
            r.print(&list, || {
                let mut rows = vec![vec![
                    "ID".into(),
                    "NAME".into(),
                    "ARTIFACT".into(),
                    "STATUS".into(),
                    "DEVICES".into(),
                    "CREATED".into(),
                ]];
                for d in &list {
                    rows.push(vec![
                        d.id.clone(),
                        d.name.clone(),
                        d.artifact_name.clone(),
                        verdict(d),
                        d.max_devices.map(|n| n.to_string()).unwrap_or_default(),
                        d.created.clone(),
                    ]);
                }
                rows
            })
        }
        DeploymentsCommand::Show { id, watch } => {
            let id = deployment_id(&r, &id)?;
            if watch {
                return watch_deployment(&r, &id);
            }
            show_deployment(&r, &id)
        }
        DeploymentsCommand::Pause { id, reason } => {
            let id = deployment_id(&r, &id)?;
            r.call(
                "POST",
                &format!("/v1/deployments/deployments/{id}/pause"),
                Some(&json!({"reason": reason})),
            )?;
            r.done(
                &json!({"id": id, "paused": true}),
                &format!("deployment {id} paused"),
            )
        }
        DeploymentsCommand::Resume { id } => rollout_command(&r, &id, "resume", "resumed"),
        DeploymentsCommand::Advance { id } => rollout_command(&r, &id, "advance", "advanced"),
        DeploymentsCommand::Halt { reason, status } => {
            if !status {
                r.call(
                    "PUT",
                    "/v1/deployments/halt",
                    Some(&json!({"halted": true, "reason": reason})),
                )?;
            }
            let h: Value = r.get_as("/v1/deployments/halt")?;
            let text = match h["reason"].as_str() {
                Some(why) => format!("every deployment is held: {why}"),
                None => "no halt holds".to_owned(),
            };
            r.done(&h, &text)
        }
        DeploymentsCommand::Unhalt => {
            r.call(
                "PUT",
                "/v1/deployments/halt",
                Some(&json!({"halted": false})),
            )?;
            r.done(&json!({"halted": false}), "the halt is released")
        }
        DeploymentsCommand::Abort { id } => {
            let id = deployment_id(&r, &id)?;
            r.call(
                "PUT",
                &format!("/v1/deployments/deployments/{id}/status"),
                Some(&json!({"status": "aborted"})),
            )?;
            r.done(
                &json!({"id": id, "status": "aborted"}),
                &format!("deployment {id} aborted"),
            )
        }
    }
}

/// The create body of `spec` (its plan file merged in), and its group when it names one.
fn deployment_body(r: &Remote, spec: &DeploymentSpec) -> Result<(Value, Option<String>)> {
    let name = spec.name.clone().unwrap_or_else(|| spec.artifact.clone());
    let mut body = json!({"name": name, "artifact_name": spec.artifact});
    if let Some(path) = &spec.plan {
        let text =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let plan: Value = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let Value::Object(fields) = plan else {
            bail!("{} must hold a JSON object", path.display());
        };
        for (k, v) in fields {
            if k != "phases" && k != "rollout" {
                bail!("{}: unknown key {k:?} (phases, rollout)", path.display());
            }
            body[k] = v;
        }
    }
    if let Some(g) = &spec.group {
        return Ok((body, Some(g.clone())));
    }
    if spec.all {
        body["all_devices"] = json!(true);
    } else if spec.device.is_empty() {
        bail!("say which devices: --all, --group NAME or --device ID");
    } else {
        let ids = spec
            .device
            .iter()
            .map(|d| device_id(r, d))
            .collect::<Result<Vec<_>>>()?;
        body["devices"] = json!(ids);
    }
    Ok((body, None))
}

/// A plan as a table: one row per phase, then each skipped device with why, then totals.
fn plan_rows(plan: &DeploymentPlan) -> Vec<Vec<String>> {
    let mut rows = vec![vec![
        "PHASE".into(),
        "DEVICES".into(),
        "UPDATES".into(),
        "BYTES".into(),
        "OPENS".into(),
    ]];
    for p in &plan.phases {
        rows.push(vec![
            p.id.clone(),
            p.device_count.to_string(),
            p.updates.to_string(),
            p.bytes.to_string(),
            p.earliest_start
                .clone()
                .unwrap_or_else(|| "when advanced".into()),
        ]);
    }
    for d in plan
        .devices
        .iter()
        .filter(|d| d.outcome != PlannedOutcome::Update)
    {
        rows.push(vec![
            format!("skip {}", d.phase),
            d.id.clone(),
            format!("{:?}", d.outcome).to_lowercase(),
            String::new(),
            d.reason.clone().unwrap_or_default(),
        ]);
    }
    let t = &plan.totals;
    rows.push(vec![
        "total".into(),
        t.devices.to_string(),
        t.updates.to_string(),
        t.bytes.to_string(),
        format!("{} skipped; digest {}", t.skipped, plan.digest),
    ]);
    rows
}

/// `POST .../deployments/{id}/{command}` of a phased deployment.
fn rollout_command(r: &Remote, id: &str, command: &str, done: &str) -> Result<()> {
    let id = deployment_id(r, id)?;
    r.call(
        "POST",
        &format!("/v1/deployments/deployments/{id}/{command}"),
        Some(&json!({})),
    )?;
    let d: Value = r.get_as(&format!("/v1/deployments/deployments/{id}"))?;
    r.done(
        &json!({"id": id, "rollout": d["rollout"]}),
        &format!(
            "deployment {id} {done}: phase {} of {}",
            d["rollout"]["phase"], d["rollout"]["phases"]
        ),
    )
}

/// A deployment's status while it runs, the server's verdict once it finished.
fn verdict(d: &Deployment) -> String {
    match (&d.summary, d.status.is_final()) {
        (Some(m), true) => format!("finished: {}", outcome_word(m.outcome)),
        _ => d.status.to_string(),
    }
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Pending => "pending",
        Outcome::InProgress => "in progress",
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Aborted => "aborted",
        Outcome::Incomplete => "incomplete",
    }
}

fn show_deployment(r: &Remote, id: &str) -> Result<()> {
    let d: Deployment = r.get_as(&format!("/v1/deployments/deployments/{id}"))?;
    let devices: Vec<DeviceDeployment> =
        r.get_as(&format!("/v1/deployments/deployments/{id}/devices"))?;
    let all = json!({"deployment": d, "devices": devices});
    r.print(&all, || {
        let mut rows = vec![vec!["DEVICE".into(), "STATUS".into(), "DETAIL".into()]];
        rows.push(vec![
            format!("deployment {} ({})", d.name, d.artifact_name),
            verdict(&d),
            counters(&d.statistics),
        ]);
        for x in &devices {
            rows.push(vec![
                x.id.clone(),
                x.status.to_string(),
                x.substate.clone().unwrap_or_default(),
            ]);
        }
        rows
    })
}

/// The non-zero counters, e.g. `failure 1, success 4`.
fn counters(stats: &DeploymentStatistics) -> String {
    stats
        .status
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The bars of `--watch`: one per group of the server's summary.
const WATCH_GROUPS: [&str; 5] = ["success", "failure", "skipped", "in progress", "pending"];

fn group_counts(m: &DeploymentSummary) -> [u64; 5] {
    let c = &m.counts;
    [c.success, c.failure, c.skipped, c.in_progress, c.pending]
}

/// Follows a deployment over the live events until it finishes: one progress bar per group
/// on a terminal, a line per change otherwise, the final state as JSON with `--json`. Each
/// event carries the deployment's new summary, so nothing is fetched again until the end.
fn watch_deployment(r: &Remote, id: &str) -> Result<()> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let tty = std::io::stderr().is_terminal() && !r.json;
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len}")
        .expect("a valid template")
        .progress_chars("=> ");
    let bars: Vec<ProgressBar> = WATCH_GROUPS
        .iter()
        .map(|g| {
            let b = if tty {
                multi.add(ProgressBar::new(0))
            } else {
                ProgressBar::hidden()
            };
            b.set_style(style.clone());
            b.set_prefix(*g);
            b
        })
        .collect();
    let mut last = String::new();
    let mut update =
        |status: DeploymentStatus, m: &DeploymentSummary, stats: &DeploymentStatistics| {
            for (b, v) in bars.iter().zip(group_counts(m)) {
                b.set_length(m.counts.total);
                b.set_position(v);
            }
            let line = counters(stats);
            if !tty && !r.json && line != last {
                eprintln!("{status}: {line}");
                last = line;
            }
        };
    loop {
        // Subscribe first, then read the state: no change falls in between.
        let events = agent(r.ca_cert.as_deref(), Some(Duration::from_secs(60)))?
            .get(format!("{}/api/management/v1/events", r.base))
            .header("Authorization", format!("Bearer {}", r.token))
            .call()
            .with_context(|| format!("cannot follow the events of {}", r.base))?;
        if events.status() != 200 {
            bail!(
                "the server has no live events (answered {}); use `deployments show` instead",
                events.status()
            );
        }
        let d: Deployment = r.get_as(&format!("/v1/deployments/deployments/{id}"))?;
        let summary = d
            .summary
            .unwrap_or_else(|| DeploymentSummary::of(d.status, &d.statistics.status));
        update(d.status, &summary, &d.statistics);
        if d.status.is_final() {
            return finish_watch(r, id, &bars);
        }
        let reader = std::io::BufReader::new(events.into_body().into_reader());
        for line in reader.lines() {
            let Ok(line) = line else { break }; // a stall or a cut: subscribe again
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let Ok(e) = serde_json::from_str::<Envelope>(data.trim()) else {
                continue; // an event this version does not know
            };
            if let Some(p) = e.event.deployment().filter(|p| p.id == id) {
                update(p.status, &p.summary, &p.statistics);
                if p.status.is_final() {
                    return finish_watch(r, id, &bars);
                }
            }
        }
    }
}

fn finish_watch(r: &Remote, id: &str, bars: &[indicatif::ProgressBar]) -> Result<()> {
    // `abandon` keeps each bar where it is (`finish` would draw every bar full).
    for b in bars {
        b.abandon();
    }
    show_deployment(r, id)
}

#[cfg(test)]
mod tests {
    use super::unique_prefix;

    #[test]
    fn ids_are_taken_whole_or_by_a_unique_prefix() {
        let ids = [
            "0a1b2c3d-0000-4000-8000-000000000001".to_owned(),
            "0a1b2c3d-0000-4000-8000-000000000002".to_owned(),
            "ffee0011-0000-4000-8000-000000000003".to_owned(),
        ];
        let full = "12345678-0000-4000-8000-000000000009";
        // (given, Ok(id) or the start of the error)
        let table: [(&str, Result<&str, &str>); 6] = [
            ("ffee0011", Ok(ids[2].as_str())),
            (full, Ok(full)),
            ("0a1b2c3d-0000-4000-8000-000000000002", Ok(ids[1].as_str())),
            ("0a1b2c3d", Err("device id \"0a1b2c3d\" is ambiguous")),
            ("99999999", Err("no device has an id starting with")),
            ("ff", Err("device id \"ff\" is too short")),
        ];
        for (given, want) in table {
            match (unique_prefix("device", given, &ids), want) {
                (Ok(id), Ok(w)) => assert_eq!(id, w),
                (Err(e), Err(w)) => assert!(e.to_string().starts_with(w), "{given}: {e}"),
                (got, want) => panic!("{given}: got {got:?}, want {want:?}"),
            }
        }
    }
}
