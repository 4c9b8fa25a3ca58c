//! Mender Update Module v3, client side: the file tree a module works in and the calls.
//!
//! Tree (`<data>/modules/v3/payloads/0000/tree`, folders 0700, files 0600, no trailing newlines):
//! `version`, `current_artifact_name`, `current_artifact_group`, `current_device_type`,
//! `header/{artifact_name,artifact_group,payload_type,header-info,type-info,meta-data}`, `tmp/`,
//! `files/<name>`. A call is `<modules_dir>/<type> <State> <tree>` run in the tree, in its own
//! process group; exit 0 is success; stdout is read only for the queries
//! (`SupportsRollback`, `NeedsArtifactReboot`).
//!
//! `Download` runs while the artifact streams ([`Download`]): a module that opens the FIFO
//! `stream-next` gets one line per payload file (`streams/<name>`, another FIFO to read whole),
//! then an empty read at the end; a module that exits without touching it gets the files in
//! `files/`. Checksums are verified at the end of each file, so modules must not install for
//! real during `Download`.

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
        self.spawn(state)?.wait()
    }

    fn spawn(&self, state: &str) -> Result<Running, String> {
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
        Ok(Running {
            child,
            out: Some(out),
            err: Some(err),
            state: state.to_owned(),
            started: Instant::now(),
            timeout: self.timeout,
            module: self.executable.display().to_string(),
        })
    }

    /// Starts `Download`: creates `stream-next` and `streams/`, runs the module.
    pub fn download(&self) -> Result<Download<'_>, String> {
        let fifo_mode = nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR;
        let next = self.tree.join("stream-next");
        nix::unistd::mkfifo(&next, fifo_mode)
            .map_err(|e| format!("cannot create {}: {e}", next.display()))?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(self.tree.join("streams"))
            .map_err(|e| format!("cannot create streams/: {e}"))?;
        let running = self.spawn("Download")?;
        Ok(Download {
            module: self,
            running: Some(running),
            mode: Mode::Undecided,
        })
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

/// A module call in progress.
struct Running {
    child: std::process::Child,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
    state: String,
    started: Instant,
    timeout: Duration,
    module: String,
}

impl Running {
    /// Whether the process has ended.
    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)) | Err(_))
    }

    fn timed_out(&self) -> bool {
        self.started.elapsed() > self.timeout
    }

    fn kill(&mut self) {
        // The module runs in its own process group: end all of it.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait(mut self) -> Result<String, String> {
        let status = loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if self.timed_out() {
                self.kill();
                return Err(format!(
                    "{} timed out after {} s",
                    self.state,
                    self.timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stdout = self
            .out
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let stderr = self
            .err
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if !stderr.trim().is_empty() {
            tracing::info!(module = %self.module, state = %self.state, stderr = %stderr.trim(), "update module output");
        }
        if status.success() {
            Ok(stdout.strip_suffix('\n').unwrap_or(&stdout).to_owned())
        } else {
            Err(format!(
                "Update Module {} failed ({status}){}{}",
                self.state,
                if stderr.trim().is_empty() { "" } else { ": " },
                stderr.trim()
            ))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Undecided,
    Streams,
    Files,
}

/// `Download` in progress: hands each payload file to the module (see the module docs).
pub struct Download<'m> {
    module: &'m Module,
    running: Option<Running>,
    mode: Mode,
}

impl Download<'_> {
    /// Opens a FIFO for writing once the module opens it for reading; `None` if the module
    /// exits first.
    fn open_writer(&mut self, fifo: &Path) -> std::io::Result<Option<std::fs::File>> {
        let running = self.running.as_mut().expect("running until finish");
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(fifo)
            {
                Ok(f) => {
                    nix::fcntl::fcntl(
                        &f,
                        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
                    )
                    .map_err(std::io::Error::from)?;
                    return Ok(Some(f));
                }
                Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
                    if running.exited() {
                        return Ok(None);
                    }
                    if running.timed_out() {
                        running.kill();
                        return Err(std::io::Error::other(
                            "the Update Module's Download timed out",
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Gives one payload file to the module (through `streams/<name>` or into `files/`).
    pub fn deliver(&mut self, name: &str, content: &mut dyn std::io::Read) -> std::io::Result<()> {
        use std::io::Write as _;
        let next = self.module.tree.join("stream-next");
        let mut next_writer = None;
        if self.mode != Mode::Files {
            next_writer = self.open_writer(&next)?;
            self.mode = if next_writer.is_some() {
                Mode::Streams
            } else {
                Mode::Files
            };
        }
        match next_writer {
            None => {
                let mut out = std::fs::File::create(self.module.file_path(name))?;
                std::io::copy(content, &mut out)?;
            }
            Some(mut w) => {
                let fifo = self.module.tree.join("streams").join(name);
                nix::unistd::mkfifo(
                    &fifo,
                    nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
                )
                .map_err(std::io::Error::from)?;
                w.write_all(format!("streams/{name}\n").as_bytes())?;
                drop(w);
                let mut out = self.open_writer(&fifo)?.ok_or_else(|| {
                    std::io::Error::other(format!("the Update Module exited before reading {name}"))
                })?;
                std::io::copy(content, &mut out)?;
            }
        }
        Ok(())
    }

    /// Ends the streams (an empty read of `stream-next`) and waits for `Download` to end.
    pub fn finish(mut self) -> Result<(), String> {
        if self.mode != Mode::Files {
            let next = self.module.tree.join("stream-next");
            if let Some(w) = self.open_writer(&next).map_err(|e| e.to_string())? {
                drop(w);
            }
        }
        self.running
            .take()
            .expect("running until finish")
            .wait()
            .map(drop)
    }
}

impl Drop for Download<'_> {
    fn drop(&mut self) {
        if let Some(mut running) = self.running.take() {
            running.kill();
        }
    }
}
