//! The device's key pair, its identity and its inventory, as Mender's helpers define them.
//!
//! Owns: making, loading and storing the key (mode 0600, written through a temporary file);
//! running the identity script and the `mender-inventory-*` scripts and turning their
//! `key=value` lines into JSON. Must not: send anything anywhere.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aloft_api::device::InventoryAttribute;
use aloft_artifact::{KeyType, SigningKey};
use serde_json::Value;

/// Why the identity or the key could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The key file could not be read, parsed or written.
    #[error("device key {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The identity script failed or printed something unusable.
    #[error("identity script {path}: {reason}")]
    Script {
        /// The script.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Mender's key of a device whose data folder is the default one.
pub const MENDER_KEY: &str = "/var/lib/mender/mender-agent.pem";

/// The key file to use: the configured one; else ours in `data_dir` when it exists; else
/// Mender's when it exists (a Mender device keeps its identity at the server); else ours.
pub fn key_path(configured: Option<&Path>, data_dir: &Path) -> PathBuf {
    if let Some(p) = configured {
        return p.to_owned();
    }
    let ours = data_dir.join("aloft-agent.pem");
    if !ours.exists() && Path::new(MENDER_KEY).exists() {
        return PathBuf::from(MENDER_KEY);
    }
    ours
}

/// Loads the key at `path`, or makes one of `kind` (`ed25519`, `ecdsa`, `rsa`) and stores it
/// there with mode 0600.
pub fn load_or_create_key(path: &Path, kind: &str) -> Result<SigningKey, IdentityError> {
    let err = |reason: String| IdentityError::Key {
        path: path.to_owned(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return SigningKey::from_pem(&text).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e.to_string())),
        Err(_) => {}
    }
    let kind = match kind {
        "rsa" => KeyType::Rsa,
        "ecdsa" => KeyType::Ecdsa,
        _ => KeyType::Ed25519,
    };
    let key = SigningKey::generate(kind).map_err(|e| err(e.to_string()))?;
    let pem = key.to_pem().map_err(|e| err(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let tmp = path.with_extension("pem.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| err(e.to_string()))?;
    f.write_all(pem.as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| err(e.to_string()))?;
    tracing::info!(path = %path.display(), "made a new device key");
    Ok(key)
}

/// Parses `key=value` lines: split at the first `=`, blank lines skipped, repeated keys
/// become lists. A line without `=` makes the whole output unusable.
pub fn parse_pairs(text: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("line {line:?} has no `=`"))?;
        if k.is_empty() {
            return Err(format!("line {line:?} has an empty key"));
        }
        out.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    Ok(out)
}

fn to_value(mut values: Vec<String>) -> Value {
    if values.len() == 1 {
        Value::String(values.remove(0))
    } else {
        Value::Array(values.into_iter().map(Value::String).collect())
    }
}

/// Runs a helper with a time limit; its stdout, or why not.
fn run_helper(path: &Path, limit: Duration) -> Result<(bool, String), String> {
    let (status, out) = aloft_device::process::run_limited(
        &mut Command::new(path),
        aloft_device::process::Collect::Stdout,
        limit,
    )?;
    let text = String::from_utf8(out).map_err(|_| "its output is not UTF-8".to_owned())?;
    Ok((status.success(), text))
}

/// The identity, as the `id_data` string of an auth request: a JSON object with sorted keys.
pub fn identity(script: &Path) -> Result<String, IdentityError> {
    let err = |reason: String| IdentityError::Script {
        path: script.to_owned(),
        reason,
    };
    let (ok, text) = run_helper(script, Duration::from_secs(60)).map_err(err)?;
    if !ok {
        return Err(err("it exited with an error".into()));
    }
    let pairs = parse_pairs(&text).map_err(err)?;
    if pairs.is_empty() {
        return Err(err("it printed nothing".into()));
    }
    let object: serde_json::Map<String, Value> =
        pairs.into_iter().map(|(k, v)| (k, to_value(v))).collect();
    Ok(Value::Object(object).to_string())
}

/// Runs every executable `mender-inventory-*` of `dir` in name order and merges their
/// attributes with `builtin` (which wins). A script with unusable output is skipped.
pub fn inventory(dir: &Path, builtin: &BTreeMap<String, String>) -> Vec<InventoryAttribute> {
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("mender-inventory-"))
                        && p.metadata()
                            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                })
                .collect()
        })
        .unwrap_or_default();
    scripts.sort();
    let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for script in scripts {
        match run_helper(&script, Duration::from_secs(60)).and_then(|(ok, text)| {
            if !ok {
                tracing::warn!(script = %script.display(), "inventory script exited with an error; its output is used");
            }
            parse_pairs(&text)
        }) {
            Ok(pairs) => {
                for (k, v) in pairs {
                    all.entry(k).or_default().extend(v);
                }
            }
            Err(reason) => {
                tracing::warn!(script = %script.display(), %reason, "inventory script skipped");
            }
        }
    }
    for (k, v) in builtin {
        all.insert(k.clone(), vec![v.clone()]);
    }
    all.into_iter()
        .map(|(name, values)| InventoryAttribute {
            name,
            value: to_value(values),
            description: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn identity_is_sorted_json_with_repeated_keys_as_lists() {
        let dir = tempfile::tempdir().unwrap();
        let s = script(
            dir.path(),
            "id",
            "echo serial=SN-2\necho mac=02:00:00:00:00:01\necho serial=SN-1",
        );
        assert_eq!(
            identity(&s).unwrap(),
            r#"{"mac":"02:00:00:00:00:01","serial":["SN-2","SN-1"]}"#
        );
        let bad = script(dir.path(), "bad", "echo no-equals-here");
        assert!(identity(&bad).unwrap_err().to_string().contains("no `=`"));
        let failing = script(dir.path(), "fail", "echo a=b; exit 3");
        assert!(identity(&failing).is_err());
    }

    #[test]
    fn inventory_merges_scripts_and_builtins_win() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "mender-inventory-a",
            "echo ip=10.0.0.1\necho artifact_name=liar",
        );
        script(
            dir.path(),
            "mender-inventory-b",
            "echo ip=10.0.0.2\necho os=Test",
        );
        script(dir.path(), "mender-inventory-broken", "echo garbage");
        script(dir.path(), "other", "echo skipped=1");
        let builtin = BTreeMap::from([("artifact_name".to_owned(), "release-1".to_owned())]);
        let inv = inventory(dir.path(), &builtin);
        let get = |n: &str| inv.iter().find(|a| a.name == n).map(|a| a.value.clone());
        assert_eq!(get("ip"), Some(serde_json::json!(["10.0.0.1", "10.0.0.2"])));
        assert_eq!(get("os"), Some(serde_json::json!("Test")));
        assert_eq!(get("artifact_name"), Some(serde_json::json!("release-1")));
        assert_eq!(get("skipped"), None);
    }

    #[test]
    fn a_key_is_made_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/aloft-agent.pem");
        let a = load_or_create_key(&path, "ed25519").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_create_key(&path, "ed25519").unwrap();
        assert_eq!(
            a.verifying_key().fingerprint(),
            b.verifying_key().fingerprint()
        );
    }
}
