//! A simulated A/B device in a folder, for tests, the demo and trying aloft on a laptop
//! (feature `sim`; `aloftctl sim` is its command line).
//!
//! Layout of `DIR`: `slot-a.img`, `slot-b.img` (sparse files; slot A active), the bootloader
//! environment (`uboot.env` located by `fw_env.config`, a redundant pair, or GRUB's
//! lock-guarded pair under `grub/`, as `aloftctl image build` lays out a FAT ESP),
//! `device_type`, `artifact_info`, `boot-id`, `booted-slot`, `data/`, `scripts/`, and
//! `aloft.toml`, the client configuration. `slot-X.broken` marks a slot that does not boot.
//!
//! [`reboot`] plays the bootloader with Mender's U-Boot logic: with `upgrade_available=1`, the
//! first boot counts `bootcount`; a boot with `bootcount` at the limit (1) means the new system
//! never committed, so the bootloader switches back to the other slot and clears
//! `upgrade_available`. A slot marked broken "hangs" and the watchdog resets the board.

use std::path::{Path, PathBuf};

use crate::boot::control::SlotId;
use crate::boot::grub_pair::GrubEnvPair;
use crate::boot::uboot::UbootEnv;
use crate::boot::{EnvError, EnvStore, Vars};

/// Which bootloader the simulated device has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimBootloader {
    /// U-Boot with a redundant environment.
    Uboot,
    /// GRUB with the redundant pair of environment blocks.
    Grub,
}

/// How to make a simulated device.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Device type.
    pub device_type: String,
    /// Bootloader.
    pub bootloader: SimBootloader,
    /// Size of each slot in bytes.
    pub slot_size: u64,
    /// Name of the artifact the device runs at first.
    pub artifact_name: String,
    /// Command `aloft` runs to reboot (default: `aloftctl sim reboot DIR`).
    pub reboot_command: Option<String>,
    /// Command the simulated system runs after each boot (e.g. `aloft --config ... resume`).
    pub on_boot: Option<String>,
    /// The server its daemon talks to: writes a `[daemon]` section, an identity script and an
    /// inventory script.
    pub server: Option<SimServer>,
}

/// The server of a simulated device's daemon.
#[derive(Debug, Clone)]
pub struct SimServer {
    /// Server URL.
    pub url: String,
    /// Its certificate (copied into the device folder as `server.crt`).
    pub certificate: Option<PathBuf>,
    /// Seconds between update checks (inventory: 12 times as long; retries at most this).
    pub poll_seconds: u64,
}

/// Why the simulator failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// File trouble.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The environment failed.
    #[error("bootloader environment")]
    Env(#[from] EnvError),
    /// The device cannot boot at all.
    #[error("no slot boots: {0}")]
    Bricked(String),
}

type Result<T, E = SimError> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SimError {
    let what = what.into();
    move |source| SimError::Io { what, source }
}

const PARTS: [u32; 2] = [2, 3];

fn env_of(dir: &Path) -> Result<Box<dyn EnvStore>> {
    if dir.join("grub").exists() {
        Ok(Box::new(GrubEnvPair::new(dir.join("grub"))))
    } else {
        Ok(Box::new(UbootEnv::from_config(&dir.join("fw_env.config"))?))
    }
}

/// Creates a simulated device in `dir` (made if missing; existing device files are replaced).
pub fn create(dir: &Path, options: &SimOptions) -> Result<PathBuf> {
    std::fs::create_dir_all(dir.join("data"))
        .map_err(io(format!("cannot create {}", dir.display())))?;
    std::fs::create_dir_all(dir.join("scripts")).map_err(io("cannot create scripts/"))?;
    let dir =
        std::fs::canonicalize(dir).map_err(io(format!("cannot resolve {}", dir.display())))?;
    let write = |name: &str, data: &[u8]| {
        std::fs::write(dir.join(name), data).map_err(io(format!("cannot write {name}")))
    };
    for slot in ["slot-a.img", "slot-b.img"] {
        let f =
            std::fs::File::create(dir.join(slot)).map_err(io(format!("cannot create {slot}")))?;
        f.set_len(options.slot_size)
            .map_err(io(format!("cannot size {slot}")))?;
        let _ = std::fs::remove_file(dir.join(slot.replace(".img", ".broken")));
    }
    write(
        "device_type",
        format!("device_type={}\n", options.device_type).as_bytes(),
    )?;
    write(
        "artifact_info",
        format!("artifact_name={}\n", options.artifact_name).as_bytes(),
    )?;
    write("boot-id", b"1\n")?;
    write("booted-slot", b"a\n")?;
    let _ = std::fs::remove_file(dir.join("data/state.json"));
    let _ = std::fs::remove_file(dir.join("data/provides.json"));

    let mut vars = Vars::new();
    for (k, v) in [
        ("mender_boot_part", "2"),
        ("mender_boot_part_hex", "2"),
        ("upgrade_available", "0"),
        ("bootcount", "0"),
        ("bootlimit", "1"),
    ] {
        vars.insert(k.into(), v.into());
    }
    let bootloader = match options.bootloader {
        SimBootloader::Uboot => {
            write("uboot.env", &vec![0xffu8; 0x8000])?;
            let env = dir.join("uboot.env");
            let config = format!(
                "{} 0x0 0x4000\n{} 0x4000 0x4000\n",
                env.display(),
                env.display()
            );
            write("fw_env.config", config.as_bytes())?;
            let _ = std::fs::remove_dir_all(dir.join("grub"));
            UbootEnv::from_config(&dir.join("fw_env.config"))?.store(&vars)?;
            "kind = \"uboot\"\nfw_env_config = \"fw_env.config\"\n"
        }
        SimBootloader::Grub => {
            let _ = std::fs::remove_file(dir.join("fw_env.config"));
            let _ = std::fs::remove_file(dir.join("uboot.env"));
            let _ = std::fs::remove_dir_all(dir.join("grub"));
            GrubEnvPair::new(dir.join("grub")).store(&vars)?;
            "kind = \"grub\"\ngrubenv_dir = \"grub\"\n"
        }
    };
    let reboot = options.reboot_command.clone().unwrap_or_else(|| {
        let exe =
            std::env::current_exe().map_or_else(|_| "aloftctl".into(), |p| p.display().to_string());
        format!("'{exe}' sim reboot '{}'", dir.display())
    });
    let toml = format!(
        "# A simulated device made by `aloftctl sim create`.\n\
         device_type_file = \"device_type\"\n\
         data_dir = \"data\"\n\
         artifact_info_file = \"artifact_info\"\n\
         boot_id_file = \"boot-id\"\n\
         booted_slot = \"bootloader-env\"\n\
         scripts_dir = \"scripts\"\n\
         reboot_command = {reboot:?}\n\n\
         [slots]\n\
         a = {{ device = \"slot-a.img\", part = {} }}\n\
         b = {{ device = \"slot-b.img\", part = {} }}\n\n\
         [bootloader]\n{bootloader}",
        PARTS[0], PARTS[1],
    );
    let mut toml = toml;
    if let Some(server) = &options.server {
        toml.push_str(&daemon_section(&dir, server)?);
    }
    write("aloft.toml", toml.as_bytes())?;
    let sim = format!(
        "on_boot = {:?}\n",
        options.on_boot.clone().unwrap_or_default()
    );
    write("sim.toml", sim.as_bytes())?;
    Ok(dir.join("aloft.toml"))
}

/// Marks a slot as booting or not.
pub fn set_bootable(dir: &Path, slot: SlotId, bootable: bool) -> Result<()> {
    let marker = dir.join(format!("slot-{slot}.broken"));
    if bootable {
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io("cannot unmark the slot")(e))
            }
            _ => Ok(()),
        }
    } else {
        std::fs::write(&marker, b"").map_err(io("cannot mark the slot"))
    }
}

/// Reboots the simulated device; returns the slot it came up on. The `on_boot` command of
/// `sim.toml` is **not** run here (see [`on_boot_command`]), so callers choose.
pub fn reboot(dir: &Path) -> Result<SlotId> {
    let env = env_of(dir)?;
    for _ in 0..4 {
        let mut chosen = None;
        env.update(&mut |v| {
            let part: u32 = v
                .get("mender_boot_part")
                .and_then(|p| p.parse().ok())
                .unwrap_or(PARTS[0]);
            let mut part = part;
            if v.get("upgrade_available").is_some_and(|u| u == "1") {
                let count: u32 = v.get("bootcount").and_then(|c| c.parse().ok()).unwrap_or(0);
                let limit: u32 = v.get("bootlimit").and_then(|c| c.parse().ok()).unwrap_or(1);
                if count >= limit {
                    // altbootcmd: the trial slot never committed; go back.
                    part = if part == PARTS[0] { PARTS[1] } else { PARTS[0] };
                    v.insert("mender_boot_part".into(), part.to_string());
                    v.insert("mender_boot_part_hex".into(), format!("{part:x}"));
                    v.insert("upgrade_available".into(), "0".into());
                } else {
                    v.insert("bootcount".into(), (count + 1).to_string());
                }
            }
            chosen = Some(if part == PARTS[1] {
                SlotId::B
            } else {
                SlotId::A
            });
        })?;
        let slot = chosen.expect("update ran");
        if dir.join(format!("slot-{slot}.broken")).exists() {
            continue; // the kernel hangs; the watchdog resets the board
        }
        let id: u64 = std::fs::read_to_string(dir.join("boot-id"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        std::fs::write(dir.join("boot-id"), format!("{}\n", id + 1))
            .map_err(io("cannot write boot-id"))?;
        std::fs::write(dir.join("booted-slot"), format!("{slot}\n"))
            .map_err(io("cannot write booted-slot"))?;
        return Ok(slot);
    }
    Err(SimError::Bricked("every boot attempt hung".into()))
}

/// The command the simulated system runs after a boot (from `sim.toml`), if any.
pub fn on_boot_command(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("sim.toml")).ok()?;
    let value: toml::Value = toml::from_str(&text).ok()?;
    value
        .get("on_boot")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

pub use crate::config::parse_size;

/// The `[daemon]` section of a simulated device, with its identity (a MAC address derived from
/// the folder, so each device is distinct and keeps its identity) and inventory scripts.
fn daemon_section(dir: &Path, server: &SimServer) -> Result<String> {
    use sha2::Digest as _;
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |path: &Path, text: String| -> Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("cannot create a helper folder"))?;
        }
        std::fs::write(path, text).map_err(io(format!("cannot write {}", path.display())))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .map_err(io("cannot make a helper executable"))
    };
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let mac = format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        digest[0], digest[1], digest[2], digest[3], digest[4]
    );
    executable(
        &dir.join("identity/mender-device-identity"),
        format!("#!/bin/sh\necho mac={mac}\n"),
    )?;
    let name = dir
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    executable(
        &dir.join("inventory/mender-inventory-sim"),
        format!(
            "#!/bin/sh\necho hostname={name}\necho kernel=aloft-sim\necho booted_slot=$(cat '{}/booted-slot')\n",
            dir.display()
        ),
    )?;
    let certificate = match &server.certificate {
        Some(cert) => {
            std::fs::copy(cert, dir.join("server.crt"))
                .map_err(io(format!("cannot copy {}", cert.display())))?;
            "server_certificate = \"server.crt\"\n"
        }
        None => "",
    };
    let poll = server.poll_seconds.max(1);
    Ok(format!(
        "\n[daemon]\n\
         server_url = {:?}\n\
         {certificate}\
         update_poll_interval_seconds = {poll}\n\
         inventory_poll_interval_seconds = {}\n\
         retry_poll_interval_seconds = {poll}\n\
         identity_script = \"identity/mender-device-identity\"\n\
         inventory_dir = \"inventory\"\n\
         progress_interval_seconds = 1\n\
         download_stall_timeout_seconds = 10\n\
         reboot_wait_seconds = 30\n",
        server.url,
        poll * 12,
    ))
}
