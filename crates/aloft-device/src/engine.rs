//! The install engine: artifact → checks → slot → bootloader → reboot → health check → commit
//! or roll back, with every step persisted first (see [`crate::state`]).
//!
//! Owns: the order of operations and the device's view of what is installed. Must not: parse
//! the artifact format (aloft-artifact does) or talk to a server (the daemon will).
//!
//! Built: rootfs-image (A/B slots), Update Modules (v3, payloads stored in `files/`) and empty
//! (bootstrap) payloads, with the artifact's state scripts around each state.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use aloft_artifact::{
    ArtifactInfo, ArtifactReader, DependValue, PayloadType, ReadOptions, VerifyingKey,
};
use serde::Serialize;

use crate::boot::EnvError;

/// The payload type of delta updates, applied natively (see [`crate::delta`]).
pub const DELTA_PAYLOAD_TYPE: &str = aloft_delta::PAYLOAD_TYPE;
use crate::boot::control::{BootControl, SlotId};
use crate::boot::grub::GrubEnv;
use crate::boot::grub_pair::GrubEnvPair;
use crate::boot::uboot::UbootEnv;
use crate::config::{BootedSlotDetection, Bootloader, Config};
use crate::module::{Module, RebootNeed};
use crate::scripts::{Scripts, When};
use crate::slot::{self, SlotError};
use crate::state::{self, Decision, Installed, Outcome, Pending, Persisted, Phase, StateError};

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The artifact is invalid, tampered with, or not signed by a trusted key.
    #[error("invalid artifact")]
    Artifact(#[from] aloft_artifact::ArtifactError),
    /// The artifact does not fit this device.
    #[error("artifact not installable here: {0}")]
    Incompatible(String),
    /// Another update is in progress.
    #[error("an update of {0} is in progress: commit or roll it back first")]
    Busy(String),
    /// Writing the slot failed.
    #[error("slot error")]
    Slot(#[from] SlotError),
    /// The bootloader environment failed.
    #[error("bootloader environment error")]
    Env(#[from] EnvError),
    /// The state files failed.
    #[error("state error")]
    State(#[from] StateError),
    /// The update failed and was undone (the reason is also recorded for `status`).
    #[error("update failed: {0}")]
    Failed(String),
    /// Another aloft process works on the device.
    #[error(transparent)]
    Locked(#[from] crate::lock::LockError),
    /// Something this build cannot do (yet) or this configuration does not allow.
    #[error("{0}")]
    Unsupported(String),
    /// Other I/O.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

type Result<T, E = DeviceError> = std::result::Result<T, E>;

/// After `install`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallResult {
    /// Installed and committed (no reboot needed).
    Committed,
    /// The new slot is armed: reboot into it.
    RebootRequired,
}

/// After `resume`, `commit` or `rollback`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// No update in progress.
    Nothing,
    /// A reboot is needed to go on.
    RebootRequired,
    /// The update is committed.
    Committed,
    /// The update failed (and the old system runs, or will after the reboot in progress).
    Failed(String),
    /// The new system runs on trial and is left to the daemon, which checks its health and
    /// asks the server before it commits ([`Device::resume_at_boot`] on a managed device).
    LeftToDaemon,
}

/// `aloft status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Installed artifact.
    pub artifact_name: String,
    /// Installed group.
    pub artifact_group: Option<String>,
    /// Slot running now (rootfs devices).
    pub booted_slot: Option<SlotId>,
    /// Slot the bootloader starts next, when it differs from the running one (an installed
    /// update waiting for its reboot, or a rollback), and whether that boot is a trial.
    pub next_boot: Option<NextBoot>,
    /// Phase of the update in progress.
    pub pending: Option<Phase>,
    /// Artifact of the update in progress.
    pub pending_artifact: Option<String>,
    /// The last finished update.
    pub last: Option<Outcome>,
}

/// The next boot, when it changes slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NextBoot {
    /// The slot the bootloader starts.
    pub slot: SlotId,
    /// On trial: the bootloader falls back unless it is committed.
    pub trial: bool,
}

/// A device, as its configuration describes it.
pub struct Device {
    config: Config,
    boot: Option<BootControl>,
}

impl Device {
    /// Opens the device described by `config`.
    pub fn open(config: Config) -> Result<Self> {
        let boot = match (&config.slots, &config.bootloader) {
            (Some(slots), Some(loader)) => {
                let env: Box<dyn crate::boot::EnvStore + Send + Sync> = match loader {
                    Bootloader::Uboot { fw_env_config } => {
                        Box::new(UbootEnv::from_config(fw_env_config)?)
                    }
                    Bootloader::Grub {
                        grubenv: Some(file),
                        ..
                    } => Box::new(GrubEnv::new(file)),
                    Bootloader::Grub {
                        grubenv_dir: Some(dir),
                        ..
                    } => Box::new(GrubEnvPair::new(dir)),
                    Bootloader::Grub { .. } => {
                        return Err(DeviceError::Unsupported(
                            "a GRUB bootloader needs grubenv or grubenv_dir".into(),
                        ));
                    }
                };
                let parts = [slots.a.part_number(), slots.b.part_number()];
                let [Some(a), Some(b)] = parts else {
                    return Err(DeviceError::Unsupported(
                        "slots need partition numbers".into(),
                    ));
                };
                Some(BootControl::new(env, [a, b]))
            }
            _ => None,
        };
        Ok(Self { config, boot })
    }

    /// Takes the device lock for `what` (every state-changing entry point does, once).
    fn lock(&self, what: &str) -> Result<crate::lock::Lock> {
        Ok(crate::lock::Lock::acquire(
            &self.config.data_dir.join("aloft.lock"),
            what,
            Duration::from_secs(self.config.lock_wait_seconds),
        )?)
    }

    /// `state.json`, under the lock. A record that does not parse (a damaged file system: it
    /// is only ever replaced whole) is set aside as `state.json.corrupt` for forensics, and
    /// the device is made safe without it: an update of unknown state is never committed, so
    /// a slot the bootloader has armed or runs on trial is reverted to the slot that ran
    /// before it, and the failure is recorded for `aloft status` and the daemon.
    fn load_state(&self) -> Result<Persisted> {
        use std::fmt::Write as _;
        let path = self.state_path();
        let reason = match state::load::<Persisted>(&path) {
            Err(StateError::Corrupt { reason, .. }) => reason,
            other => return Ok(other?),
        };
        let kept = state::set_aside(&path)?;
        let mut what = format!(
            "the update state {} was unreadable ({reason}); it was kept as {}",
            path.display(),
            kept.display()
        );
        if let (Some(boot), Ok(booted)) = (&self.boot, self.booted_slot()) {
            let env = boot.state()?;
            if env.slot == Some(booted) && env.upgrade_available {
                boot.revert(booted.other())?;
                let _ = write!(
                    what,
                    "; slot {booted} ran on trial and was rolled back: slot {} boots next",
                    booted.other()
                );
            } else if env.slot.is_some_and(|s| s != booted) {
                boot.revert(booted)?;
                let _ = write!(
                    what,
                    "; the update armed in slot {} was dropped",
                    booted.other()
                );
            }
        }
        tracing::error!("{what}");
        let recovered = Persisted {
            pending: None,
            last: Some(Outcome {
                artifact_name: self
                    .installed()
                    .map(|i| i.artifact_name)
                    .unwrap_or_default(),
                success: false,
                reason: Some(what),
            }),
        };
        state::save(&path, &recovered)?;
        Ok(recovered)
    }

    fn state_path(&self) -> PathBuf {
        self.config.data_dir.join("state.json")
    }

    fn installed_path(&self) -> PathBuf {
        self.config.data_dir.join("provides.json")
    }

    fn io(what: &str) -> impl FnOnce(std::io::Error) -> DeviceError + '_ {
        move |source| DeviceError::Io {
            what: what.to_owned(),
            source,
        }
    }

    /// What the device runs: the stored record, or Mender's `artifact_info` before the first
    /// commit.
    pub fn installed(&self) -> Result<Installed> {
        let stored: Installed = state::load(&self.installed_path())?;
        if !stored.artifact_name.is_empty() {
            return Ok(stored);
        }
        let mut out = Installed::default();
        if let Ok(text) = std::fs::read_to_string(&self.config.artifact_info_file) {
            for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
                if let Some((k, v)) = line.split_once('=') {
                    match k.trim() {
                        "artifact_name" => v.trim().clone_into(&mut out.artifact_name),
                        "artifact_group" => out.artifact_group = Some(v.trim().to_owned()),
                        _ => {}
                    }
                }
            }
        }
        Ok(out)
    }

    /// The device type (configuration, else Mender's `device_type` file).
    pub fn device_type(&self) -> Result<String> {
        if let Some(t) = &self.config.device_type {
            return Ok(t.clone());
        }
        let text = std::fs::read_to_string(&self.config.device_type_file)
            .map_err(Self::io("cannot read the device type file"))?;
        text.lines()
            .find_map(|l| l.strip_prefix("device_type=").map(|t| t.trim().to_owned()))
            .ok_or_else(|| {
                DeviceError::Unsupported(format!(
                    "no device_type= line in {}",
                    self.config.device_type_file.display()
                ))
            })
    }

    fn boot_id(&self) -> String {
        std::fs::read_to_string(&self.config.boot_id_file)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }

    fn boot(&self) -> Result<&BootControl> {
        self.boot.as_ref().ok_or_else(|| {
            DeviceError::Unsupported(
                "rootfs-image needs [slots] and [bootloader] in the configuration".into(),
            )
        })
    }

    /// The slot running now.
    pub fn booted_slot(&self) -> Result<SlotId> {
        let slots = self
            .config
            .slots
            .as_ref()
            .ok_or_else(|| DeviceError::Unsupported("no slots configured".into()))?;
        match self.config.booted_slot {
            BootedSlotDetection::BootloaderEnv => {
                // The variable names the slot of the *next* boot: until the reboot that an
                // armed update or a rollback waits for, the running slot is the one before.
                let persisted: Persisted = state::load(&self.state_path()).unwrap_or_default();
                if let Some(p) = persisted
                    .pending
                    .as_ref()
                    .filter(|p| p.boot_id == self.boot_id())
                {
                    match p.phase {
                        Phase::Installed => return p.from_slot.ok_or_else(no_slot),
                        Phase::RollingBack => return p.to_slot.ok_or_else(no_slot),
                        Phase::Installing | Phase::Committing => {}
                    }
                }
                self.boot()?.state()?.slot.ok_or_else(|| {
                    DeviceError::Unsupported("mender_boot_part names neither slot".into())
                })
            }
            BootedSlotDetection::Cmdline => {
                let cmdline = std::fs::read_to_string("/proc/cmdline")
                    .map_err(Self::io("cannot read /proc/cmdline"))?;
                slot_from_cmdline(&cmdline, &slots.a.device, &slots.b.device)
                    .map_err(DeviceError::Unsupported)
            }
        }
    }

    fn trusted_keys(&self) -> Result<Vec<VerifyingKey>> {
        self.config
            .verify_keys
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).map_err(|source| DeviceError::Io {
                    what: format!("cannot read the verification key {}", p.display()),
                    source,
                })?;
                VerifyingKey::from_pem(&text).map_err(|e| {
                    DeviceError::Unsupported(format!("verification key {}: {e}", p.display()))
                })
            })
            .collect()
    }

    fn check_compatible(&self, info: &ArtifactInfo, installed: &Installed) -> Result<()> {
        let device_type = self.device_type()?;
        if !info.device_types.contains(&device_type) {
            return Err(DeviceError::Incompatible(format!(
                "device type {device_type:?} is not among {:?}",
                info.device_types
            )));
        }
        if !info.depends_artifact_name.is_empty()
            && !info
                .depends_artifact_name
                .contains(&installed.artifact_name)
        {
            return Err(DeviceError::Incompatible(format!(
                "it installs only over {:?}, the device runs {:?}",
                info.depends_artifact_name, installed.artifact_name
            )));
        }
        if !info.depends_group.is_empty()
            && !installed
                .artifact_group
                .as_ref()
                .is_some_and(|g| info.depends_group.contains(g))
        {
            return Err(DeviceError::Incompatible(format!(
                "it needs one of the groups {:?}",
                info.depends_group
            )));
        }
        for payload in &info.payloads {
            for (key, want) in &payload.type_info.depends {
                let have = installed.provides.get(key);
                let ok = match (want, have) {
                    (DependValue::One(w), Some(h)) => w == h,
                    (DependValue::AnyOf(ws), Some(h)) => ws.contains(h),
                    (_, None) => false,
                };
                if !ok {
                    return Err(DeviceError::Incompatible(format!(
                        "depends on {key} = {want}, the device has {}",
                        have.map_or("nothing", String::as_str)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Installs an artifact. Signature, compatibility and depends are checked before any byte
    /// reaches a slot or a module. Rootfs images end in [`InstallResult::RebootRequired`].
    pub fn install<R: Read + Send>(
        &self,
        source: R,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<InstallResult> {
        self.install_with(source, progress, &mut || Ok(()))
    }

    /// Reads a whole artifact as an install would, without installing it: the signature
    /// (when verification keys are configured), every payload's checksum, and whether it fits
    /// this device and what it runs. For a download that waits before its install.
    pub fn verify<R: Read + Send>(&self, source: R) -> Result<ArtifactInfo> {
        let options = ReadOptions {
            trusted_keys: self.trusted_keys()?,
            ..ReadOptions::default()
        };
        let reader = ArtifactReader::open(source, &options)?;
        let info = reader.info().clone();
        self.check_compatible(&info, &self.installed()?)?;
        reader.validate()?;
        Ok(info)
    }

    /// [`Device::install`], with `before_commit` asked before an update that needs no reboot
    /// is committed (after its health check): an `Err(reason)` rolls it back instead. Updates
    /// that reboot are asked at [`Device::resume_with`].
    pub fn install_with<R: Read + Send>(
        &self,
        source: R,
        progress: &mut dyn FnMut(u64, u64),
        before_commit: Gate<'_>,
    ) -> Result<InstallResult> {
        let _lock = self.lock("install")?;
        let mut persisted = self.load_state()?;
        if let Some(p) = &persisted.pending {
            return Err(DeviceError::Busy(p.artifact_name.clone()));
        }
        let options = ReadOptions {
            trusted_keys: self.trusted_keys()?,
            ..ReadOptions::default()
        };
        let reader = ArtifactReader::open(source, &options)?;
        let info = reader.info().clone();
        let installed = self.installed()?;
        self.check_compatible(&info, &installed)?;
        let payload = &info.payloads[0];
        let pending = Pending {
            phase: Phase::Installing,
            artifact_name: info.name.clone(),
            artifact_group: info.group.clone(),
            payload_type: payload.payload_type.to_string(),
            provides: payload.type_info.provides.clone(),
            clears: payload.type_info.clears.clone(),
            from_slot: None,
            to_slot: None,
            boot_id: self.boot_id(),
            reason: None,
            install_started: false,
            supports_rollback: None,
        };
        match &payload.payload_type {
            PayloadType::Empty => {
                reader.validate()?;
                self.commit_provides(&pending)?;
                persisted.last = Some(Outcome {
                    artifact_name: info.name,
                    success: true,
                    reason: None,
                });
                state::save(&self.state_path(), &persisted)?;
                Ok(InstallResult::Committed)
            }
            PayloadType::RootfsImage => {
                self.install_rootfs(reader, &info, pending, persisted, progress, None)
            }
            PayloadType::Module(t) if t == DELTA_PAYLOAD_TYPE => {
                let described = aloft_delta::Description::from_meta(payload.meta_data.as_ref())
                    .map_err(|e| DeviceError::Incompatible(e.to_string()))?;
                self.install_rootfs(
                    reader,
                    &info,
                    pending,
                    persisted,
                    progress,
                    Some(&described),
                )
            }
            PayloadType::Module(t) => {
                let module = self.module(t)?;
                self.scripts()
                    .store_artifact_scripts(&info.scripts)
                    .map_err(Self::io("cannot store the state scripts"))?;
                persisted.pending = Some(pending.clone());
                state::save(&self.state_path(), &persisted)?;
                self.install_module(reader, &info, &installed, pending, &module, before_commit)
            }
        }
    }

    /// An A/B update: the image (or the delta against the running slot, when `delta` holds
    /// its signed description) into the inactive slot, read back, then the slot is armed.
    fn install_rootfs<R: Read + Send>(
        &self,
        reader: ArtifactReader<R>,
        info: &ArtifactInfo,
        mut pending: Pending,
        mut persisted: Persisted,
        progress: &mut dyn FnMut(u64, u64),
        delta: Option<&aloft_delta::Description>,
    ) -> Result<InstallResult> {
        let boot = self.boot()?;
        let slots = self.config.slots.as_ref().expect("boot implies slots");
        let from = self.booted_slot()?;
        let to = from.other();
        let device_of = |s: SlotId| match s {
            SlotId::A => slots.a.device.clone(),
            SlotId::B => slots.b.device.clone(),
        };
        let (device, running) = (device_of(to), device_of(from));
        self.scripts()
            .store_artifact_scripts(&info.scripts)
            .map_err(Self::io("cannot store the state scripts"))?;
        pending.from_slot = Some(from);
        pending.to_slot = Some(to);
        persisted.pending = Some(pending.clone());
        state::save(&self.state_path(), &persisted)?;
        if let Err(reason) = self.scripts().run("ArtifactInstall", When::Enter) {
            return Err(self.fail_install(&pending, "ArtifactInstall", &reason));
        }
        let record = self.config.data_dir.join("delta.json");
        let written = reader.read_payloads(|file| {
            match delta {
                None => {
                    // The slot is about to change: a cut-short delta's progress no longer holds.
                    crate::delta::forget(&record);
                    let size = file.size();
                    let expected = file.expected_sha256();
                    slot::write_image(&device, file, size, expected, &mut |n| progress(n, size))?;
                }
                Some(described) => {
                    crate::delta::apply(&device, &running, &record, file, described, progress)?;
                }
            }
            Ok(())
        });
        if let Err(e) = written {
            let reason = format!(
                "installing into slot {to} failed: {}",
                aloft_artifact::error_chain(&e)
            );
            self.fail_install(&pending, "ArtifactInstall", &reason);
            return Err(e.into());
        }
        if let Err(reason) = self.scripts().run("ArtifactInstall", When::Leave) {
            return Err(self.fail_install(&pending, "ArtifactInstall", &reason));
        }
        // Write-ahead: record the phase, then arm (idempotent, redone if cut here).
        pending.phase = Phase::Installed;
        persisted.pending = Some(pending.clone());
        state::save(&self.state_path(), &persisted)?;
        boot.try_slot(to)?;
        if let Err(reason) = self.scripts().run("ArtifactReboot", When::Enter) {
            boot.revert(from)?;
            return Err(self.fail_install(&pending, "ArtifactReboot", &reason));
        }
        Ok(InstallResult::RebootRequired)
    }

    fn module(&self, payload_type: &str) -> Result<Module> {
        let tree = self.config.data_dir.join("modules/v3/payloads/0000/tree");
        Module::new(
            &self.config.modules_dir,
            payload_type,
            tree,
            Duration::from_secs(self.config.module_timeout_seconds),
        )
        .map_err(DeviceError::Unsupported)
    }

    fn scripts(&self) -> Scripts {
        Scripts {
            device_dir: self.config.scripts_dir.clone(),
            artifact_dir: self.config.data_dir.join("scripts"),
            timeout: Duration::from_secs(self.config.state_script_timeout_seconds),
            retry_interval: Duration::from_secs(self.config.state_script_retry_interval_seconds),
            retry_timeout: Duration::from_secs(self.config.state_script_retry_timeout_seconds),
        }
    }

    /// A failure before anything became bootable: `<state>_Error` and `ArtifactFailure` scripts,
    /// then the outcome is recorded. Returns the error to hand to the caller.
    fn fail_install(&self, pending: &Pending, state: &str, reason: &str) -> DeviceError {
        let scripts = self.scripts();
        scripts.run_ignoring_failures(state, When::Error);
        scripts.run_ignoring_failures("ArtifactFailure", When::Enter);
        scripts.run_ignoring_failures("ArtifactFailure", When::Leave);
        match self.finish_failure(pending, reason) {
            Ok(()) => DeviceError::Failed(reason.to_owned()),
            Err(e) => e,
        }
    }

    fn install_module<R: Read + Send>(
        &self,
        reader: ArtifactReader<R>,
        info: &ArtifactInfo,
        installed: &Installed,
        mut pending: Pending,
        module: &Module,
        gate: Gate<'_>,
    ) -> Result<InstallResult> {
        let device_type = self.device_type()?;
        module
            .prepare(
                info,
                &installed.artifact_name,
                installed.artifact_group.as_deref().unwrap_or(""),
                &device_type,
            )
            .map_err(Self::io("cannot prepare the Update Module tree"))?;
        // No fsync of the payload: after a power cut in this phase the tree is discarded.
        let mut download = module.download().map_err(DeviceError::Unsupported)?;
        let stored = reader.read_payloads(|file| {
            let name = file.name().to_owned();
            download.deliver(&name, file)?;
            Ok(())
        });
        let downloaded = match stored {
            Ok(_) => download.finish(),
            Err(e) => {
                drop(download);
                let _ = module.call("Cleanup");
                module.remove_tree();
                let reason = format!(
                    "storing the payload failed: {}",
                    aloft_artifact::error_chain(&e)
                );
                self.finish_failure(&pending, &reason)?;
                return Err(e.into());
            }
        };
        if let Err(reason) = downloaded {
            let _ = module.call("Cleanup");
            module.remove_tree();
            return Err(self.fail_install(&pending, "Download", &reason));
        }
        let supports_rollback = match module.supports_rollback() {
            Ok(v) => v,
            Err(reason) => return Err(self.module_failure(&pending, module, &reason)),
        };
        pending.supports_rollback = Some(supports_rollback);
        let scripts = self.scripts();
        if let Err(reason) = scripts.run("ArtifactInstall", When::Enter) {
            scripts.run_ignoring_failures("ArtifactInstall", When::Error);
            return Err(self.module_failure(&pending, module, &reason));
        }
        pending.install_started = true;
        self.save_pending(&pending)?;
        if let Err(reason) = module
            .call("ArtifactInstall")
            .and_then(|_| scripts.run("ArtifactInstall", When::Leave))
        {
            scripts.run_ignoring_failures("ArtifactInstall", When::Error);
            return Err(self.module_failure(&pending, module, &reason));
        }
        match module.needs_reboot() {
            Err(reason) => Err(self.module_failure(&pending, module, &reason)),
            Ok(RebootNeed::No) => match self.health_check().and_then(|()| gate()) {
                Ok(()) => match self.finish_module_commit(pending, module)? {
                    Progress::Committed => Ok(InstallResult::Committed),
                    Progress::Failed(reason) => Err(DeviceError::Failed(reason)),
                    other => {
                        unreachable!("a module commit ends committed or failed, not {other:?}")
                    }
                },
                Err(reason) => Err(self.module_failure(&pending, module, &reason)),
            },
            Ok(need) => {
                pending.phase = Phase::Installed;
                pending.boot_id = self.boot_id();
                self.save_pending(&pending)?;
                scripts.run_ignoring_failures("ArtifactReboot", When::Enter);
                if need == RebootNeed::Yes {
                    if let Err(reason) = module.call("ArtifactReboot") {
                        return Err(self.module_failure(&pending, module, &reason));
                    }
                } else {
                    self.reboot()?;
                }
                Ok(InstallResult::RebootRequired)
            }
        }
    }

    fn save_pending(&self, pending: &Pending) -> Result<()> {
        let mut persisted: Persisted = state::load(&self.state_path())?;
        persisted.pending = Some(pending.clone());
        state::save(&self.state_path(), &persisted)?;
        Ok(())
    }

    /// `ArtifactCommit` (with its scripts), `Cleanup`, provides stored.
    fn finish_module_commit(&self, mut pending: Pending, module: &Module) -> Result<Progress> {
        let scripts = self.scripts();
        if let Err(reason) = scripts.run("ArtifactCommit", When::Enter) {
            scripts.run_ignoring_failures("ArtifactCommit", When::Error);
            return Ok(Progress::Failed(
                self.module_failure_reason(&pending, module, &reason)?,
            ));
        }
        pending.phase = Phase::Committing;
        self.save_pending(&pending)?;
        if let Err(reason) = module.call("ArtifactCommit") {
            scripts.run_ignoring_failures("ArtifactCommit", When::Error);
            return Ok(Progress::Failed(
                self.module_failure_reason(&pending, module, &reason)?,
            ));
        }
        scripts.run_ignoring_failures("ArtifactCommit", When::Leave);
        if let Err(reason) = module.call("Cleanup") {
            tracing::warn!(%reason, "Update Module Cleanup failed after a commit");
        }
        self.commit_provides(&pending)?;
        self.finish_success(&pending)?;
        // Only now: a restart before this point repeats the (idempotent) commit in the tree.
        module.remove_tree();
        Ok(Progress::Committed)
    }

    fn module_failure(&self, pending: &Pending, module: &Module, reason: &str) -> DeviceError {
        match self.module_failure_reason(pending, module, reason) {
            Ok(reason) => DeviceError::Failed(reason),
            Err(e) => e,
        }
    }

    /// The module error path of the protocol: `ArtifactRollback` when the install started and
    /// the module supports it, then `ArtifactFailure` and `Cleanup`. Without a rollback after
    /// `ArtifactInstall` ran, the device is marked `<name>_INCONSISTENT`, as Mender does.
    fn module_failure_reason(
        &self,
        pending: &Pending,
        module: &Module,
        reason: &str,
    ) -> Result<String> {
        let scripts = self.scripts();
        let mut consistent = !pending.install_started;
        if pending.install_started && pending.supports_rollback == Some(true) {
            scripts.run_ignoring_failures("ArtifactRollback", When::Enter);
            match module.call("ArtifactRollback") {
                Ok(_) => consistent = true,
                Err(e) => tracing::error!(error = %e, "Update Module rollback failed"),
            }
            scripts.run_ignoring_failures("ArtifactRollback", When::Leave);
            if consistent {
                match module.needs_reboot() {
                    Ok(RebootNeed::No) => {}
                    Ok(need) => return self.module_rollback_reboot(pending, module, reason, need),
                    Err(e) => tracing::warn!(error = %e, "NeedsArtifactReboot after the rollback"),
                }
            }
        }
        self.finish_module_failure(pending, module, reason, consistent)
    }

    /// A rollback that needs a reboot: persisted first, then `ArtifactRollbackReboot` (or the
    /// reboot command); `ArtifactVerifyRollbackReboot` follows after the restart.
    fn module_rollback_reboot(
        &self,
        pending: &Pending,
        module: &Module,
        reason: &str,
        need: RebootNeed,
    ) -> Result<String> {
        let mut rolling = pending.clone();
        rolling.phase = Phase::RollingBack;
        rolling.reason = Some(reason.to_owned());
        rolling.boot_id = self.boot_id();
        self.save_pending(&rolling)?;
        let scripts = self.scripts();
        scripts.run_ignoring_failures("ArtifactRollbackReboot", When::Enter);
        let rebooted = if need == RebootNeed::Yes {
            module.call("ArtifactRollbackReboot").map(drop)
        } else {
            self.reboot().map_err(|e| e.to_string())
        };
        if let Err(e) = rebooted {
            tracing::error!(error = %e, "the rollback reboot failed");
        }
        Ok(format!(
            "{reason} (rolled back; a reboot completes the rollback)"
        ))
    }

    /// `ArtifactFailure`, `Cleanup`, the outcome (and `_INCONSISTENT` when nothing undid the install).
    fn finish_module_failure(
        &self,
        pending: &Pending,
        module: &Module,
        reason: &str,
        consistent: bool,
    ) -> Result<String> {
        let scripts = self.scripts();
        scripts.run_ignoring_failures("ArtifactFailure", When::Enter);
        if let Err(e) = module.call("ArtifactFailure") {
            tracing::warn!(error = %e, "Update Module ArtifactFailure failed");
        }
        scripts.run_ignoring_failures("ArtifactFailure", When::Leave);
        if let Err(e) = module.call("Cleanup") {
            tracing::warn!(error = %e, "Update Module Cleanup failed");
        }
        let reason = if consistent {
            reason.to_owned()
        } else {
            let mut installed = self.installed()?;
            installed.artifact_name = format!("{}_INCONSISTENT", pending.artifact_name);
            state::save(&self.installed_path(), &installed)?;
            format!(
                "{reason}; no rollback was possible, the device is marked {}",
                installed.artifact_name
            )
        };
        self.finish_failure(pending, &reason)?;
        module.remove_tree();
        Ok(reason)
    }

    /// Resume of an Update Module update after a restart.
    fn proceed_module(&self, pending: Pending, intent: Intent, gate: Gate<'_>) -> Result<Progress> {
        let module = self.module(&pending.payload_type)?;
        let rebooted = pending.boot_id != self.boot_id();
        match pending.phase {
            Phase::RollingBack if !rebooted => Ok(Progress::RebootRequired),
            Phase::RollingBack => {
                self.scripts()
                    .run_ignoring_failures("ArtifactRollbackReboot", When::Leave);
                let reason = pending
                    .reason
                    .clone()
                    .unwrap_or_else(|| "rolled back".into());
                match module.call("ArtifactVerifyRollbackReboot") {
                    Ok(_) => Ok(Progress::Failed(
                        self.finish_module_failure(&pending, &module, &reason, true)?,
                    )),
                    Err(e) => {
                        // The rollback reboot did not take: reboot again, as Mender does.
                        tracing::error!(error = %e, "rollback reboot not verified; rebooting again");
                        let need = RebootNeed::Yes;
                        Ok(Progress::Failed(self.module_rollback_reboot(
                            &pending, &module, &reason, need,
                        )?))
                    }
                }
            }
            Phase::Installing => {
                let reason = "interrupted during the install (power cut or kill)";
                Ok(Progress::Failed(
                    self.module_failure_reason(&pending, &module, reason)?,
                ))
            }
            Phase::Committing => self.finish_module_commit(pending, &module),
            Phase::Installed if !rebooted && intent != Intent::Rollback => {
                Ok(Progress::RebootRequired)
            }
            Phase::Installed if intent == Intent::BootResume => Ok(Progress::LeftToDaemon),
            Phase::Installed if intent == Intent::Rollback => Ok(Progress::Failed(
                self.module_failure_reason(&pending, &module, "rolled back by the operator")?,
            )),
            Phase::Installed => {
                let scripts = self.scripts();
                let verified = scripts
                    .run("ArtifactReboot", When::Leave)
                    .and_then(|()| module.call("ArtifactVerifyReboot").map(drop))
                    .and_then(|()| {
                        if intent == Intent::Resume {
                            self.health_check().and_then(|()| gate())
                        } else {
                            Ok(())
                        }
                    });
                match verified {
                    Ok(()) => self.finish_module_commit(pending, &module),
                    Err(reason) => Ok(Progress::Failed(
                        self.module_failure_reason(&pending, &module, &reason)?,
                    )),
                }
            }
        }
    }

    /// Called at every start: finishes whatever a reboot or a power cut interrupted. After the
    /// reboot into a new slot it runs the health check, then commits or rolls back (and then
    /// reboots with the configured command).
    pub fn resume(&self) -> Result<Progress> {
        self.proceed(Intent::Resume, &mut || Ok(()))
    }

    /// What `aloft resume` runs at every boot. On a device managed by a daemon (a `[daemon]`
    /// section) it finishes everything but the commit of a new system on trial: that one
    /// decision belongs to the daemon, which asks the server first ([`Progress::LeftToDaemon`]).
    /// A device without a daemon commits here, after the health check, as [`Device::resume`].
    pub fn resume_at_boot(&self) -> Result<Progress> {
        let intent = if self.config.daemon.is_some() {
            Intent::BootResume
        } else {
            Intent::Resume
        };
        self.proceed(intent, &mut || Ok(()))
    }

    /// [`Device::resume`], with `before_commit` asked once the new system passed its health
    /// check and before anything is committed: an `Err(reason)` rolls the update back instead
    /// (the daemon asks its server whether the deployment was aborted meanwhile).
    pub fn resume_with(
        &self,
        before_commit: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<Progress> {
        self.proceed(Intent::Resume, before_commit)
    }

    /// Commits the update running on trial (no health check: the operator decides).
    pub fn commit(&self) -> Result<Progress> {
        self.proceed(Intent::Commit, &mut || Ok(()))
    }

    /// Rolls the update back.
    pub fn rollback(&self) -> Result<Progress> {
        self.proceed(Intent::Rollback, &mut || Ok(()))
    }

    fn proceed(&self, intent: Intent, gate: Gate<'_>) -> Result<Progress> {
        let _lock = self.lock(match intent {
            Intent::Resume | Intent::BootResume => "resume",
            Intent::Commit => "commit",
            Intent::Rollback => "rollback",
        })?;
        let persisted = self.load_state()?;
        let Some(pending) = persisted.pending.clone() else {
            // A cut right after an update's outcome was saved can leave its module tree.
            let _ =
                std::fs::remove_dir_all(self.config.data_dir.join("modules/v3/payloads/0000/tree"));
            return Ok(Progress::Nothing);
        };
        if pending.to_slot.is_none() {
            return self.proceed_module(pending, intent, gate);
        }
        let boot = self.boot()?;
        let decision = state::decide(
            Some(&pending),
            &self.boot_id(),
            self.booted_slot()?,
            boot.state()?,
        );
        tracing::info!(?decision, ?intent, artifact = %pending.artifact_name, "pending update");
        match (decision, intent) {
            (Decision::Idle, _) => Ok(Progress::Nothing),
            (Decision::Abandon, _) => {
                let from = pending.from_slot.expect("rootfs update");
                if boot.state()?.slot != Some(from) {
                    boot.revert(from)?;
                }
                let reason =
                    "interrupted while writing the new slot (power cut or kill); nothing was armed";
                self.finish_failure(&pending, reason)?;
                Ok(Progress::Failed(reason.into()))
            }
            (Decision::AwaitReboot, Intent::Rollback) if pending.phase == Phase::Installed => {
                boot.revert(pending.from_slot.expect("rootfs update"))?;
                let reason = "rolled back by the operator before the reboot";
                self.finish_failure(&pending, reason)?;
                Ok(Progress::Failed(reason.into()))
            }
            (Decision::AwaitReboot, _) => {
                match pending.phase {
                    Phase::RollingBack => boot.revert(pending.from_slot.expect("rootfs update"))?,
                    _ => boot.try_slot(pending.to_slot.expect("rootfs update"))?,
                }
                Ok(Progress::RebootRequired)
            }
            (Decision::Verify, Intent::BootResume) => Ok(Progress::LeftToDaemon),
            (Decision::Verify, Intent::Rollback) => {
                self.start_rollback(pending, "rolled back by the operator", false)
            }
            (Decision::Verify, Intent::Commit) | (Decision::FinishCommit, _) => {
                self.finish_commit(pending)
            }
            (Decision::Verify, Intent::Resume) => match self
                .scripts()
                .run("ArtifactReboot", When::Leave)
                .and_then(|()| self.health_check())
                .and_then(|()| gate())
            {
                Ok(()) => self.finish_commit(pending),
                Err(reason) => self.start_rollback(pending, &reason, true),
            },
            (Decision::FellBack, _) => {
                self.scripts()
                    .run_ignoring_failures("ArtifactFailure", When::Enter);
                self.collect_failed_boot_log(&pending);
                let reason = format!(
                    "the new slot {} did not boot: the bootloader fell back to slot {}",
                    pending.to_slot.expect("rootfs update"),
                    pending.from_slot.expect("rootfs update")
                );
                self.finish_failure(&pending, &reason)?;
                Ok(Progress::Failed(reason))
            }
            (Decision::RollbackDone, _) => {
                self.scripts()
                    .run_ignoring_failures("ArtifactRollbackReboot", When::Leave);
                self.scripts()
                    .run_ignoring_failures("ArtifactFailure", When::Enter);
                let reason = pending
                    .reason
                    .clone()
                    .unwrap_or_else(|| "rolled back".into());
                self.finish_failure(&pending, &reason)?;
                Ok(Progress::Failed(reason))
            }
            (Decision::RedoRollback, _) => {
                let reason = pending
                    .reason
                    .clone()
                    .unwrap_or_else(|| "rolled back".into());
                self.start_rollback(
                    pending,
                    &reason,
                    matches!(intent, Intent::Resume | Intent::BootResume),
                )
            }
        }
    }

    fn finish_commit(&self, mut pending: Pending) -> Result<Progress> {
        if pending.phase != Phase::Committing
            && let Err(reason) = self.scripts().run("ArtifactCommit", When::Enter)
        {
            self.scripts()
                .run_ignoring_failures("ArtifactCommit", When::Error);
            return self.start_rollback(pending, &reason, true);
        }
        pending.phase = Phase::Committing;
        self.save_pending(&pending)?;
        self.boot()?.commit()?;
        self.commit_provides(&pending)?;
        self.finish_success(&pending)?;
        self.scripts()
            .run_ignoring_failures("ArtifactCommit", When::Leave);
        Ok(Progress::Committed)
    }

    fn start_rollback(&self, mut pending: Pending, reason: &str, reboot: bool) -> Result<Progress> {
        pending.phase = Phase::RollingBack;
        pending.reason = Some(reason.to_owned());
        pending.boot_id = self.boot_id();
        let mut persisted: Persisted = state::load(&self.state_path())?;
        persisted.pending = Some(pending.clone());
        state::save(&self.state_path(), &persisted)?;
        self.boot()?
            .revert(pending.from_slot.expect("rootfs update"))?;
        if reboot {
            tracing::warn!(reason, "rolling back: rebooting into the previous slot");
            self.reboot()?;
        }
        Ok(Progress::RebootRequired)
    }

    /// Records the committed update as the last outcome; nothing is pending any more.
    fn finish_success(&self, pending: &Pending) -> Result<()> {
        let mut persisted: Persisted = state::load(&self.state_path())?;
        persisted.pending = None;
        persisted.last = Some(Outcome {
            artifact_name: pending.artifact_name.clone(),
            success: true,
            reason: None,
        });
        state::save(&self.state_path(), &persisted)?;
        Ok(())
    }

    fn finish_failure(&self, pending: &Pending, reason: &str) -> Result<()> {
        let mut persisted: Persisted = state::load(&self.state_path())?;
        persisted.pending = None;
        persisted.last = Some(Outcome {
            artifact_name: pending.artifact_name.clone(),
            success: false,
            reason: Some(reason.to_owned()),
        });
        state::save(&self.state_path(), &persisted)?;
        Ok(())
    }

    fn commit_provides(&self, pending: &Pending) -> Result<()> {
        let old = self.installed()?;
        let provides =
            state::merge_provides(&old.provides, &pending.provides, pending.clears.as_deref());
        let clears_group = pending
            .clears
            .as_ref()
            .is_none_or(|c| c.iter().any(|p| p == "artifact_group"));
        let group = pending.artifact_group.clone().or(if clears_group {
            None
        } else {
            old.artifact_group
        });
        let installed = Installed {
            artifact_name: pending.artifact_name.clone(),
            artifact_group: group,
            provides,
        };
        state::save(&self.installed_path(), &installed)?;
        Ok(())
    }

    /// Rollback forensics: after the bootloader fell back, what the failed boot left (its
    /// journal, a kernel panic kept by pstore) is read by the configured command and logged,
    /// so that it reaches the deployment's log. `ALOFT_UPDATE_BOOT_ID` names the boot that
    /// installed the update: the failed boots are the ones after it.
    fn collect_failed_boot_log(&self, pending: &Pending) {
        let Some(cmd) = &self.config.failed_boot_log_command else {
            return;
        };
        let out = crate::process::run_limited(
            Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .env("ALOFT_UPDATE_BOOT_ID", &pending.boot_id),
            crate::process::Collect::Stdout,
            Duration::from_secs(60),
        );
        match out {
            Ok((_, text)) if !text.is_empty() => {
                for line in String::from_utf8_lossy(&text).lines().take(400) {
                    tracing::warn!("failed boot: {line}");
                }
            }
            Ok(_) => tracing::warn!("the failed boot left no log (it stopped before its journal)"),
            Err(e) => tracing::warn!(error = %e, "cannot read what the failed boot left"),
        }
    }

    fn health_check(&self) -> Result<(), String> {
        let Some(cmd) = &self.config.health_check else {
            return Ok(());
        };
        run_shell(
            cmd,
            Duration::from_secs(self.config.state_script_timeout_seconds),
        )
        .map_err(|detail| format!("health check `{cmd}` failed: {detail}"))
    }

    fn reboot(&self) -> Result<()> {
        run_shell(&self.config.reboot_command, Duration::from_secs(600)).map_err(|detail| {
            DeviceError::Io {
                what: format!(
                    "reboot command `{}` failed: {detail}",
                    self.config.reboot_command
                ),
                source: std::io::Error::other("reboot"),
            }
        })
    }

    /// Everything `aloft status` shows.
    pub fn status(&self) -> Result<Status> {
        let persisted: Persisted = state::load(&self.state_path())?;
        let installed = self.installed()?;
        let booted_slot = self.booted_slot().ok();
        let next_boot = self
            .boot
            .as_ref()
            .and_then(|b| b.state().ok())
            .and_then(|env| {
                let slot = env.slot?;
                (Some(slot) != booted_slot).then_some(NextBoot {
                    slot,
                    trial: env.upgrade_available,
                })
            });
        Ok(Status {
            artifact_name: installed.artifact_name,
            artifact_group: installed.artifact_group,
            booted_slot,
            next_boot,
            pending: persisted.pending.as_ref().map(|p| p.phase),
            pending_artifact: persisted.pending.map(|p| p.artifact_name),
            last: persisted.last,
        })
    }

    /// The payload types this device installs: `rootfs-image` and delta payloads when it has
    /// A/B slots, and every Update Module in its modules folder (Mender's `update_modules`).
    pub fn update_modules(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.config.slots.is_some() {
            out.push("rootfs-image".to_owned());
            out.push(DELTA_PAYLOAD_TYPE.to_owned());
        }
        if let Ok(entries) = std::fs::read_dir(&self.config.modules_dir) {
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            names.sort();
            out.extend(names);
        }
        out
    }

    /// Stored provides, with `artifact_name` and `artifact_group`, as `show-provides` prints.
    pub fn provides(&self) -> Result<BTreeMap<String, String>> {
        let installed = self.installed()?;
        let mut all = installed.provides;
        all.insert("artifact_name".into(), installed.artifact_name);
        if let Some(g) = installed.artifact_group {
            all.insert("artifact_group".into(), g);
        }
        Ok(all)
    }
}

fn no_slot() -> DeviceError {
    DeviceError::Unsupported("the pending update names no slot".into())
}

/// Asked before a commit; `Err(reason)` rolls back.
pub type Gate<'a> = &'a mut dyn FnMut() -> Result<(), String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    Resume,
    /// `aloft resume` at boot on a daemon-managed device: never commits.
    BootResume,
    Commit,
    Rollback,
}

/// The slot whose device is the `root=` of a kernel command line (paths compared after
/// resolving symbolic links, so `/dev/disk/by-partlabel/...` names work too).
fn slot_from_cmdline(
    cmdline: &str,
    a: &std::path::Path,
    b: &std::path::Path,
) -> Result<SlotId, String> {
    let root = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("root="))
        .ok_or_else(|| "no root= on the kernel command line".to_owned())?;
    let canon = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    // `PARTUUID=`, `PARTLABEL=` and `UUID=` name the links udev makes for them.
    let named = [
        ("PARTUUID=", "/dev/disk/by-partuuid/"),
        ("PARTLABEL=", "/dev/disk/by-partlabel/"),
        ("UUID=", "/dev/disk/by-uuid/"),
    ]
    .iter()
    .find_map(|(prefix, dir)| {
        let value = root.strip_prefix(prefix)?;
        let value = if prefix.ends_with("UUID=") {
            value.to_ascii_lowercase()
        } else {
            value.to_owned()
        };
        Some(format!("{dir}{value}"))
    });
    let root = canon(std::path::Path::new(named.as_deref().unwrap_or(root)));
    if root == canon(a) {
        Ok(SlotId::A)
    } else if root == canon(b) {
        Ok(SlotId::B)
    } else {
        Err(format!(
            "root={} is neither slot ({} or {})",
            root.display(),
            a.display(),
            b.display()
        ))
    }
}

/// Runs `sh -c cmd` with a time limit; Err carries the exit status and the end of stderr.
fn run_shell(cmd: &str, limit: Duration) -> Result<(), String> {
    let (status, err) = crate::process::run_limited(
        Command::new("sh").arg("-c").arg(cmd),
        crate::process::Collect::Stderr,
        limit,
    )?;
    if status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&err);
    let tail: String = text
        .chars()
        .rev()
        .take(500)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(format!(
        "{status}{}{}",
        if tail.trim().is_empty() { "" } else { ": " },
        tail.trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_booted_slot_comes_from_root_on_the_command_line() {
        let (a, b) = (
            std::path::Path::new("/dev/mmcblk0p2"),
            std::path::Path::new("/dev/mmcblk0p3"),
        );
        let cmd = |root: &str| format!("console=ttyS0 root={root} rootwait ro");
        assert_eq!(
            slot_from_cmdline(&cmd("/dev/mmcblk0p2"), a, b),
            Ok(SlotId::A)
        );
        assert_eq!(
            slot_from_cmdline(&cmd("/dev/mmcblk0p3"), a, b),
            Ok(SlotId::B)
        );
        assert!(
            slot_from_cmdline(&cmd("/dev/sda1"), a, b)
                .unwrap_err()
                .contains("neither slot")
        );
        assert!(slot_from_cmdline("console=ttyS0", a, b).is_err());
        // Names the kernel resolves through udev's links (no such links here: compared as paths).
        let (pa, pb) = (
            std::path::Path::new("/dev/disk/by-partuuid/a1f0e0c4-0000-4000-8000-000000000002"),
            std::path::Path::new("/dev/disk/by-partuuid/a1f0e0c4-0000-4000-8000-000000000003"),
        );
        assert_eq!(
            slot_from_cmdline(
                &cmd("PARTUUID=A1F0E0C4-0000-4000-8000-000000000003"),
                pa,
                pb
            ),
            Ok(SlotId::B)
        );
        let (la, lb) = (
            std::path::Path::new("/dev/disk/by-partlabel/rootfs-a"),
            std::path::Path::new("/dev/disk/by-partlabel/rootfs-b"),
        );
        assert_eq!(
            slot_from_cmdline(&cmd("PARTLABEL=rootfs-a"), la, lb),
            Ok(SlotId::A)
        );
    }
}
