//! What the daemon must remember across restarts about the deployment it works on, and the
//! deployment's log.
//!
//! `deployment.json` (written atomically, before each step it names) lets a daemon started
//! after a power cut, a kill or the update's own reboot finish the deployment and report what
//! really happened. `deployment.log` collects every log event of the daemon and the engine
//! (info and above) from the moment a deployment starts, across reboots, as JSON lines in the
//! shape of Mender's deployment log; it is uploaded when the deployment fails.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aloft_api::device::LogMessage;
use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Fetching the artifact into the spool.
    #[default]
    Downloading,
    /// Downloaded (and, once `verified`, checked whole); waits for the server's go (a
    /// maintenance window, a release) and, under the soft policy, the consent hook.
    Waiting,
    /// The engine is installing from the spool.
    Installing,
    /// Installed; the reboot into the new software is under way.
    Rebooting,
    /// Finished; only the final report is left to send.
    Reporting,
}

/// `deployment.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Deployment id (empty: no deployment).
    pub id: String,
    /// The artifact being deployed.
    pub artifact_name: String,
    /// The download URL.
    pub uri: String,
    /// Where it stands.
    pub step: Step,
    /// Install attempts so far (an interrupted install is tried again from the spool).
    pub installs: u32,
    /// The final status to report, once known.
    pub status: Option<String>,
    /// Why it failed.
    pub reason: Option<String>,
    /// The spooled artifact is a delta (against the running slot).
    #[serde(default)]
    pub delta: bool,
    /// A delta failed: this deployment asks for the full artifact (its `next` requests leave
    /// out the checksum a delta depends on).
    #[serde(default)]
    pub full: bool,
    /// The rollout controls installs: the download waits for the server's go.
    #[serde(default)]
    pub control: Option<Control>,
}

/// How a deployment whose rollout controls installs stands (a [`Record`]'s part).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    /// The soft install policy: the consent hook is asked before the install and the reboot.
    #[serde(default)]
    pub soft: bool,
    /// The spooled artifact was read whole and verified before waiting.
    #[serde(default)]
    pub verified: bool,
    /// What the device last reported it waits for.
    #[serde(default)]
    pub waiting: Option<String>,
}

/// The daemon's files in its data folder.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// The journal in `dir` (made when missing, mode 0700).
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn record_path(&self) -> PathBuf {
        self.dir.join("deployment.json")
    }

    /// The log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("deployment.log")
    }

    /// The deployment in progress, if any. A corrupt record is reported and set aside as
    /// `deployment.json.corrupt` (so it is dropped once, not at every start).
    pub fn load(&self) -> Option<Record> {
        match aloft_device::state::load::<Record>(&self.record_path()) {
            Ok(r) if !r.id.is_empty() => Some(r),
            Ok(_) => None,
            Err(e) => {
                let kept = aloft_device::state::set_aside(&self.record_path());
                tracing::error!(error = %e, kept = ?kept.ok(), "the deployment record is unreadable; it is dropped");
                None
            }
        }
    }

    /// Stores the record durably.
    pub fn save(&self, record: &Record) -> Result<(), aloft_device::state::StateError> {
        aloft_device::state::save(&self.record_path(), record)
    }

    /// Forgets the deployment (after its final report).
    pub fn clear(&self) {
        let _ = std::fs::remove_file(self.record_path());
        stop_log();
    }

    /// The log lines collected for the deployment (at most the last 1000).
    pub fn messages(&self) -> Vec<LogMessage> {
        let Ok(file) = std::fs::File::open(self.log_path()) else {
            return Vec::new();
        };
        let mut all: Vec<LogMessage> = std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect();
        let keep = all.len().saturating_sub(1000);
        all.drain(..keep);
        all
    }
}

static LOG: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Starts collecting log events into `path` (emptied when `fresh`, else appended to).
pub fn start_log(path: &Path, fresh: bool) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|f| {
            if fresh {
                f.set_len(0)?;
            }
            Ok(f)
        });
    match file {
        Ok(f) => {
            *LOG.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(f);
        }
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "cannot keep a deployment log");
        }
    }
}

/// Stops collecting.
pub fn stop_log() {
    *LOG.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
}

/// The `tracing` layer that writes events into the deployment log while one is collected.
pub struct LogLayer;

#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > tracing::Level::INFO {
            return;
        }
        let mut guard = LOG
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(file) = guard.as_mut() else {
            return;
        };
        let mut text = Text::default();
        event.record(&mut text);
        let line = LogMessage {
            timestamp: aloft_api::time::rfc3339(aloft_api::time::now_us() / 1_000_000 * 1_000_000),
            level: match level {
                tracing::Level::ERROR => "error",
                tracing::Level::WARN => "warning",
                _ => "info",
            }
            .to_owned(),
            message: text.0.trim().to_owned(),
        };
        if let Ok(mut json) = serde_json::to_vec(&line) {
            json.push(b'\n');
            let _ = file.write_all(&json);
        }
    }
}
