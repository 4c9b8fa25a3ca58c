//! Device configuration: `aloft.toml` (TOML, strict), or an existing Mender `mender.conf`
//! (JSON) so a Mender device keeps its configuration.
//!
//! Owns: the file formats and their defaults, and validation into one [`Config`]. Must not:
//! read anything else from the system (the device type file is read by the engine).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML/JSON for this schema.
    #[error("invalid configuration {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Which bootloader steers the A/B slots.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Bootloader {
    /// U-Boot, environment located by an `fw_env.config`-format file.
    Uboot {
        /// The `fw_env.config` file.
        #[serde(default = "default_fw_env_config")]
        fw_env_config: PathBuf,
    },
    /// GRUB: either one environment block file (`grubenv`, for a journalled `/boot`) or the
    /// lock-guarded redundant pair under `grubenv_dir` (Mender's `mender_grubenv1`/`2` layout,
    /// for a FAT ESP). Exactly one of the two is set.
    Grub {
        /// The `grubenv` file.
        #[serde(default)]
        grubenv: Option<PathBuf>,
        /// The folder holding `mender_grubenv1/` and `mender_grubenv2/`.
        #[serde(default)]
        grubenv_dir: Option<PathBuf>,
    },
}

fn default_fw_env_config() -> PathBuf {
    PathBuf::from("/etc/fw_env.config")
}

/// How the client finds out which slot it booted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BootedSlotDetection {
    /// The `root=` of `/proc/cmdline` compared with the slot devices.
    #[default]
    Cmdline,
    /// `mender_boot_part` in the bootloader environment (simulation, or boards where the
    /// bootloader writes the booted partition back).
    BootloaderEnv,
}

/// One A/B slot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slot {
    /// Block device, or a regular file in simulation.
    pub device: PathBuf,
    /// Partition number the bootloader knows it by (`mender_boot_part`). Default: the
    /// trailing digits of the device name.
    #[serde(default)]
    pub part: Option<u32>,
}

impl Slot {
    /// The partition number for `mender_boot_part`.
    pub fn part_number(&self) -> Option<u32> {
        self.part.or_else(|| {
            let name = self.device.to_string_lossy();
            let digits: String = name
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.chars().rev().collect::<String>().parse().ok()
        })
    }
}

/// The A/B slot pair.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slots {
    /// Slot A.
    pub a: Slot,
    /// Slot B.
    pub b: Slot,
}

/// `aloft.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Device type; when absent it is read from `device_type_file`.
    #[serde(default)]
    pub device_type: Option<String>,
    /// `device_type=<type>` file (Mender's format).
    #[serde(default = "default_device_type_file")]
    pub device_type_file: PathBuf,
    /// Where the client keeps its state, provides and module trees.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Update Modules (v3).
    #[serde(default = "default_modules_dir")]
    pub modules_dir: PathBuf,
    /// Rootfs state scripts.
    #[serde(default = "default_scripts_dir")]
    pub scripts_dir: PathBuf,
    /// Mender's `artifact_info` file, read when the client has no stored artifact name yet.
    #[serde(default = "default_artifact_info")]
    pub artifact_info_file: PathBuf,
    /// Public keys trusted to sign artifacts; when any is given, unsigned artifacts are refused.
    #[serde(default)]
    pub verify_keys: Vec<PathBuf>,
    /// A/B slots; without them, rootfs-image payloads are refused.
    #[serde(default)]
    pub slots: Option<Slots>,
    /// The bootloader.
    #[serde(default)]
    pub bootloader: Option<Bootloader>,
    /// How the booted slot is found.
    #[serde(default)]
    pub booted_slot: BootedSlotDetection,
    /// Shell command that decides whether a new system is healthy (exit 0) after a reboot.
    #[serde(default)]
    pub health_check: Option<String>,
    /// Shell command that prints what a failed trial boot left (its journal, a panic kept by
    /// pstore), run after the bootloader fell back; its output goes to the log, and so to the
    /// deployment's log on the server. `ALOFT_UPDATE_BOOT_ID` names the boot that installed the
    /// update. Default: none.
    #[serde(default)]
    pub failed_boot_log_command: Option<String>,
    /// Shell command that reboots the device.
    #[serde(default = "default_reboot_command")]
    pub reboot_command: String,
    /// File whose content changes at every boot (the kernel's boot id; the simulator's own).
    #[serde(default = "default_boot_id_file")]
    pub boot_id_file: PathBuf,
    /// Seconds a state script or the health check may run.
    #[serde(default = "default_script_timeout")]
    pub state_script_timeout_seconds: u64,
    /// Seconds between reruns of a state script that exited 21 ("retry later").
    #[serde(default = "default_retry_interval")]
    pub state_script_retry_interval_seconds: u64,
    /// Seconds after which a script that keeps exiting 21 has failed.
    #[serde(default = "default_retry_timeout")]
    pub state_script_retry_timeout_seconds: u64,
    /// Seconds one Update Module call may run.
    #[serde(default = "default_module_timeout")]
    pub module_timeout_seconds: u64,
    /// Seconds a command waits while another aloft process (the daemon, an install) works on
    /// the device before it refuses and changes nothing.
    #[serde(default = "default_lock_wait")]
    pub lock_wait_seconds: u64,
    /// `[daemon]`: the server and how the daemon talks to it; without it `aloft daemon`
    /// refuses to start.
    #[serde(default)]
    pub daemon: Option<DaemonConfig>,
}

/// `[daemon]` of `aloft.toml` (from `mender.conf`: `ServerURL` or the first of `Servers`,
/// `ServerCertificate`, `TenantToken`, `UpdatePollIntervalSeconds`,
/// `InventoryPollIntervalSeconds`, `RetryPollIntervalSeconds`, `RetryPollCount`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Server base URL; `https://` is assumed without a scheme.
    pub server_url: String,
    /// PEM certificate(s) trusted for the server instead of the built-in web PKI roots.
    #[serde(default)]
    pub server_certificate: Option<PathBuf>,
    /// Tenant token (multi-tenant servers); empty without.
    #[serde(default)]
    pub tenant_token: String,
    /// Seconds between update checks.
    #[serde(default = "default_update_poll")]
    pub update_poll_interval_seconds: u64,
    /// Seconds between inventory checks (the inventory is sent when it changed, and always
    /// at start and after an update).
    #[serde(default = "default_inventory_poll")]
    pub inventory_poll_interval_seconds: u64,
    /// Longest wait between retries after errors (exponential backoff with jitter up to it).
    #[serde(default = "default_retry_poll")]
    pub retry_poll_interval_seconds: u64,
    /// Attempts of a final status report or of a download without progress before giving up
    /// (0: 10).
    #[serde(default)]
    pub retry_poll_count: u32,
    /// The device's private key; made on first start when missing. Default:
    /// `<data_dir>/aloft-agent.pem`, or Mender's `/var/lib/mender/mender-agent.pem` when it exists.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Kind of key made on first start: `ed25519`, `ecdsa` (P-256) or `rsa` (3072 bits).
    #[serde(default = "default_key_type")]
    pub key_type: String,
    /// Executable printing `key=value` identity lines.
    #[serde(default = "default_identity_script")]
    pub identity_script: PathBuf,
    /// Folder of `mender-inventory-*` executables printing `key=value` lines.
    #[serde(default = "default_inventory_dir")]
    pub inventory_dir: PathBuf,
    /// Unix socket for `aloft check-update` and `aloft send-inventory` (mode 0600). Default:
    /// `<data_dir>/aloft.sock`.
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
    /// Download bandwidth limit in bytes per second (`512K`, `2M`; absent: no limit).
    #[serde(default)]
    pub download_rate_limit: Option<String>,
    /// Seconds without a byte after which a download connection counts as stalled and is
    /// resumed on a new one.
    #[serde(default = "default_stall_timeout")]
    pub download_stall_timeout_seconds: u64,
    /// Seconds between progress reports (a `downloading` status with a percentage substate).
    #[serde(default = "default_progress_interval")]
    pub progress_interval_seconds: u64,
    /// A shell command whose exit status says whether the device is healthy (0: yes), run
    /// every `health_interval_seconds`; its result goes to the server in the inventory
    /// (`aloft.health`), where rollouts compare updated devices with the rest. None: no probe.
    #[serde(default)]
    pub health_probe: Option<String>,
    /// Seconds between runs of the health probe.
    #[serde(default = "default_health_interval")]
    pub health_interval_seconds: u64,
    /// A shell command asked before installing and before rebooting into an update of a
    /// rollout with the `soft` install policy: exit status 0 goes on, anything else (or no
    /// answer within `consent_timeout_seconds`) means "later", and it is asked again at the
    /// next update check. `ALOFT_CONSENT` is `install` or `reboot`; `ALOFT_DEPLOYMENT_ID` and
    /// `ALOFT_ARTIFACT_NAME` name the update. None: soft installs go on as forced ones.
    #[serde(default)]
    pub consent_hook: Option<String>,
    /// Seconds the consent hook may take before its silence counts as "later".
    #[serde(default = "default_consent_timeout")]
    pub consent_timeout_seconds: u64,
    /// Seconds the daemon waits for the reboot command to take the system down.
    #[serde(default = "default_reboot_wait")]
    pub reboot_wait_seconds: u64,
    /// Largest artifact the daemon downloads (`512M`, `2G`). Default: the larger slot for a
    /// rootfs device, and in any case no more than the data folder's free space less
    /// `download_reserve`. More announced or sent fails the deployment with the reason.
    #[serde(default)]
    pub max_download_size: Option<String>,
    /// Space the download always leaves free in the data folder, so state files and the final
    /// report can still be written (default `8M`).
    #[serde(default = "default_download_reserve")]
    pub download_reserve: String,
    /// Lowest average download speed in bytes per second over `download_stall_timeout_seconds`
    /// (default `1K`): a slower connection (a trickle) counts as stalled and is resumed on a
    /// new one, and too many in a row fail the download. `0` turns it off.
    #[serde(default = "default_min_rate")]
    pub download_min_rate: String,
    /// Allow artifacts over plain `http://` links (default: refused; an `https://` download
    /// never follows a redirect to `http://` whatever this says).
    #[serde(default)]
    pub allow_plain_http: bool,
}

fn default_update_poll() -> u64 {
    1800
}
fn default_inventory_poll() -> u64 {
    28800
}
fn default_retry_poll() -> u64 {
    300
}
fn default_key_type() -> String {
    "ed25519".into()
}
fn default_identity_script() -> PathBuf {
    PathBuf::from("/usr/share/mender/identity/mender-device-identity")
}
fn default_inventory_dir() -> PathBuf {
    PathBuf::from("/usr/share/mender/inventory")
}
fn default_stall_timeout() -> u64 {
    60
}
fn default_health_interval() -> u64 {
    60
}
fn default_consent_timeout() -> u64 {
    60
}

fn default_progress_interval() -> u64 {
    10
}
fn default_reboot_wait() -> u64 {
    300
}
fn default_download_reserve() -> String {
    "8M".into()
}
fn default_min_rate() -> String {
    "1K".into()
}

impl DaemonConfig {
    /// A configuration for `server_url` with every other value at its default.
    pub fn new(server_url: &str) -> Self {
        Self {
            server_url: server_url.to_owned(),
            server_certificate: None,
            tenant_token: String::new(),
            update_poll_interval_seconds: default_update_poll(),
            inventory_poll_interval_seconds: default_inventory_poll(),
            retry_poll_interval_seconds: default_retry_poll(),
            retry_poll_count: 0,
            key_file: None,
            key_type: default_key_type(),
            identity_script: default_identity_script(),
            inventory_dir: default_inventory_dir(),
            control_socket: None,
            download_rate_limit: None,
            download_stall_timeout_seconds: default_stall_timeout(),
            progress_interval_seconds: default_progress_interval(),
            health_probe: None,
            health_interval_seconds: default_health_interval(),
            consent_hook: None,
            consent_timeout_seconds: default_consent_timeout(),
            reboot_wait_seconds: default_reboot_wait(),
            max_download_size: None,
            download_reserve: default_download_reserve(),
            download_min_rate: default_min_rate(),
            allow_plain_http: false,
        }
    }

    /// The configured download size limit, if any.
    pub fn max_download(&self) -> Result<Option<u64>, String> {
        self.max_download_size
            .as_deref()
            .map(|v| size_key("max_download_size", v))
            .transpose()
    }

    /// The space a download leaves free.
    pub fn reserve(&self) -> Result<u64, String> {
        size_key("download_reserve", &self.download_reserve)
    }

    /// The lowest download speed in bytes per second (0: no limit).
    pub fn min_rate(&self) -> Result<u64, String> {
        size_key("download_min_rate", &self.download_min_rate)
    }

    /// The download limit in bytes per second, if any.
    pub fn rate_limit(&self) -> Result<Option<u64>, String> {
        self.download_rate_limit
            .as_deref()
            .map(|v| size_key("download_rate_limit", v))
            .transpose()
    }
}

/// The size in `value` of the key `name`, or the error that names both.
fn size_key(name: &str, value: &str) -> Result<u64, String> {
    parse_size(value).ok_or_else(|| format!("{name} {value:?} is not a size"))
}

/// Parses a size like `64M`, `1G`, `512K` or `4096`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

fn default_device_type_file() -> PathBuf {
    PathBuf::from("/var/lib/mender/device_type")
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/aloft")
}
fn default_modules_dir() -> PathBuf {
    PathBuf::from("/usr/share/mender/modules/v3")
}
fn default_scripts_dir() -> PathBuf {
    PathBuf::from("/etc/mender/scripts")
}
fn default_artifact_info() -> PathBuf {
    PathBuf::from("/etc/mender/artifact_info")
}
fn default_boot_id_file() -> PathBuf {
    PathBuf::from("/proc/sys/kernel/random/boot_id")
}
fn default_reboot_command() -> String {
    "reboot".into()
}
fn default_script_timeout() -> u64 {
    3600
}
fn default_retry_interval() -> u64 {
    60
}
fn default_retry_timeout() -> u64 {
    1800
}
fn default_module_timeout() -> u64 {
    14400
}
fn default_lock_wait() -> u64 {
    10
}

/// The keys of `mender.conf` that aloft honours; others are ignored, as Mender does.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct MenderConf {
    #[serde(default)]
    rootfs_part_a: Option<PathBuf>,
    #[serde(default)]
    rootfs_part_b: Option<PathBuf>,
    #[serde(default)]
    artifact_verify_key: Option<PathBuf>,
    #[serde(default)]
    artifact_verify_keys: Vec<PathBuf>,
    #[serde(default)]
    device_type_file: Option<PathBuf>,
    #[serde(default)]
    state_script_timeout_seconds: Option<u64>,
    #[serde(default)]
    state_script_retry_interval_seconds: Option<u64>,
    #[serde(default)]
    state_script_retry_timeout_seconds: Option<u64>,
    #[serde(default)]
    module_timeout_seconds: Option<u64>,
    #[serde(default, rename = "ServerURL")]
    server_url: Option<String>,
    #[serde(default)]
    servers: Vec<MenderServer>,
    #[serde(default)]
    server_certificate: Option<PathBuf>,
    #[serde(default)]
    tenant_token: Option<String>,
    #[serde(default)]
    update_poll_interval_seconds: Option<u64>,
    #[serde(default)]
    inventory_poll_interval_seconds: Option<u64>,
    #[serde(default)]
    retry_poll_interval_seconds: Option<u64>,
    #[serde(default)]
    retry_poll_count: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
struct MenderServer {
    #[serde(default, rename = "ServerURL")]
    server_url: Option<String>,
}

/// The `mender.conf` keys read by [`Config::from_mender_conf`].
pub const MENDER_CONF_KEYS: [&str; 17] = [
    "ServerURL",
    "Servers",
    "ServerCertificate",
    "TenantToken",
    "UpdatePollIntervalSeconds",
    "InventoryPollIntervalSeconds",
    "RetryPollIntervalSeconds",
    "RetryPollCount",
    "RootfsPartA",
    "RootfsPartB",
    "ArtifactVerifyKey",
    "ArtifactVerifyKeys",
    "DeviceTypeFile",
    "StateScriptTimeoutSeconds",
    "StateScriptRetryIntervalSeconds",
    "StateScriptRetryTimeoutSeconds",
    "ModuleTimeoutSeconds",
];

impl Config {
    /// Loads `aloft.toml`, or a `mender.conf` when the file name ends in `.conf` or `.json`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let parse = |reason: String| ConfigError::Parse {
            path: path.to_owned(),
            reason,
        };
        let mut config = if path.extension().is_some_and(|e| e == "conf" || e == "json") {
            Self::from_mender_conf(&text).map_err(parse)?
        } else {
            toml::from_str::<Self>(&text).map_err(|e| parse(e.to_string()))?
        };
        // Relative paths are relative to the configuration file, so a simulated device's
        // folder can move.
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(base)
            .map_err(|e| parse(format!("cannot resolve its folder: {e}")))?;
        config.resolve(&base);
        config.validate().map_err(parse)?;
        Ok(config)
    }

    /// A configuration from Mender's `mender.conf` JSON (see [`MENDER_CONF_KEYS`]).
    pub fn from_mender_conf(json: &str) -> Result<Self, String> {
        let m: MenderConf = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut config: Self = toml::from_str("").map_err(|e| e.to_string())?;
        if let (Some(a), Some(b)) = (m.rootfs_part_a, m.rootfs_part_b) {
            config.slots = Some(Slots {
                a: Slot {
                    device: a,
                    part: None,
                },
                b: Slot {
                    device: b,
                    part: None,
                },
            });
            config.bootloader = Some(Bootloader::Uboot {
                fw_env_config: default_fw_env_config(),
            });
        }
        config.verify_keys = m
            .artifact_verify_key
            .into_iter()
            .chain(m.artifact_verify_keys)
            .collect();
        if let Some(f) = m.device_type_file {
            config.device_type_file = f;
        }
        let set = |target: &mut u64, value: Option<u64>| {
            if let Some(v) = value.filter(|&v| v > 0) {
                *target = v;
            }
        };
        set(
            &mut config.state_script_timeout_seconds,
            m.state_script_timeout_seconds,
        );
        set(
            &mut config.state_script_retry_interval_seconds,
            m.state_script_retry_interval_seconds,
        );
        set(
            &mut config.state_script_retry_timeout_seconds,
            m.state_script_retry_timeout_seconds,
        );
        set(&mut config.module_timeout_seconds, m.module_timeout_seconds);
        config.data_dir = PathBuf::from("/var/lib/mender/aloft");
        let url = m
            .server_url
            .filter(|u| !u.is_empty())
            .or_else(|| m.servers.into_iter().find_map(|s| s.server_url));
        if let Some(url) = url {
            let mut d = DaemonConfig::new(&url);
            d.server_certificate = m.server_certificate.filter(|p| !p.as_os_str().is_empty());
            d.tenant_token = m.tenant_token.unwrap_or_default();
            // Mender turns 0 into its default; so do we.
            set(
                &mut d.update_poll_interval_seconds,
                m.update_poll_interval_seconds,
            );
            set(
                &mut d.inventory_poll_interval_seconds,
                m.inventory_poll_interval_seconds,
            );
            set(
                &mut d.retry_poll_interval_seconds,
                m.retry_poll_interval_seconds,
            );
            d.retry_poll_count = m.retry_poll_count.unwrap_or(0);
            config.daemon = Some(d);
        }
        Ok(config)
    }

    fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.device_type_file);
        fix(&mut self.data_dir);
        fix(&mut self.modules_dir);
        fix(&mut self.scripts_dir);
        fix(&mut self.artifact_info_file);
        fix(&mut self.boot_id_file);
        self.verify_keys.iter_mut().for_each(fix);
        if let Some(d) = &mut self.daemon {
            if let Some(p) = &mut d.server_certificate {
                fix(p);
            }
            if let Some(p) = &mut d.key_file {
                fix(p);
            }
            if let Some(p) = &mut d.control_socket {
                fix(p);
            }
            fix(&mut d.identity_script);
            fix(&mut d.inventory_dir);
        }
        if let Some(s) = &mut self.slots {
            fix(&mut s.a.device);
            fix(&mut s.b.device);
        }
        match &mut self.bootloader {
            Some(Bootloader::Uboot { fw_env_config }) => fix(fw_env_config),
            Some(Bootloader::Grub {
                grubenv,
                grubenv_dir,
            }) => grubenv
                .iter_mut()
                .chain(grubenv_dir.iter_mut())
                .for_each(fix),
            None => {}
        }
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(d) = &self.daemon {
            if d.server_url.trim().is_empty() {
                return Err("[daemon] server_url is empty".into());
            }
            if !["ed25519", "ecdsa", "rsa"].contains(&d.key_type.as_str()) {
                return Err(format!(
                    "[daemon] key_type {:?}: use ed25519, ecdsa or rsa",
                    d.key_type
                ));
            }
            d.rate_limit()?;
            if d.update_poll_interval_seconds == 0 || d.retry_poll_interval_seconds == 0 {
                return Err("[daemon] poll intervals must be at least 1 second".into());
            }
        }
        if let Some(Bootloader::Grub {
            grubenv,
            grubenv_dir,
        }) = &self.bootloader
            && grubenv.is_some() == grubenv_dir.is_some()
        {
            return Err(
                "[bootloader] kind = \"grub\" takes either grubenv (one block file) or grubenv_dir (the redundant pair), not both or neither".into(),
            );
        }
        if let Some(s) = &self.slots {
            if self.bootloader.is_none() {
                return Err("slots need a [bootloader]".into());
            }
            let (a, b) = (s.a.part_number(), s.b.part_number());
            match (a, b) {
                (Some(a), Some(b)) if a != b => {}
                _ => return Err("slots need distinct partition numbers (set `part`)".into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mender_conf_keys_are_honoured() {
        let c = Config::from_mender_conf(
            r#"{"RootfsPartA":"/dev/mmcblk0p2","RootfsPartB":"/dev/mmcblk0p3","ArtifactVerifyKey":"/etc/mender/artifact-verify-key.pem","ServerURL":"https://x","DeviceTypeFile":"/data/device_type"}"#,
        )
        .unwrap();
        let slots = c.slots.unwrap();
        assert_eq!(slots.a.part_number(), Some(2));
        assert_eq!(slots.b.part_number(), Some(3));
        assert_eq!(
            c.verify_keys,
            vec![PathBuf::from("/etc/mender/artifact-verify-key.pem")]
        );
        assert_eq!(c.device_type_file, PathBuf::from("/data/device_type"));
    }

    #[test]
    fn mender_conf_server_keys_configure_the_daemon() {
        let c = Config::from_mender_conf(
            r#"{"Servers":[{"ServerURL":"https://ota.example.com"}],"ServerCertificate":"/etc/mender/server.crt","TenantToken":"t","UpdatePollIntervalSeconds":60,"InventoryPollIntervalSeconds":0,"RetryPollIntervalSeconds":30,"RetryPollCount":4}"#,
        )
        .unwrap();
        let d = c.daemon.unwrap();
        assert_eq!(d.server_url, "https://ota.example.com");
        assert_eq!(
            d.server_certificate,
            Some(PathBuf::from("/etc/mender/server.crt"))
        );
        assert_eq!(d.tenant_token, "t");
        assert_eq!(d.update_poll_interval_seconds, 60);
        assert_eq!(
            d.inventory_poll_interval_seconds, 28800,
            "0 means the default, as in Mender"
        );
        assert_eq!((d.retry_poll_interval_seconds, d.retry_poll_count), (30, 4));
        assert!(Config::from_mender_conf("{}").unwrap().daemon.is_none());
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn grub_takes_exactly_one_of_a_block_file_and_a_pair_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aloft.toml");
        let with = |keys: &str| {
            std::fs::write(
                &path,
                format!("device_type = \"x\"\n[bootloader]\nkind = \"grub\"\n{keys}"),
            )
            .unwrap();
            Config::load(&path)
        };
        for bad in ["", "grubenv = \"e\"\ngrubenv_dir = \"d\"\n"] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.contains("either grubenv"), "{bad:?}: {err}");
        }
        let pair = with("grubenv_dir = \"esp/grub\"\n").unwrap();
        assert_eq!(
            pair.bootloader,
            Some(Bootloader::Grub {
                grubenv: None,
                grubenv_dir: Some(dir.path().canonicalize().unwrap().join("esp/grub")),
            })
        );
    }

    #[test]
    fn unknown_toml_keys_are_refused_and_relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aloft.toml");
        std::fs::write(&path, "device_type = \"x\"\nbogus = 1\n").unwrap();
        assert!(
            Config::load(&path)
                .unwrap_err()
                .to_string()
                .contains("bogus")
        );
        std::fs::write(
            &path,
            "device_type = \"x\"\ndata_dir = \"data\"\n[slots]\na = { device = \"slot-a.img\", part = 2 }\nb = { device = \"slot-b.img\", part = 3 }\n[bootloader]\nkind = \"grub\"\ngrubenv = \"grubenv\"\n",
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.data_dir, dir.path().join("data"));
        assert_eq!(c.slots.unwrap().b.device, dir.path().join("slot-b.img"));
    }
}
