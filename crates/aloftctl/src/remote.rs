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

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cli::{ArtifactsCommand, DeploymentsCommand, DevicesCommand, ServerArgs};

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
        let (_, text, _) = self.call("GET", path, None)?;
        serde_json::from_str(&text).context("the server's answer is not JSON")
    }

    fn print(&self, value: &Value, table: impl FnOnce() -> Vec<Vec<String>>) -> Result<()> {
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
            let list = r.get(&format!("/v2/devauth/devices?per_page=500{query}"))?;
            r.print(&list, || {
                let mut rows = vec![vec![
                    "ID".into(),
                    "STATUS".into(),
                    "IDENTITY".into(),
                    "UPDATED".into(),
                ]];
                for d in list.as_array().into_iter().flatten() {
                    let identity = d["identity_data"]
                        .as_object()
                        .map(|o| {
                            o.iter()
                                .map(|(k, v)| format!("{k}={}", s(v)))
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default();
                    rows.push(vec![
                        s(&d["id"]),
                        s(&d["status"]),
                        identity,
                        s(&d["updated_ts"]),
                    ]);
                }
                rows
            })
        }
        DevicesCommand::Show { id } => {
            let dev = r.get(&format!("/v2/devauth/devices/{id}"))?;
            let inventory = r
                .get(&format!("/v1/inventory/devices/{id}"))
                .unwrap_or(Value::Null);
            let all = json!({"device": dev, "inventory": inventory});
            r.print(&all, || {
                let mut rows = vec![vec!["FIELD".into(), "VALUE".into()]];
                rows.push(vec!["id".into(), s(&dev["id"])]);
                rows.push(vec!["status".into(), s(&dev["status"])]);
                rows.push(vec!["identity".into(), dev["identity_data"].to_string()]);
                for a in inventory["attributes"].as_array().into_iter().flatten() {
                    rows.push(vec![
                        format!("{}:{}", s(&a["scope"]), s(&a["name"])),
                        s(&a["value"]),
                    ]);
                }
                rows
            })
        }
        DevicesCommand::Accept { id } => set_status(&r, &id, "accepted"),
        DevicesCommand::Reject { id } => set_status(&r, &id, "rejected"),
        DevicesCommand::Decommission { id } => {
            r.call("DELETE", &format!("/v2/devauth/devices/{id}"), None)?;
            r.done(
                &json!({"id": id, "status": "decommissioned"}),
                &format!("device {id} decommissioned"),
            )
        }
    }
}

fn set_status(r: &Remote, id: &str, status: &str) -> Result<()> {
    let dev = r.get(&format!("/v2/devauth/devices/{id}"))?;
    // The newest auth set is the one the device uses now.
    let auth = dev["auth_sets"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(|a| a["id"].as_str())
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
        DeploymentsCommand::Create {
            name,
            artifact,
            all,
            group,
            device,
        } => {
            let name = name.unwrap_or_else(|| artifact.clone());
            let body = json!({"name": name, "artifact_name": artifact});
            let (_, _, location) = if let Some(g) = group {
                r.call(
                    "POST",
                    &format!("/v1/deployments/deployments/group/{g}"),
                    Some(&body),
                )?
            } else if all {
                let mut b = body;
                b["all_devices"] = json!(true);
                r.call("POST", "/v1/deployments/deployments", Some(&b))?
            } else if !device.is_empty() {
                let mut b = body;
                b["devices"] = json!(device);
                r.call("POST", "/v1/deployments/deployments", Some(&b))?
            } else {
                bail!("say which devices: --all, --group NAME or --device ID");
            };
            let id = location
                .as_deref()
                .and_then(|l| l.rsplit('/').next())
                .unwrap_or_default()
                .to_owned();
            r.done(
                &json!({"id": id, "name": name}),
                &format!("deployment {id} created"),
            )
        }
        DeploymentsCommand::List => {
            let list = r.get("/v1/deployments/deployments?per_page=100")?;
            r.print(&list, || {
                let mut rows = vec![vec![
                    "ID".into(),
                    "NAME".into(),
                    "ARTIFACT".into(),
                    "STATUS".into(),
                    "DEVICES".into(),
                    "CREATED".into(),
                ]];
                for d in list.as_array().into_iter().flatten() {
                    rows.push(vec![
                        s(&d["id"]),
                        s(&d["name"]),
                        s(&d["artifact_name"]),
                        s(&d["status"]),
                        s(&d["max_devices"]),
                        s(&d["created"]),
                    ]);
                }
                rows
            })
        }
        DeploymentsCommand::Show { id, watch } => {
            if watch {
                return watch_deployment(&r, &id);
            }
            show_deployment(&r, &id)
        }
        DeploymentsCommand::Abort { id } => {
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

fn show_deployment(r: &Remote, id: &str) -> Result<()> {
    let d = r.get(&format!("/v1/deployments/deployments/{id}"))?;
    let devices = r.get(&format!("/v1/deployments/deployments/{id}/devices"))?;
    let all = json!({"deployment": d, "devices": devices});
    r.print(&all, || {
        let mut rows = vec![vec!["DEVICE".into(), "STATUS".into(), "DETAIL".into()]];
        rows.push(vec![
            format!("deployment {} ({})", s(&d["name"]), s(&d["artifact_name"])),
            s(&d["status"]),
            summary(&d["statistics"]),
        ]);
        for x in devices.as_array().into_iter().flatten() {
            rows.push(vec![s(&x["id"]), s(&x["status"]), s(&x["substate"])]);
        }
        rows
    })
}

fn summary(stats: &Value) -> String {
    stats["status"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// Follows a deployment over the live events until it finishes: one progress bar per outcome
/// on a terminal, a line per change otherwise, the final state as JSON with `--json`.
fn watch_deployment(r: &Remote, id: &str) -> Result<()> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let tty = std::io::stderr().is_terminal() && !r.json;
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len}")
        .expect("a valid template")
        .progress_chars("=> ");
    let groups = ["success", "failure", "in progress", "pending"];
    let bars: Vec<ProgressBar> = groups
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
    let mut update = |d: &Value| {
        let st = &d["statistics"]["status"];
        let n = |k: &str| st[k].as_u64().unwrap_or(0);
        let running = n("downloading")
            + n("installing")
            + n("rebooting")
            + n("pause_before_installing")
            + n("pause_before_rebooting")
            + n("pause_before_committing");
        let values = [
            n("success") + n("already-installed"),
            n("failure") + n("noartifact") + n("aborted") + n("decommissioned"),
            running,
            n("pending"),
        ];
        let total = d["max_devices"]
            .as_u64()
            .filter(|&t| t > 0)
            .unwrap_or(values.iter().sum());
        for (b, v) in bars.iter().zip(values) {
            b.set_length(total);
            b.set_position(v);
        }
        let line = summary(&d["statistics"]);
        if !tty && !r.json && line != last {
            eprintln!("{}: {line}", s(&d["status"]));
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
        let d = r.get(&format!("/v1/deployments/deployments/{id}"))?;
        update(&d);
        if d["status"] == "finished" {
            return finish_watch(r, id, &bars);
        }
        let reader = std::io::BufReader::new(events.into_body().into_reader());
        for line in reader.lines() {
            let Ok(line) = line else { break }; // a stall or a cut: subscribe again
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let Ok(e) = serde_json::from_str::<Value>(data.trim()) else {
                continue;
            };
            if e["deployment_id"] == id || (e["type"] == "deployment" && e["id"] == id) {
                let d = r.get(&format!("/v1/deployments/deployments/{id}"))?;
                update(&d);
                if d["status"] == "finished" {
                    return finish_watch(r, id, &bars);
                }
            }
        }
    }
}

fn finish_watch(r: &Remote, id: &str, bars: &[indicatif::ProgressBar]) -> Result<()> {
    for b in bars {
        b.finish();
    }
    show_deployment(r, id)
}
