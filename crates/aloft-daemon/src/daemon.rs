//! The daemon loop: inventory, update checks, and each deployment from `next` to its final
//! report, resumable at every step (see [`crate::journal`]).
//!
//! A deployment goes: `downloading` (into the spool, resumable) → the artifact's header is
//! checked against the instructions → `installing` (the engine verifies and installs from the
//! spool) → either committed at once (`success`), or `rebooting` → reboot → at the next start
//! the engine runs the health check, the server is asked (`installing`) whether the deployment
//! still stands, and the update is committed (`success`) or rolled back (`failure` with the
//! reason and the log). A 409 at any report before the commit aborts it.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use aloft_api::management::InstallPolicy;
use aloft_api::status;
use aloft_artifact::{ArtifactReader, ReadOptions};
use aloft_device::config::{Config, DaemonConfig};
use aloft_device::engine::{Device, InstallResult, Progress};

use crate::api::{ApiError, Next, Server};
use crate::control::Request;
use crate::download::{self, DownloadError, Spool};
use crate::journal::{self, Control, Journal, Record, Step};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The configuration has no `[daemon]` section or it is unusable.
    #[error("{0}")]
    Config(String),
    /// The device could not be opened.
    #[error("cannot open the device")]
    Device(#[from] aloft_device::engine::DeviceError),
    /// The key could not be had.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The server client could not be set up.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Files of the daemon.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A wait of about `2^(failures-1)` seconds, at most `max`, with jitter (between half and all
/// of it), so that a fleet that lost its server does not come back in one wave.
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let base = Duration::from_secs(1u64 << failures.saturating_sub(1).min(20)).min(max);
    base.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// `interval` give or take 10 %.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + fastrand::f64() / 5.0)
}

/// The socket path of a configuration.
pub fn control_socket(config: &Config) -> PathBuf {
    config
        .daemon
        .as_ref()
        .and_then(|d| d.control_socket.clone())
        .unwrap_or_else(|| config.data_dir.join("aloft.sock"))
}

/// The running daemon.
pub struct Daemon {
    _lifetime: aloft_device::lock::Lock,
    device: Device,
    config: Config,
    settings: DaemonConfig,
    server: Server,
    journal: Journal,
    spool: Spool,
    requests: Receiver<Request>,
    last_inventory: Option<String>,
    /// What the health probe said last (none configured, or not run yet: `None`).
    health: Option<crate::health::Health>,
    /// The device's provides (with `device_type`), read once and again after each deployment.
    provides: Option<BTreeMap<String, String>>,
    /// Whether `deployment.json` may hold a deployment (a final report not yet sent, or an
    /// install that waits).
    journal_pending: bool,
    /// The deployment in the journal waits (for the server's go or the consent hook): the
    /// next update check asks again.
    held: bool,
    /// When a hold ends by itself (a window opens): the next update check comes no later.
    wake_at: Option<Instant>,
    /// The boot id this process started under: a different one means the system rebooted
    /// under us (the simulator does; a real reboot ends the process first).
    boot_id: String,
    /// The boot count and this boot's start, sent as inventory.
    boots: crate::boots::Boots,
}

fn read_boot_id(path: &Path) -> String {
    crate::boots::read_boot_id(path).unwrap_or_default()
}

impl Daemon {
    /// Sets the daemon up: key (made on first start), server client, journal, control socket.
    pub fn new(config: Config) -> Result<Self, DaemonError> {
        let settings = config.daemon.clone().ok_or_else(|| {
            DaemonError::Config(
                "the configuration has no [daemon] section (or ServerURL in mender.conf): the daemon needs a server".into(),
            )
        })?;
        settings.rate_limit().map_err(DaemonError::Config)?;
        settings.max_download().map_err(DaemonError::Config)?;
        settings.reserve().map_err(DaemonError::Config)?;
        settings.min_rate().map_err(DaemonError::Config)?;
        // One daemon per data folder, for its whole life (released by the kernel if it dies).
        let lifetime = aloft_device::lock::Lock::acquire(
            &config.data_dir.join("daemon/daemon.lock"),
            "aloft daemon",
            Duration::ZERO,
        )
        .map_err(|e| match e {
            aloft_device::lock::LockError::Held { holder, .. } => DaemonError::Config(format!(
                "another aloft daemon runs on {} ({holder}): stop it first",
                config.data_dir.display()
            )),
            other => DaemonError::Config(other.to_string()),
        })?;
        let key_path = crate::identity::key_path(settings.key_file.as_deref(), &config.data_dir);
        let key = crate::identity::load_or_create_key(&key_path, &settings.key_type)?;
        tracing::info!(key = %key_path.display(), fingerprint = %key.verifying_key().fingerprint(), "device key");
        let server = Server::new(&settings, key)?;
        let journal =
            Journal::open(&config.data_dir.join("daemon")).map_err(|source| DaemonError::Io {
                what: format!("cannot create {}", config.data_dir.join("daemon").display()),
                source,
            })?;
        let spool = Spool::in_dir(journal.dir());
        let boot_id = crate::boots::read_boot_id(&config.boot_id_file);
        let boots = crate::boots::Boots::start(
            journal.dir(),
            boot_id.as_deref(),
            crate::boots::booted_at_now(),
        );
        let (tx, requests) = std::sync::mpsc::channel();
        let socket = control_socket(&config);
        crate::control::forward_signals(tx.clone()).map_err(|source| DaemonError::Io {
            what: "cannot handle SIGUSR1/SIGUSR2".into(),
            source,
        })?;
        crate::control::listen(&socket, tx).map_err(|source| DaemonError::Io {
            what: format!("cannot listen on {}", socket.display()),
            source,
        })?;
        let device = Device::open(config.clone())?;
        Ok(Self {
            _lifetime: lifetime,
            device,
            boot_id: boot_id.unwrap_or_default(),
            boots,
            config,
            settings,
            server,
            journal,
            spool,
            requests,
            last_inventory: None,
            health: None,
            provides: None,
            journal_pending: true,
            held: false,
            wake_at: None,
        })
    }

    /// Runs until the process is stopped.
    pub fn run(mut self) -> ! {
        tracing::info!(server = %self.server.base(), "aloft daemon started");
        self.recover();
        let update_every = Duration::from_secs(self.settings.update_poll_interval_seconds);
        let inventory_every = Duration::from_secs(self.settings.inventory_poll_interval_seconds);
        let retry_max = Duration::from_secs(self.settings.retry_poll_interval_seconds);
        let mut next_update = Instant::now();
        let mut next_inventory = Instant::now();
        let health_every = Duration::from_secs(self.settings.health_interval_seconds.max(1));
        let mut next_health = Instant::now();
        let mut force_inventory = true;
        let (mut update_failures, mut inventory_failures) = (0u32, 0u32);
        loop {
            if let Some(cmd) = self.settings.health_probe.clone()
                && Instant::now() >= next_health
            {
                let now = crate::health::probe(&cmd, health_every.min(Duration::from_secs(30)));
                if self.health.as_ref() != Some(&now) {
                    tracing::info!(health = now.word(), detail = ?now, "health changed");
                    force_inventory = true;
                }
                self.health = Some(now);
                next_health = Instant::now() + health_every;
            }
            if force_inventory || Instant::now() >= next_inventory {
                match self.inventory(force_inventory) {
                    Ok(()) => {
                        inventory_failures = 0;
                        next_inventory = Instant::now() + jittered(inventory_every);
                    }
                    Err(e) => {
                        inventory_failures += 1;
                        log_api_error("inventory", &e);
                        next_inventory = Instant::now() + backoff(inventory_failures, retry_max);
                    }
                }
                force_inventory = false;
            }
            if Instant::now() >= next_update {
                match self.check_update() {
                    Ok(updated) => {
                        update_failures = 0;
                        next_update = Instant::now() + jittered(update_every);
                        if let Some(at) = self.wake_at.take() {
                            next_update = next_update.min(at);
                        }
                        force_inventory |= updated;
                    }
                    Err(e) => {
                        update_failures += 1;
                        log_api_error("update check", &e);
                        next_update =
                            Instant::now() + backoff(update_failures, retry_max.min(update_every));
                    }
                }
            }
            if force_inventory {
                continue;
            }
            let mut wake = next_update.min(next_inventory);
            if self.settings.health_probe.is_some() {
                wake = wake.min(next_health);
            }
            match self
                .requests
                .recv_timeout(wake.saturating_duration_since(Instant::now()))
            {
                Ok(Request::CheckUpdate) => {
                    tracing::info!("update check requested");
                    next_update = Instant::now();
                }
                Ok(Request::SendInventory) => {
                    tracing::info!("inventory requested");
                    force_inventory = true;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(wake.saturating_duration_since(Instant::now()));
                }
            }
        }
    }

    fn builtin_provides(
        &mut self,
    ) -> Result<BTreeMap<String, String>, aloft_device::engine::DeviceError> {
        if let Some(p) = &self.provides {
            return Ok(p.clone());
        }
        let mut provides = self.device.provides()?;
        provides.insert("device_type".into(), self.device.device_type()?);
        self.provides = Some(provides.clone());
        Ok(provides)
    }

    /// Sends the inventory when it changed since the last send (or when `force`d).
    fn inventory(&mut self, force: bool) -> Result<(), ApiError> {
        let mut builtin = self
            .builtin_provides()
            .map_err(|e| ApiError::Setup(aloft_artifact::error_chain(&e)))?;
        builtin.insert(
            "aloft_client_version".into(),
            env!("CARGO_PKG_VERSION").into(),
        );
        let mut attributes = crate::identity::inventory(&self.settings.inventory_dir, &builtin);
        // What this device can install, as Mender clients list it: the server hands out a
        // delta only to a device that names it.
        attributes.retain(|a| a.name != "update_modules");
        attributes.push(aloft_api::device::InventoryAttribute {
            name: "update_modules".into(),
            value: serde_json::json!(self.device.update_modules()),
            description: None,
        });
        if let Some(h) = &self.health {
            attributes
                .retain(|a| a.name != crate::health::ATTRIBUTE && a.name != crate::health::DETAIL);
            attributes.push(aloft_api::device::InventoryAttribute {
                name: crate::health::ATTRIBUTE.into(),
                value: serde_json::json!(h.word()),
                description: None,
            });
            if let crate::health::Health::Failing(why) = h {
                attributes.push(aloft_api::device::InventoryAttribute {
                    name: crate::health::DETAIL.into(),
                    value: serde_json::json!(why),
                    description: None,
                });
            }
        }
        attributes.retain(|a| a.name != crate::boots::BOOTED_AT && a.name != crate::boots::BOOTS);
        attributes.extend(self.boots.attributes());
        let text = serde_json::to_string(&attributes).expect("serialisable");
        if !force && self.last_inventory.as_ref() == Some(&text) {
            tracing::debug!("inventory unchanged");
            return Ok(());
        }
        self.server.send_inventory(&attributes)?;
        tracing::info!(attributes = attributes.len(), "inventory sent");
        self.last_inventory = Some(text);
        Ok(())
    }

    /// One update check; `Ok(true)` when a deployment was worked on.
    fn check_update(&mut self) -> Result<bool, ApiError> {
        if self.journal_pending {
            if let Some(record) = self.journal.load() {
                // A final report that could not be sent yet, or an install that waits.
                self.held = false;
                self.run_deployment(record);
                return Ok(!self.held);
            }
            self.journal_pending = false;
        }
        let provides = self
            .builtin_provides()
            .map_err(|e| ApiError::Setup(aloft_artifact::error_chain(&e)))?;
        match self.server.next(&provides)? {
            Next::Nothing => Ok(false),
            Next::Invalid { id, reason } => {
                tracing::error!(deployment = %id, %reason, "refused the deployment instructions");
                if !id.is_empty() {
                    let record = Record {
                        id,
                        ..Record::default()
                    };
                    journal::start_log(&self.journal.log_path(), true);
                    self.finish(record, status::FAILURE, Some(reason));
                }
                Ok(true)
            }
            Next::Deployment(instructions) => {
                let id = instructions.id;
                let artifact = instructions.artifact;
                let installed = provides.get("artifact_name").cloned().unwrap_or_default();
                if artifact.artifact_name == installed {
                    tracing::info!(deployment = %id, artifact = %installed, "already installed");
                    if let Err(e) = self.server.report(&id, status::ALREADY_INSTALLED, None) {
                        log_api_error("status report", &e);
                    }
                    return Ok(true);
                }
                journal::start_log(&self.journal.log_path(), true);
                tracing::info!(deployment = %id, artifact = %artifact.artifact_name, "new deployment");
                let record = Record {
                    id,
                    artifact_name: artifact.artifact_name,
                    uri: artifact.source.uri,
                    control: instructions.aloft.as_ref().map(|c| Control {
                        soft: c.install == InstallPolicy::Soft,
                        ..Control::default()
                    }),
                    ..Record::default()
                };
                let device_type = provides.get("device_type").cloned().unwrap_or_default();
                if !artifact.device_types_compatible.contains(&device_type) {
                    let reason = format!(
                        "the deployment is for device types {:?}; this device is {device_type:?}",
                        artifact.device_types_compatible
                    );
                    self.finish(record, status::FAILURE, Some(reason));
                    return Ok(true);
                }
                self.spool.remove();
                if let Err(e) = self.journal.save(&record) {
                    tracing::error!(error = %e, "cannot record the deployment");
                    self.finish(record, status::FAILURE, Some(e.to_string()));
                    return Ok(true);
                }
                self.run_deployment(record);
                Ok(true)
            }
        }
    }

    /// Finishes what a restart interrupted: the engine's own resume (health check, commit or
    /// roll back), then the deployment from the step its record names.
    fn recover(&mut self) {
        let record = self.journal.load();
        if record.is_some() {
            journal::start_log(&self.journal.log_path(), false);
        }
        let progress = {
            let server = &mut self.server;
            let id = record.as_ref().map(|r| r.id.clone());
            self.device.resume_with(&mut || match &id {
                Some(id) => pre_commit(server, id),
                None => Ok(()),
            })
        };
        let progress = match progress {
            Ok(p) => p,
            Err(e) => {
                let reason = aloft_artifact::error_chain(&e);
                tracing::error!(%reason, "resuming the update failed");
                match record {
                    Some(r) if r.step != Step::Reporting => {
                        self.finish(r, status::FAILURE, Some(reason));
                    }
                    Some(r) => self.run_deployment(r),
                    None => {}
                }
                return;
            }
        };
        let Some(mut record) = record else {
            if progress != Progress::Nothing {
                tracing::info!(?progress, "finished an update started outside the daemon");
            }
            return;
        };
        tracing::info!(deployment = %record.id, step = ?record.step, ?progress, "resuming the deployment");
        match progress {
            Progress::Committed => self.finish(record, status::SUCCESS, None),
            Progress::Failed(reason) => {
                if record.step == Step::Installing
                    && record.installs < 3
                    && self.spool_complete(&record)
                {
                    tracing::warn!(%reason, "the install was interrupted; installing again from the downloaded artifact");
                    self.run_deployment(record);
                } else {
                    self.finish(record, status::FAILURE, Some(reason));
                }
            }
            Progress::LeftToDaemon => {
                tracing::error!("the engine left a commit to the daemon while asked by it");
            }
            Progress::RebootRequired => {
                record.step = Step::Rebooting;
                let _ = self.journal.save(&record);
                self.run_deployment(record);
            }
            Progress::Nothing => match record.step {
                Step::Installing
                    if self
                        .device
                        .installed()
                        .is_ok_and(|i| i.artifact_name == record.artifact_name) =>
                {
                    self.finish(record, status::SUCCESS, None);
                }
                Step::Installing if !self.spool_complete(&record) => {
                    self.finish(
                        record,
                        status::FAILURE,
                        Some("interrupted during the install, and the download is gone".into()),
                    );
                }
                Step::Rebooting => {
                    let last = self.device.status().ok().and_then(|s| s.last);
                    match last {
                        Some(o) if o.artifact_name == record.artifact_name && o.success => {
                            self.finish(record, status::SUCCESS, None);
                        }
                        Some(o) if o.artifact_name == record.artifact_name => {
                            self.finish(record, status::FAILURE, o.reason);
                        }
                        _ => self.finish(
                            record,
                            status::FAILURE,
                            Some("the update's outcome was lost (its state was reset)".into()),
                        ),
                    }
                }
                _ => self.run_deployment(record),
            },
        }
    }

    fn spool_complete(&self, record: &Record) -> bool {
        let p = self.spool.partial();
        p.deployment == record.id && p.offset > 0 && p.total == Some(p.offset)
    }

    fn download_options(&self, uri: &str) -> download::Options {
        let same_host = crate::api::host_of(uri) == self.server.host();
        download::Options {
            stall_timeout: Duration::from_secs(self.settings.download_stall_timeout_seconds.max(1)),
            rate_limit: self.settings.rate_limit().ok().flatten(),
            max_failures: if self.settings.retry_poll_count == 0 {
                10
            } else {
                self.settings.retry_poll_count
            },
            max_backoff: Duration::from_secs(self.settings.retry_poll_interval_seconds),
            trusted_certs: if same_host {
                self.settings.server_certificate.clone()
            } else {
                None
            },
            max_size: self.download_limit(),
            min_rate: self.settings.min_rate().unwrap_or(0),
            allow_plain_http: self.settings.allow_plain_http,
        }
    }

    /// [`download::size_limit`] for this device now.
    fn download_limit(&self) -> u64 {
        let largest_slot = self.config.slots.as_ref().and_then(|slots| {
            [&slots.a.device, &slots.b.device]
                .into_iter()
                .filter_map(|d| {
                    let mut f = std::fs::File::open(d).ok()?;
                    std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).ok()
                })
                .max()
        });
        // The field types are narrower on some 32-bit targets.
        #[allow(clippy::useless_conversion)]
        let free = nix::sys::statvfs::statvfs(self.journal.dir()).map_or(u64::MAX, |s| {
            u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size()))
        });
        let spooled = std::fs::metadata(&self.spool.file).map_or(0, |m| m.len());
        download::size_limit(
            self.settings.max_download().ok().flatten(),
            largest_slot,
            free,
            spooled,
            self.settings.reserve().unwrap_or(8 << 20),
        )
    }

    /// Drives a deployment from the step its record names to its final report.
    fn run_deployment(&mut self, mut record: Record) {
        let mut refreshed = false;
        loop {
            match record.step {
                Step::Downloading => {
                    match self.server.report(&record.id, status::DOWNLOADING, None) {
                        Err(ApiError::Aborted) => return self.aborted(&record),
                        Err(e) => log_api_error("status report", &e),
                        Ok(()) => {}
                    }
                    let options = self.download_options(&record.uri);
                    let interval =
                        Duration::from_secs(self.settings.progress_interval_seconds.max(1));
                    let server = &mut self.server;
                    let id = record.id.clone();
                    let mut last = Instant::now();
                    let fetched = download::download(
                        &record.uri,
                        &self.spool,
                        &record.id,
                        &options,
                        &mut |bytes, total| {
                            if last.elapsed() < interval {
                                return Ok(());
                            }
                            last = Instant::now();
                            let substate = progress_text("downloading", bytes, total);
                            match server.report(&id, status::DOWNLOADING, Some(&substate)) {
                                Err(ApiError::Aborted) => Err("the deployment was aborted".into()),
                                _ => Ok(()),
                            }
                        },
                    );
                    match fetched {
                        Ok(done) => tracing::info!(
                            size = done.size,
                            fetched = done.fetched,
                            resumed_from = done.resumed_from,
                            "download complete"
                        ),
                        Err(DownloadError::Cancelled(_)) => return self.aborted(&record),
                        Err(DownloadError::Refused { status: code }) if !refreshed => {
                            // An expired link (a download resumed days later): ask again.
                            refreshed = true;
                            if let Some(uri) = self.fresh_link(&record) {
                                tracing::info!(
                                    code,
                                    "the download link was refused; got a new one"
                                );
                                record.uri = uri;
                                let _ = self.journal.save(&record);
                                continue;
                            }
                            let reason = format!("download failed: the server answered {code}");
                            return self.finish(record, status::FAILURE, Some(reason));
                        }
                        Err(e) => {
                            let reason =
                                format!("download failed: {}", aloft_artifact::error_chain(&e));
                            return self.finish(record, status::FAILURE, Some(reason));
                        }
                    }
                    if let Err(reason) = self.check_header(&mut record) {
                        return self.finish(record, status::FAILURE, Some(reason));
                    }
                    record.step = if record.control.is_some() {
                        Step::Waiting
                    } else {
                        Step::Installing
                    };
                    if let Err(e) = self.journal.save(&record) {
                        return self.finish(record, status::FAILURE, Some(e.to_string()));
                    }
                }
                Step::Waiting => {
                    let control = record.control.get_or_insert_default();
                    if !control.verified {
                        if let Err(reason) = self.verify_spool() {
                            if self.fall_back_or_fail(&mut record, reason) {
                                continue;
                            }
                            return;
                        }
                        record.control.get_or_insert_default().verified = true;
                        let _ = self.journal.save(&record);
                    }
                    match self.install_go(&mut record) {
                        Go::Now => {
                            record.step = Step::Installing;
                            record.control.get_or_insert_default().waiting = None;
                            if let Err(e) = self.journal.save(&record) {
                                return self.finish(record, status::FAILURE, Some(e.to_string()));
                            }
                        }
                        Go::Later(reason) => {
                            return self.park(record, status::PAUSE_BEFORE_INSTALLING, reason);
                        }
                        Go::Aborted => return self.aborted(&record),
                    }
                }
                Step::Installing => {
                    match self.server.report(&record.id, status::INSTALLING, None) {
                        Err(ApiError::Aborted) => return self.aborted(&record),
                        Err(e) => log_api_error("status report", &e),
                        Ok(()) => {}
                    }
                    record.installs += 1;
                    let _ = self.journal.save(&record);
                    let file = match download::open(&self.spool) {
                        Ok(f) => f,
                        Err(e) => {
                            return self.finish(record, status::FAILURE, Some(e.to_string()));
                        }
                    };
                    // Both callbacks talk to the server, one at a time.
                    let server = std::cell::RefCell::new(&mut self.server);
                    let id = record.id.clone();
                    let interval =
                        Duration::from_secs(self.settings.progress_interval_seconds.max(1));
                    let mut last = Instant::now();
                    let installed = self.device.install_with(
                        BufReader::with_capacity(64 * 1024, file),
                        &mut |n, total| {
                            if last.elapsed() >= interval {
                                last = Instant::now();
                                let substate = progress_text("installing", n, Some(total));
                                let _ = server.borrow_mut().report(
                                    &id,
                                    status::INSTALLING,
                                    Some(&substate),
                                );
                            }
                        },
                        &mut || pre_commit(&mut server.borrow_mut(), &id),
                    );
                    match installed {
                        Ok(InstallResult::Committed) => {
                            self.spool.remove();
                            return self.finish(record, status::SUCCESS, None);
                        }
                        Ok(InstallResult::RebootRequired) => {
                            self.spool.remove();
                            record.step = Step::Rebooting;
                            let _ = self.journal.save(&record);
                        }
                        Err(e) => {
                            let reason = aloft_artifact::error_chain(&e);
                            if self.fall_back_or_fail(&mut record, reason) {
                                continue;
                            }
                            return;
                        }
                    }
                }
                Step::Rebooting => {
                    if record.control.as_ref().is_some_and(|c| c.soft)
                        && let Go::Later(reason) = self.consent("reboot", &record)
                    {
                        return self.park(record, status::PAUSE_BEFORE_REBOOTING, reason);
                    }
                    match self.server.report(&record.id, status::REBOOTING, None) {
                        Err(ApiError::Aborted) => {
                            self.rollback_after_abort();
                            return self.aborted(&record);
                        }
                        Err(e) => log_api_error("status report", &e),
                        Ok(()) => {}
                    }
                    let reason = self.reboot();
                    // Only reached when the system did not go down.
                    tracing::error!(%reason, "the reboot did not happen; rolling back");
                    if let Err(e) = self.device.rollback() {
                        tracing::error!(error = %aloft_artifact::error_chain(&e), "rollback failed");
                    }
                    return self.finish(record, status::FAILURE, Some(reason));
                }
                Step::Reporting => return self.send_final(&record),
            }
        }
    }

    /// Reads the spooled artifact whole (signature, checksums, fit) before it waits.
    fn verify_spool(&self) -> Result<(), String> {
        let file = download::open(&self.spool).map_err(|e| e.to_string())?;
        self.device
            .verify(BufReader::with_capacity(64 * 1024, file))
            .map(|info| tracing::info!(artifact = %info.name, "the download is verified; the install waits for the go"))
            .map_err(|e| {
                format!(
                    "the downloaded artifact failed verification: {}",
                    aloft_artifact::error_chain(&e)
                )
            })
    }

    /// Whether a downloaded deployment may install now: the server's current instructions
    /// (a window, a release, a pause) and, under the soft policy, the consent hook.
    fn install_go(&mut self, record: &mut Record) -> Go {
        let Some(provides) = self.provides_for(record) else {
            return Go::Later("cannot read the installed software's provides".into());
        };
        match self.server.next(&provides) {
            Ok(Next::Deployment(d)) if d.id == record.id => {
                if let Some(c) = &d.aloft {
                    record.control.get_or_insert_default().soft = c.install == InstallPolicy::Soft;
                    if let Some(hold) = &c.hold {
                        self.wake_at = c.until.as_deref().and_then(wake_after);
                        return Go::Later(hold.clone());
                    }
                }
            }
            Ok(_) => {
                // Not handed out again: the status report says whether it was aborted.
                let why = "the server did not hand the deployment out again";
                return match self.server.report(
                    &record.id,
                    status::PAUSE_BEFORE_INSTALLING,
                    Some(why),
                ) {
                    Err(ApiError::Aborted) => Go::Aborted,
                    _ => Go::Later(why.into()),
                };
            }
            Err(ApiError::Aborted) => return Go::Aborted,
            Err(e) => return Go::Later(format!("cannot ask the server: {e}")),
        }
        if record.control.as_ref().is_some_and(|c| c.soft) {
            self.consent("install", record)
        } else {
            Go::Now
        }
    }

    /// Asks the consent hook (`question`: `install` or `reboot`); without one, go.
    fn consent(&self, question: &str, record: &Record) -> Go {
        let Some(hook) = &self.settings.consent_hook else {
            return Go::Now;
        };
        let timeout = Duration::from_secs(self.settings.consent_timeout_seconds.max(1));
        let env = [
            ("ALOFT_CONSENT", question),
            ("ALOFT_DEPLOYMENT_ID", record.id.as_str()),
            ("ALOFT_ARTIFACT_NAME", record.artifact_name.as_str()),
        ];
        match crate::hook::run("the consent hook", hook, &env, timeout) {
            Ok(()) => {
                tracing::info!(deployment = %record.id, question, "the consent hook agreed");
                Go::Now
            }
            Err(refusal) => Go::Later(format!(
                "waiting for the device's consent to {question}: {}",
                refusal.reason
            )),
        }
    }

    /// Leaves a deployment waiting: reports `status` with the reason when it changed, keeps
    /// the record, and lets the next update check ask again.
    fn park(&mut self, mut record: Record, status: &str, reason: String) {
        let control = record.control.get_or_insert_default();
        if control.waiting.as_deref() != Some(reason.as_str()) {
            tracing::info!(deployment = %record.id, %reason, "the update waits");
            match self.server.report(&record.id, status, Some(&reason)) {
                Err(ApiError::Aborted) => {
                    if record.step == Step::Rebooting {
                        self.rollback_after_abort();
                    }
                    return self.aborted(&record);
                }
                Err(e) => log_api_error("status report", &e),
                Ok(()) => record.control.get_or_insert_default().waiting = Some(reason),
            }
            let _ = self.journal.save(&record);
        }
        self.held = true;
        self.journal_pending = true;
    }

    /// A new download link for deployment `id`, from `next` (the server hands out the
    /// unfinished deployment again).
    fn fresh_link(&mut self, record: &Record) -> Option<String> {
        let provides = self.provides_for(record)?;
        match self.server.next(&provides) {
            Ok(Next::Deployment(d)) if d.id == record.id => Some(d.artifact.source.uri),
            _ => None,
        }
    }

    /// The artifact in the spool is the one the instructions named.
    fn check_header(&self, record: &mut Record) -> Result<(), String> {
        let file = download::open(&self.spool).map_err(|e| e.to_string())?;
        let reader =
            ArtifactReader::open(BufReader::new(file), &ReadOptions::default()).map_err(|e| {
                format!(
                    "the downloaded artifact is invalid: {}",
                    aloft_artifact::error_chain(&e)
                )
            })?;
        let name = &reader.info().name;
        if *name != record.artifact_name {
            return Err(format!(
                "the server announced artifact {:?} but sent {name:?}",
                record.artifact_name
            ));
        }
        record.delta = reader
            .info()
            .payloads
            .iter()
            .any(|p| p.payload_type.as_str() == Some(aloft_device::engine::DELTA_PAYLOAD_TYPE));
        Ok(())
    }

    /// The provides a deployment's `next` requests send: after a failed delta, without the
    /// checksum deltas depend on, so that the server hands out the full artifact.
    fn provides_for(&mut self, record: &Record) -> Option<BTreeMap<String, String>> {
        let mut provides = self.builtin_provides().ok()?;
        if record.full {
            provides.remove("rootfs-image.checksum");
        }
        Some(provides)
    }

    /// After a delta failed: the full artifact of the same deployment, from the start.
    fn fall_back_to_full(&mut self, record: &mut Record, reason: &str) -> bool {
        tracing::warn!(%reason, "the delta could not be applied; downloading the full artifact");
        record.full = true;
        let Some(provides) = self.provides_for(record) else {
            return false;
        };
        match self.server.next(&provides) {
            Ok(Next::Deployment(d)) if d.id == record.id => {
                self.spool.remove();
                record.uri = d.artifact.source.uri;
                record.delta = false;
                record.installs = 0;
                record.step = Step::Downloading;
                if let Some(c) = record.control.as_mut() {
                    // The full artifact is verified anew before it waits.
                    c.verified = false;
                    c.waiting = None;
                }
                self.journal.save(record).is_ok()
            }
            _ => false,
        }
    }

    /// After the spooled artifact failed (its verification or its install): a delta starts
    /// over with the full artifact (`true`: go on with `record`); anything else ends the
    /// deployment as failed.
    fn fall_back_or_fail(&mut self, record: &mut Record, reason: String) -> bool {
        if record.delta && !record.full && self.fall_back_to_full(record, &reason) {
            return true;
        }
        self.spool.remove();
        self.finish(std::mem::take(record), status::FAILURE, Some(reason));
        false
    }

    fn rollback_after_abort(&self) {
        match self.device.rollback() {
            Ok(p) => tracing::info!(?p, "rolled back the aborted deployment"),
            Err(e) => tracing::error!(error = %aloft_artifact::error_chain(&e), "rollback failed"),
        }
    }

    /// Runs the reboot command and waits for the system to go down. When the boot id changes
    /// under this process (a simulated device), the daemon starts over as after a boot.
    /// Returns only when no reboot happened, with the reason.
    fn reboot(&self) -> String {
        let current = read_boot_id(&self.config.boot_id_file);
        if current == self.boot_id {
            tracing::info!(command = %self.config.reboot_command, "rebooting into the new software");
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(&self.config.reboot_command)
                .stdin(std::process::Stdio::null())
                .status();
            match status {
                Ok(s) if s.success() => {}
                Ok(s) => {
                    return format!(
                        "the reboot command `{}` failed: {s}",
                        self.config.reboot_command
                    );
                }
                Err(e) => return format!("cannot run the reboot command: {e}"),
            }
            let deadline = Instant::now() + Duration::from_secs(self.settings.reboot_wait_seconds);
            while read_boot_id(&self.config.boot_id_file) == self.boot_id {
                if Instant::now() >= deadline {
                    return format!(
                        "the reboot command `{}` ran but the system did not reboot within {} s",
                        self.config.reboot_command, self.settings.reboot_wait_seconds
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        tracing::info!("the system rebooted under the daemon: starting over");
        journal::stop_log();
        let error = restart_process();
        format!("cannot start the daemon again after the reboot: {error}")
    }

    /// Records the final status durably, then reports it.
    fn finish(&mut self, mut record: Record, final_status: &str, reason: Option<String>) {
        if let Some(r) = &reason {
            tracing::error!(deployment = %record.id, reason = %r, "deployment failed");
        } else {
            tracing::info!(deployment = %record.id, status = final_status, "deployment finished");
        }
        if final_status == status::SUCCESS {
            // Every final `success` follows a commit (after the reboot, or without one). Reset
            // before the final status is recorded: after a cut in between, the next start
            // finishes the deployment (and resets) again; the other way round it would be lost.
            self.boots.committed();
        }
        record.step = Step::Reporting;
        record.status = Some(final_status.to_owned());
        record.reason = reason;
        if let Err(e) = self.journal.save(&record) {
            tracing::error!(error = %e, "cannot record the final status; reporting it now");
        }
        self.send_final(&record);
    }

    /// Sends the final status (and the log after a failure), retrying with backoff; the
    /// record stays until the server has it, so a later check or restart sends it again.
    fn send_final(&mut self, record: &Record) {
        let final_status = record.status.as_deref().unwrap_or(status::FAILURE);
        let attempts = if self.settings.retry_poll_count == 0 {
            5
        } else {
            self.settings.retry_poll_count
        };
        let max = Duration::from_secs(self.settings.retry_poll_interval_seconds);
        let mut sent = false;
        for attempt in 1..=attempts {
            let substate = record
                .reason
                .as_deref()
                .map(|r| r.chars().take(1000).collect::<String>());
            match self
                .server
                .report(&record.id, final_status, substate.as_deref())
            {
                Ok(()) => {
                    sent = true;
                    break;
                }
                Err(ApiError::Aborted) => {
                    tracing::info!(deployment = %record.id, "the deployment was aborted on the server meanwhile");
                    sent = true;
                    break;
                }
                Err(e) => {
                    log_api_error("final status report", &e);
                    if attempt < attempts {
                        std::thread::sleep(backoff(attempt, max));
                    }
                }
            }
        }
        // Whatever happened, the installed software may have changed.
        self.provides = None;
        if !sent {
            tracing::warn!(deployment = %record.id, "the final status is kept and sent again at the next check");
            self.journal_pending = true;
            return;
        }
        if final_status == status::FAILURE {
            let messages = self.journal.messages();
            if let Err(e) = self.server.upload_log(&record.id, messages) {
                log_api_error("log upload", &e);
            }
        }
        self.journal.clear();
        self.spool.remove();
    }

    /// A 409: the deployment is over on the server; nothing is reported.
    fn aborted(&mut self, record: &Record) {
        self.provides = None;
        tracing::warn!(deployment = %record.id, "the deployment was aborted on the server; stopping it");
        self.spool.remove();
        self.journal.clear();
    }
}

/// The report before a commit (after the reboot, or after a module install that needs none):
/// with a fresh token, as Mender does. A 409
/// rolls the update back; a server that cannot be reached does not (the new system passed its
/// health check; the final report is retried later).
/// The instant just after `until` (RFC 3339, the server's clock) by this device's clock, with
/// a few seconds of jitter so that a fleet does not ask at the same second.
fn wake_after(until: &str) -> Option<Instant> {
    let at_us = aloft_api::time::parse_rfc3339(until)?;
    let wait_us = at_us.saturating_sub(aloft_api::time::now_us()).max(0);
    let wait = Duration::from_micros(u64::try_from(wait_us).ok()?)
        + Duration::from_millis(fastrand::u64(1000..5000));
    Instant::now().checked_add(wait)
}

/// Whether a downloaded update may install now.
enum Go {
    /// Yes.
    Now,
    /// Not yet, for this reason (asked again at the next update check).
    Later(String),
    /// The deployment was aborted on the server.
    Aborted,
}

fn pre_commit(server: &mut Server, id: &str) -> Result<(), String> {
    server.forget_token();
    for attempt in 1..=3 {
        match server.report(id, status::INSTALLING, Some("committing")) {
            Ok(()) => return Ok(()),
            Err(ApiError::Aborted) => {
                return Err("the deployment was aborted on the server before the commit".into());
            }
            Err(e) => {
                log_api_error("pre-commit status report", &e);
                std::thread::sleep(backoff(attempt, Duration::from_secs(10)));
            }
        }
    }
    tracing::warn!("the server cannot be reached before the commit; committing the healthy update");
    Ok(())
}

fn progress_text(what: &str, bytes: u64, total: Option<u64>) -> String {
    #[allow(clippy::cast_precision_loss)]
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    match total {
        Some(t) if t > 0 => format!(
            "{what} {}% ({:.1} of {:.1} MiB)",
            bytes.saturating_mul(100) / t,
            mib(bytes),
            mib(t)
        ),
        _ => format!("{what} {:.1} MiB", mib(bytes)),
    }
}

fn log_api_error(what: &str, e: &ApiError) {
    match e {
        ApiError::Unauthorized => {
            tracing::info!("{what}: waiting for the server to accept this device");
        }
        other => tracing::warn!(error = %aloft_artifact::error_chain(other), "{what} failed"),
    }
}

/// Replaces this process with a new run of the same command line (after a simulated reboot).
fn restart_process() -> std::io::Error {
    use std::os::unix::process::CommandExt as _;
    match std::env::current_exe() {
        Ok(exe) => std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .exec(),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let max = Duration::from_secs(60);
        for _ in 0..100 {
            let first = backoff(1, max);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
            let late = backoff(30, max);
            assert!(late >= Duration::from_secs(30) && late <= max);
        }
        assert_eq!(
            progress_text("downloading", 512 << 10, Some(1 << 20)),
            "downloading 50% (0.5 of 1.0 MiB)"
        );
    }
}
