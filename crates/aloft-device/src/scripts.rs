//! State scripts, Mender's way: `<State>_<Enter|Leave|Error>_<NN>[_name]`, run in name order.
//! Artifact states (`Artifact*`) run the scripts that came in the artifact (stored in
//! `<data>/scripts` with a `version` file); other states the device's own scripts folder.
//! Exit 0 is success, 21 means "retry later" (rerun after the retry interval until the retry
//! time-out), anything else is a failure. Each run has a time limit.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aloft_artifact::StateScript;

/// Enter, Leave or Error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Before the state's action.
    Enter,
    /// After it succeeded.
    Leave,
    /// After it failed.
    Error,
}

impl When {
    fn as_str(self) -> &'static str {
        match self {
            Self::Enter => "Enter",
            Self::Leave => "Leave",
            Self::Error => "Error",
        }
    }
}

/// Where scripts live and how long they may take.
#[derive(Debug, Clone)]
pub struct Scripts {
    /// The device's scripts (Idle, Sync, Download).
    pub device_dir: PathBuf,
    /// The current artifact's scripts.
    pub artifact_dir: PathBuf,
    /// Time limit of one run.
    pub timeout: Duration,
    /// Wait before rerunning a script that exited 21.
    pub retry_interval: Duration,
    /// Give up on a script that keeps exiting 21 after this long.
    pub retry_timeout: Duration,
}

impl Scripts {
    /// Replaces the stored artifact scripts with `scripts`.
    pub fn store_artifact_scripts(&self, scripts: &[StateScript]) -> std::io::Result<()> {
        if self.artifact_dir.exists() {
            std::fs::remove_dir_all(&self.artifact_dir)?;
        }
        std::fs::create_dir_all(&self.artifact_dir)?;
        std::fs::write(self.artifact_dir.join("version"), "3")?;
        for s in scripts {
            let path = self.artifact_dir.join(&s.name);
            std::fs::write(&path, &s.content)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(())
    }

    /// Runs the scripts of `state`/`when` in name order; stops at the first failure.
    pub fn run(&self, state: &str, when: When) -> Result<(), String> {
        let dir = if state.starts_with("Artifact") {
            &self.artifact_dir
        } else {
            &self.device_dir
        };
        for path in matching(dir, state, when) {
            self.run_one(&path)?;
        }
        Ok(())
    }

    /// Runs the scripts of `state`/`when`, reporting failures only in the log (for `_Error`
    /// scripts and the states whose script failures Mender ignores).
    pub fn run_ignoring_failures(&self, state: &str, when: When) {
        if let Err(e) = self.run(state, when) {
            tracing::warn!(state, when = when.as_str(), error = %e, "state script failed (ignored)");
        }
    }

    fn run_one(&self, path: &Path) -> Result<(), String> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let first = Instant::now();
        loop {
            let mut child = Command::new(path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("state script {name} cannot run: {e}"))?;
            let start = Instant::now();
            let status = loop {
                if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
                    break s;
                }
                if start.elapsed() > self.timeout {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "state script {name} timed out after {} s",
                        self.timeout.as_secs()
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            match status.code() {
                Some(0) => return Ok(()),
                Some(21) if first.elapsed() + self.retry_interval <= self.retry_timeout => {
                    tracing::info!(script = %name, "state script asked to retry later");
                    std::thread::sleep(self.retry_interval);
                }
                _ => {
                    let tail: String = err.trim().chars().take(10_000).collect();
                    return Err(format!(
                        "state script {name} failed ({status}){}{tail}",
                        if tail.is_empty() { "" } else { ": " }
                    ));
                }
            }
        }
    }
}

/// Executable scripts in `dir` named `<state>_<when>_<NN>[_<text>]`, sorted by name.
fn matching(dir: &Path, state: &str, when: When) -> Vec<PathBuf> {
    let prefix = format!("{state}_{}_", when.as_str());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&prefix) else {
                return false;
            };
            let bytes = rest.as_bytes();
            bytes.len() >= 2
                && bytes[..2].iter().all(u8::is_ascii_digit)
                && (bytes.len() == 2 || (bytes[2] == b'_' && bytes.len() > 3))
        })
        .filter(|e| {
            e.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn scripts(dir: &Path) -> Scripts {
        Scripts {
            device_dir: dir.join("device"),
            artifact_dir: dir.to_owned(),
            timeout: Duration::from_secs(5),
            retry_interval: Duration::from_millis(50),
            retry_timeout: Duration::from_millis(400),
        }
    }

    #[test]
    fn scripts_run_in_name_order_and_only_for_their_state() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let l = log.display();
        script(
            dir.path(),
            "ArtifactInstall_Enter_10_second",
            &format!("echo second >> {l}"),
        );
        script(
            dir.path(),
            "ArtifactInstall_Enter_01_first",
            &format!("echo first >> {l}"),
        );
        script(
            dir.path(),
            "ArtifactInstall_Leave_00",
            &format!("echo leave >> {l}"),
        );
        script(
            dir.path(),
            "ArtifactRollbackReboot_Enter_00",
            &format!("echo wrong >> {l}"),
        );
        script(
            dir.path(),
            "ArtifactInstall_Enter_5_bad_number",
            &format!("echo wrong >> {l}"),
        );
        scripts(dir.path())
            .run("ArtifactInstall", When::Enter)
            .unwrap();
        scripts(dir.path())
            .run("ArtifactRollback", When::Enter)
            .unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "first\nsecond\n");
    }

    #[test]
    fn exit_21_retries_until_success_or_time_out() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let c = count.display();
        script(
            dir.path(),
            "ArtifactCommit_Enter_00",
            &format!("echo x >> {c}; [ $(wc -l < {c}) -ge 3 ] || exit 21"),
        );
        scripts(dir.path())
            .run("ArtifactCommit", When::Enter)
            .unwrap();
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 3);
        script(dir.path(), "ArtifactCommit_Leave_00", "exit 21");
        let err = scripts(dir.path())
            .run("ArtifactCommit", When::Leave)
            .unwrap_err();
        assert!(err.contains("ArtifactCommit_Leave_00"), "{err}");
    }

    #[test]
    fn a_failure_names_the_script_and_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "ArtifactInstall_Leave_00_check",
            "echo 'disk full' >&2; exit 7",
        );
        let err = scripts(dir.path())
            .run("ArtifactInstall", When::Leave)
            .unwrap_err();
        assert!(
            err.contains("ArtifactInstall_Leave_00_check") && err.contains("disk full"),
            "{err}"
        );
    }
}
