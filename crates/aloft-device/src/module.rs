//! Mender Update Module v3, client side: the file tree a module works in and the calls.
//!
//! Tree (`<data>/modules/v3/payloads/0000/tree`, folders 0700, files 0600, no trailing newlines):
//! `version`, `current_artifact_name`, `current_artifact_group`, `current_device_type`,
//! `header/{artifact_name,artifact_group,payload_type,header-info,type-info,meta-data}`, `tmp/`,
//! `files/<name>`. A call is `<modules_dir>/<type> <State> <tree>` run in the tree, in its own
//! process group; exit 0 is success; stdout is read only for the queries
//! (`SupportsRollback`, `NeedsArtifactReboot`).
//!
//! Payload files are stored in `files/` (verified by the artifact reader as they are written),
//! then `Download` is called. FIFO streaming (`stream-next`, `streams/`) is not offered yet, so
//! modules that insist on streaming fail their `Download` cleanly.

use std::io::Read as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aloft_artifact::ArtifactInfo;

/// A module's answer to `NeedsArtifactReboot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RebootNeed {
    /// No reboot.
    No,
    /// Call `ArtifactReboot`.
    Yes,
    /// The client reboots the device itself.
    Automatic,
}

/// An Update Module and its tree for one update.
#[derive(Debug, Clone)]
pub struct Module {
    executable: PathBuf,
    tree: PathBuf,
    timeout: Duration,
}

impl Module {
    /// The module for `payload_type` in `modules_dir`, working in `tree`.
    pub fn new(
        modules_dir: &Path,
        payload_type: &str,
        tree: PathBuf,
        timeout: Duration,
    ) -> Result<Self, String> {
        let executable = modules_dir.join(payload_type);
        if !executable.is_file() {
            return Err(format!(
                "no Update Module for payload type {payload_type:?} in {}",
                modules_dir.display()
            ));
        }
        Ok(Self {
            executable,
            tree,
            timeout,
        })
    }

    /// The tree folder.
    pub fn tree(&self) -> &Path {
        &self.tree
    }

    /// Creates the tree for `info` (replacing an old one).
    pub fn prepare(
        &self,
        info: &ArtifactInfo,
        current_name: &str,
        current_group: &str,
        device_type: &str,
    ) -> std::io::Result<()> {
        if self.tree.exists() {
            std::fs::remove_dir_all(&self.tree)?;
        }
        let mkdir = |p: &Path| {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(p)
        };
        mkdir(&self.tree.join("header"))?;
        mkdir(&self.tree.join("tmp"))?;
        mkdir(&self.tree.join("files"))?;
        let payload = &info.payloads[0];
        let payload_type = payload.payload_type.as_str().unwrap_or_default();
        let header_info = serde_json::json!({
            "payloads": [{"type": payload_type}],
            "artifact_provides": match &info.group {
                Some(g) => serde_json::json!({"artifact_name": info.name, "artifact_group": g}),
                None => serde_json::json!({"artifact_name": info.name}),
            },
            "artifact_depends": {"device_type": info.device_types},
        });
        let mut type_info = serde_json::to_value(&payload.type_info).unwrap_or_default();
        if let Some(obj) = type_info.as_object_mut() {
            obj.insert("type".into(), payload_type.into());
        }
        let meta = payload.meta_data.as_ref().map_or_else(
            || "null".to_owned(),
            |m| serde_json::Value::Object(m.clone()).to_string(),
        );
        let files: [(&str, String); 10] = [
            ("version", "3".into()),
            ("current_artifact_name", current_name.into()),
            ("current_artifact_group", current_group.into()),
            ("current_device_type", device_type.into()),
            ("header/artifact_name", info.name.clone()),
            (
                "header/artifact_group",
                info.group.clone().unwrap_or_default(),
            ),
            ("header/payload_type", payload_type.into()),
            ("header/header-info", header_info.to_string()),
            ("header/type-info", type_info.to_string()),
            ("header/meta-data", meta),
        ];
        for (name, content) in files {
            write_private(&self.tree.join(name), content.as_bytes())?;
        }
        Ok(())
    }

    /// Where payload file `name` goes.
    pub fn file_path(&self, name: &str) -> PathBuf {
        self.tree.join("files").join(name)
    }

    /// Runs `state`; Ok(stdout) on exit 0, Err(reason) otherwise.
    pub fn call(&self, state: &str) -> Result<String, String> {
        let mut child = Command::new(&self.executable)
            .arg(state)
            .arg(&self.tree)
            .current_dir(&self.tree)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {} {state}: {e}", self.executable.display()))?;
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if start.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{state} timed out after {} s",
                    self.timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        if !stderr.trim().is_empty() {
            tracing::info!(module = %self.executable.display(), state, stderr = %stderr.trim(), "update module output");
        }
        if status.success() {
            Ok(stdout.strip_suffix('\n').unwrap_or(&stdout).to_owned())
        } else {
            Err(format!(
                "Update Module {state} failed ({status}){}{}",
                if stderr.trim().is_empty() { "" } else { ": " },
                stderr.trim()
            ))
        }
    }

    /// `SupportsRollback`.
    pub fn supports_rollback(&self) -> Result<bool, String> {
        match self.call("SupportsRollback")?.trim() {
            "" | "No" => Ok(false),
            "Yes" => Ok(true),
            other => Err(format!("SupportsRollback answered {other:?}")),
        }
    }

    /// `NeedsArtifactReboot`.
    pub fn needs_reboot(&self) -> Result<RebootNeed, String> {
        match self.call("NeedsArtifactReboot")?.trim() {
            "" | "No" => Ok(RebootNeed::No),
            "Yes" => Ok(RebootNeed::Yes),
            "Automatic" => Ok(RebootNeed::Automatic),
            other => Err(format!("NeedsArtifactReboot answered {other:?}")),
        }
    }

    /// Removes the tree (after `Cleanup`).
    pub fn remove_tree(&self) {
        let _ = std::fs::remove_dir_all(&self.tree);
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}
