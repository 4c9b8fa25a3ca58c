//! The root filesystem of an image: staged from a folder, a tarball or an ext4 image, checked
//! (a kernel, systemd), and given aloft: the binary, `/etc/aloft/aloft.toml`, keys, the
//! identity and inventory helpers, systemd units and the mounts of the data and EFI partitions.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use super::grub_efi::{ESP_MOUNT, GRUBENV_DIR};
use super::tools::run;

/// What the root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A folder holding the tree.
    Dir(PathBuf),
    /// A tarball of the tree (any compression GNU tar reads).
    Tar(PathBuf),
    /// An ext2/3/4 filesystem image.
    Ext4(PathBuf),
}

/// The ext superblock magic, at byte 1080 of the image.
const EXT_MAGIC: [u8; 2] = [0x53, 0xef];

/// Tells what `path` holds.
pub(crate) fn detect(path: &Path) -> Result<Source> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("the root filesystem {} cannot be read", path.display()))?;
    if meta.is_dir() {
        return Ok(Source::Dir(path.to_owned()));
    }
    let mut head = vec![0u8; 1082];
    let n = {
        use std::io::Read as _;
        let mut f = std::fs::File::open(path)?;
        let mut filled = 0;
        while filled < head.len() {
            match f.read(&mut head[filled..])? {
                0 => break,
                k => filled += k,
            }
        }
        filled
    };
    if n >= 1082 && head[1080..1082] == EXT_MAGIC {
        return Ok(Source::Ext4(path.to_owned()));
    }
    let name = path.to_string_lossy();
    let tarball = [".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.zst", ".tar.bz2"]
        .iter()
        .any(|s| name.ends_with(s));
    let ustar = n >= 263 && &head[257..262] == b"ustar";
    if tarball || ustar {
        return Ok(Source::Tar(path.to_owned()));
    }
    bail!(
        "{} is neither a folder, a tarball (.tar, .tar.gz, .tar.xz, .tar.zst) nor an ext4 image",
        path.display()
    )
}

/// Copies the source tree into the empty folder `tree` (ownership kept: run as root, or in a
/// container, for a tree owned by root).
pub(crate) fn stage(source: &Source, tree: &Path) -> Result<()> {
    match source {
        Source::Dir(dir) => run(
            Command::new("cp").arg("-a").arg(dir.join(".")).arg(tree),
            "copying the root filesystem",
        ),
        Source::Tar(tar) => run(
            Command::new("tar")
                .args(["--numeric-owner", "-xf"])
                .arg(tar)
                .arg("-C")
                .arg(tree),
            "unpacking the root filesystem",
        ),
        Source::Ext4(image) => run(
            Command::new("debugfs")
                .arg("-R")
                .arg(format!("rdump / {}", tree.display()))
                .arg(image),
            "reading the ext4 image",
        ),
    }
}

/// The kernel and initramfs a slot boots, relative to the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kernel {
    /// `boot/vmlinuz-<version>`.
    pub(crate) image: String,
    /// `boot/initrd.img-<version>`, when there is one.
    pub(crate) initrd: Option<String>,
}

/// Checks that the tree can boot on its own and links `boot/vmlinuz` (and `boot/initrd.img`)
/// to its newest kernel, which is what the boot script loads from each slot.
pub(crate) fn check(tree: &Path) -> Result<Kernel> {
    let boot = tree.join("boot");
    let mut kernels: Vec<String> = std::fs::read_dir(&boot)
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("vmlinuz-"))
                .collect()
        })
        .unwrap_or_default();
    kernels.sort_by(|a, b| version_order(a, b));
    let Some(image) = kernels.pop() else {
        bail!(
            "the root filesystem has no kernel: /boot/vmlinuz-* is missing (install one in it, e.g. Debian's linux-image-cloud-amd64)"
        );
    };
    let version = &image["vmlinuz-".len()..];
    let initrd = format!("initrd.img-{version}");
    let initrd = boot.join(&initrd).exists().then_some(initrd);
    let has = |p: &str| std::fs::symlink_metadata(tree.join(p)).is_ok();
    if !["usr/lib/systemd/systemd", "lib/systemd/systemd"]
        .iter()
        .any(|p| has(p))
    {
        bail!(
            "the root filesystem has no systemd (/usr/lib/systemd/systemd): aloft's boot units need it"
        );
    }
    if !["sbin/init", "usr/sbin/init"].iter().any(|p| has(p)) {
        bail!("the root filesystem has no /sbin/init (Debian's package systemd-sysv provides it)");
    }
    link(&boot.join("vmlinuz"), &image)?;
    if let Some(initrd) = &initrd {
        link(&boot.join("initrd.img"), initrd)?;
    }
    Ok(Kernel {
        image: format!("boot/{image}"),
        initrd: initrd.map(|i| format!("boot/{i}")),
    })
}

/// Orders kernel file names by their version numbers (`6.1.0-9` before `6.1.0-10`).
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    key(a).cmp(&key(b))
}

fn link(path: &Path, target: &str) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok() {
        fs_err::remove_file(path)?;
    }
    std::os::unix::fs::symlink(target, path)
        .with_context(|| format!("cannot link {} to {target}", path.display()))
}

/// What goes into the tree besides the source.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    pub(crate) device_type: String,
    pub(crate) artifact_name: String,
    /// The `aloft` binary to install (`None`: keep the tree's own `/usr/bin/aloft`).
    pub(crate) aloft: Option<PathBuf>,
    pub(crate) server_url: Option<String>,
    pub(crate) server_cert: Option<PathBuf>,
    pub(crate) verify_keys: Vec<PathBuf>,
    pub(crate) health_check: Option<String>,
    pub(crate) poll_seconds: Option<u64>,
    /// (source on this machine, absolute destination in the image).
    pub(crate) files: Vec<(PathBuf, String)>,
}

/// The device's data folder on the data partition.
pub(crate) const DATA_DIR: &str = "/data/aloft";

/// `/etc/aloft/aloft.toml` for these settings (a pure function of them).
pub(crate) fn config_toml(s: &Settings) -> String {
    let mut t = String::from("# Written by aloftctl image build. Reference: docs/aloft-toml.md\n");
    let _ = writeln!(t, "device_type = {:?}", s.device_type);
    let _ = writeln!(t, "data_dir = {DATA_DIR:?}");
    let _ = writeln!(t, "artifact_info_file = \"/etc/mender/artifact_info\"");
    let _ = writeln!(t, "reboot_command = \"systemctl reboot\"");
    let _ = writeln!(
        t,
        "failed_boot_log_command = \"/usr/share/aloft/failed-boot-log\""
    );
    if !s.verify_keys.is_empty() {
        let keys: Vec<String> = (0..s.verify_keys.len())
            .map(|i| format!("\"/etc/aloft/keys/{i}.pem\""))
            .collect();
        let _ = writeln!(t, "verify_keys = [{}]", keys.join(", "));
    }
    if let Some(check) = &s.health_check {
        let _ = writeln!(t, "health_check = {check:?}");
    }
    t.push_str(
        "\n[slots]\n\
         a = { device = \"/dev/disk/by-partlabel/rootfs-a\", part = 2 }\n\
         b = { device = \"/dev/disk/by-partlabel/rootfs-b\", part = 3 }\n\n\
         [bootloader]\nkind = \"grub\"\n",
    );
    let _ = writeln!(t, "grubenv_dir = \"{ESP_MOUNT}/{GRUBENV_DIR}\"");
    if let Some(url) = &s.server_url {
        let _ = writeln!(t, "\n[daemon]\nserver_url = {url:?}");
        if s.server_cert.is_some() {
            let _ = writeln!(t, "server_certificate = \"/etc/aloft/server.crt\"");
        }
        let _ = writeln!(t, "identity_script = \"/usr/share/aloft/identity\"");
        let _ = writeln!(t, "inventory_dir = \"/usr/share/aloft/inventory\"");
        if let Some(p) = s.poll_seconds {
            let _ = writeln!(t, "update_poll_interval_seconds = {p}");
            let _ = writeln!(t, "retry_poll_interval_seconds = {p}");
        }
    }
    t
}

const RESUME_UNIT: &str = "[Unit]
Description=aloft: finish an interrupted update (health check, commit or roll back)
RequiresMountsFor=/data /boot/efi
After=local-fs.target
Before=aloft-daemon.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/aloft resume
# 2: nothing to do.
SuccessExitStatus=2

[Install]
WantedBy=multi-user.target
";

const DAEMON_UNIT: &str = "[Unit]
Description=aloft daemon: updates from the server
RequiresMountsFor=/data /boot/efi
After=aloft-resume.service network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/bin/aloft daemon
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
";

const IDENTITY: &str = "#!/bin/sh
# The device identity: the MAC address of the first network interface.
for dev in /sys/class/net/*; do
  [ \"${dev##*/}\" = lo ] && continue
  echo \"mac=$(cat \"$dev/address\")\"
  exit 0
done
exit 1
";

const INVENTORY: &str = "#!/bin/sh
# What the server shows of this device.
echo \"kernel=$(uname -r)\"
. /etc/os-release 2>/dev/null && echo \"os=$PRETTY_NAME\"
";

const FAILED_BOOT_LOG: &str = "#!/bin/sh
# Rollback forensics, run by aloft after the bootloader fell back from a new slot: what the
# boots after the update's install (ALOFT_UPDATE_BOOT_ID) logged before they died, from the
# journal on the data partition, and a kernel panic if pstore kept one.
install=$(printf '%s' \"$ALOFT_UPDATE_BOOT_ID\" | tr -d '-')
now=$(tr -d '-' < /proc/sys/kernel/random/boot_id)
after=0
for boot in $(journalctl -D /var/log/journal --list-boots --no-pager -q 2>/dev/null | awk '{print $2}'); do
  if [ \"$boot\" = \"$install\" ]; then after=1; continue; fi
  [ \"$boot\" = \"$now\" ] && break
  [ $after = 1 ] || continue
  echo \"journal of the failed boot $boot:\"
  journalctl -D /var/log/journal -b \"$boot\" --no-pager -q -o short-monotonic -n 60
done
for f in /sys/fs/pstore/dmesg-*; do
  [ -e \"$f\" ] || continue
  echo \"kernel log kept by pstore ($f):\"
  tail -n 40 \"$f\"
done
";

/// The journal waits for the data partition, where it is kept.
const JOURNAL_FLUSH_DROPIN: &str = "[Unit]
RequiresMountsFor=/data
";

const FSTAB: &str = "# aloft A/B layout: the root filesystem is the slot GRUB booted (root= on the kernel command line).
PARTLABEL=esp   /boot/efi  vfat  defaults,umask=0077  0 2
PARTLABEL=data  /data      ext4  defaults             0 2
";

/// Writes aloft's files into the tree.
pub(crate) fn install(tree: &Path, s: &Settings) -> Result<()> {
    let put = |rel: &str, data: &[u8], mode: u32| -> Result<()> {
        let path = tree.join(rel.trim_start_matches('/'));
        if let Some(dir) = path.parent() {
            fs_err::create_dir_all(dir)?;
        }
        if std::fs::symlink_metadata(&path).is_ok() {
            fs_err::remove_file(&path)?;
        }
        fs_err::write(&path, data)?;
        set_mode(&path, mode)
    };
    match &s.aloft {
        Some(bin) => {
            let bytes = fs_err::read(bin)?;
            put("usr/bin/aloft", &bytes, 0o755)?;
        }
        None if tree.join("usr/bin/aloft").exists() => {}
        None => bail!("the root filesystem has no /usr/bin/aloft: give one with --aloft"),
    }
    put("etc/aloft/aloft.toml", config_toml(s).as_bytes(), 0o644)?;
    for (i, key) in s.verify_keys.iter().enumerate() {
        let text = fs_err::read_to_string(key)?;
        aloft_artifact::VerifyingKey::from_pem(&text).map_err(|e| {
            anyhow::anyhow!("{} is not a public key aloft can use: {e}", key.display())
        })?;
        put(&format!("etc/aloft/keys/{i}.pem"), text.as_bytes(), 0o644)?;
    }
    if let Some(cert) = &s.server_cert {
        let text = fs_err::read_to_string(cert)?;
        if !text.contains("-----BEGIN CERTIFICATE-----") {
            bail!("{} is not a PEM certificate", cert.display());
        }
        put("etc/aloft/server.crt", text.as_bytes(), 0o644)?;
    }
    put(
        "etc/mender/artifact_info",
        format!("artifact_name={}\n", s.artifact_name).as_bytes(),
        0o644,
    )?;
    put("usr/share/aloft/identity", IDENTITY.as_bytes(), 0o755)?;
    put(
        "usr/share/aloft/failed-boot-log",
        FAILED_BOOT_LOG.as_bytes(),
        0o755,
    )?;
    put(
        "etc/systemd/system/systemd-journal-flush.service.d/aloft.conf",
        JOURNAL_FLUSH_DROPIN.as_bytes(),
        0o644,
    )?;
    put(
        "usr/share/aloft/inventory/mender-inventory-aloft",
        INVENTORY.as_bytes(),
        0o755,
    )?;
    put(
        "etc/systemd/system/aloft-resume.service",
        RESUME_UNIT.as_bytes(),
        0o644,
    )?;
    let mut units = vec!["aloft-resume.service"];
    if s.server_url.is_some() {
        put(
            "etc/systemd/system/aloft-daemon.service",
            DAEMON_UNIT.as_bytes(),
            0o644,
        )?;
        units.push("aloft-daemon.service");
    }
    let wants = tree.join("etc/systemd/system/multi-user.target.wants");
    fs_err::create_dir_all(&wants)?;
    for unit in units {
        link(&wants.join(unit), &format!("/etc/systemd/system/{unit}"))?;
    }
    // The mounts, appended to the tree's own fstab.
    let fstab = tree.join("etc/fstab");
    let text = std::fs::read_to_string(&fstab).unwrap_or_default();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            !l.contains("PARTLABEL=esp")
                && !l.contains("PARTLABEL=data")
                && !l.contains("aloft A/B layout")
        })
        .collect();
    let mut text = kept.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(FSTAB);
    put("etc/fstab", text.as_bytes(), 0o644)?;
    fs_err::create_dir_all(tree.join("boot/efi"))?;
    fs_err::create_dir_all(tree.join("data"))?;
    // The journal lives on the data partition, so the system that boots after a failed trial
    // can still read what that trial logged.
    let journal = tree.join("var/log/journal");
    if journal.is_dir() {
        let _ = std::fs::remove_dir(&journal);
    }
    fs_err::create_dir_all(tree.join("var/log"))?;
    link(&journal, "/data/journal")?;
    for (src, dest) in &s.files {
        if !dest.starts_with('/') || dest.split('/').any(|p| p == "..") {
            bail!("--file destination {dest} must be an absolute path without ..");
        }
        let meta = fs_err::metadata(src)?;
        let bytes = fs_err::read(src)?;
        put(dest, &bytes, {
            use std::os::unix::fs::PermissionsExt as _;
            meta.permissions().mode() & 0o7777
        })?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Apparent size of everything in the tree, in bytes (to refuse a tree that cannot fit its slot
/// before the filesystem is made).
pub(crate) fn tree_size(tree: &Path) -> u64 {
    fn walk(dir: &Path, total: &mut u64) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            *total += meta.len().max(1).div_ceil(4096) * 4096;
            if meta.is_dir() {
                walk(&entry.path(), total);
            }
        }
    }
    let mut total = 0;
    walk(tree, &mut total);
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_kernel_by_version_numbers() {
        let mut names = [
            "vmlinuz-6.1.0-10-amd64",
            "vmlinuz-6.1.0-9-amd64",
            "vmlinuz-5.10.0-28-amd64",
        ];
        names.sort_by(|a, b| version_order(a, b));
        assert_eq!(names[2], "vmlinuz-6.1.0-10-amd64");
    }

    #[test]
    fn the_configuration_follows_the_settings() {
        let mut s = Settings {
            device_type: "qemux86-64".into(),
            artifact_name: "release-1".into(),
            ..Settings::default()
        };
        let plain = config_toml(&s);
        assert!(plain.contains("device_type = \"qemux86-64\""));
        assert!(plain.contains("grubenv_dir = \"/boot/efi/grub\""));
        assert!(!plain.contains("[daemon]") && !plain.contains("verify_keys"));
        s.server_url = Some("https://10.0.2.2:8443".into());
        s.server_cert = Some("server.crt".into());
        s.verify_keys = vec!["a.pem".into(), "b.pem".into()];
        s.health_check = Some("systemctl is-active app".into());
        s.poll_seconds = Some(5);
        let full = config_toml(&s);
        for needle in [
            "[daemon]\nserver_url = \"https://10.0.2.2:8443\"",
            "server_certificate = \"/etc/aloft/server.crt\"",
            "verify_keys = [\"/etc/aloft/keys/0.pem\", \"/etc/aloft/keys/1.pem\"]",
            "health_check = \"systemctl is-active app\"",
            "update_poll_interval_seconds = 5",
        ] {
            assert!(full.contains(needle), "{needle}\n{full}");
        }
        // What the device reads is a valid aloft.toml.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aloft.toml");
        std::fs::write(&path, &full).unwrap();
        let config = aloft_device::config::Config::load(&path).unwrap();
        assert_eq!(config.data_dir, Path::new(DATA_DIR));
        assert_eq!(config.slots.unwrap().b.part_number(), Some(3));
    }
}
