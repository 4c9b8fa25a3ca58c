//! `aloftctl login | devices | groups | artifacts | deployments`: the operator's side of a server's
//! management API. Only Mender-compatible calls are used, so these commands also work against
//! a Mender server, except `deployments show --watch`, which follows aloft's live events.
//!
//! The login token is kept per server in `$ALOFT_CONFIG_DIR` (default
//! `$XDG_CONFIG_HOME/aloft`, else `~/.config/aloft`) as `credentials.json`, mode 0600.

use std::collections::BTreeMap;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cli::ServerArgs;

mod artifacts;
mod deployments;
mod devices;
mod groups;

pub(crate) use artifacts::artifacts;
pub(crate) use deployments::deployments;
pub(crate) use devices::devices;
pub(crate) use groups::groups;

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

    /// Every item of a paged list (`page`/`per_page` until a short page).
    fn get_all<T: serde::de::DeserializeOwned>(&self, list: &str) -> Result<Vec<T>> {
        const PER_PAGE: usize = 500;
        let sep = if list.contains('?') { '&' } else { '?' };
        let mut all = Vec::new();
        for page in 1.. {
            let items: Vec<T> =
                self.get_as(&format!("{list}{sep}page={page}&per_page={PER_PAGE}"))?;
            let n = items.len();
            all.extend(items);
            if n < PER_PAGE {
                break;
            }
        }
        Ok(all)
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
    let ids: Vec<String> = r
        .get_all::<IdOnly>(list)?
        .into_iter()
        .map(|i| i.id)
        .filter(|id| id.starts_with(given))
        .collect();
    unique_prefix(what, given, &ids)
}

fn device_id(r: &Remote, given: &str) -> Result<String> {
    resolve_id(r, "device", "/v2/devauth/devices", given)
}

fn deployment_id(r: &Remote, given: &str) -> Result<String> {
    resolve_id(r, "deployment", "/v1/deployments/deployments", given)
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
