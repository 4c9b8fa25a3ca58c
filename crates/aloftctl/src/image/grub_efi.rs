//! The x86-64 EFI boot flow: a standalone GRUB (`EFI/BOOT/BOOTX64.EFI`) on the EFI system
//! partition, its `grub/grub.cfg` implementing Mender's GRUB boot protocol, and the environment
//! block `grub/grubenv` that GRUB and the device client share.
//!
//! The protocol, as Mender's `grub-mender-grubenv` keeps it: `mender_boot_part` (2 or 3) and
//! `mender_boot_part_hex` name the slot to boot; `upgrade_available=1` marks a trial. The first
//! trial boot sets `bootcount=1`; a boot that finds `bootcount=1` while the trial is still not
//! committed switches back to the other slot and clears the trial, so a new system that never
//! reaches its commit (a panic, a hang ended by the watchdog or `panic=`, a power cut) falls back
//! by itself. Each slot carries its own kernel and initramfs in `/boot`.

use std::path::Path;

use anyhow::{Context as _, Result};

use super::tools::run;

/// Where the device sees the ESP, and the environment block on it.
pub(crate) const ESP_MOUNT: &str = "/boot/efi";
/// The environment block, relative to the ESP.
pub(crate) const GRUBENV: &str = "grub/grubenv";

/// GRUB modules in the standalone image.
const MODULES: &[&str] = &[
    "part_gpt",
    "fat",
    "ext2",
    "normal",
    "linux",
    "loadenv",
    "test",
    "echo",
    "regexp",
    "sleep",
    "reboot",
    "configfile",
    "efi_gop",
    "all_video",
    "gzio",
];

/// The boot script. `kernel_args` are appended to the kernel command line.
pub(crate) fn grub_cfg(kernel_args: &str) -> String {
    format!(
        r#"# aloft A/B boot (Mender's GRUB protocol; written by aloftctl image build)
set timeout=0
set env_file="${{prefix}}/grubenv"
load_env --file "${{env_file}}"
if [ "${{mender_boot_part}}" != "3" ]; then
  set mender_boot_part=2
fi
if [ "${{upgrade_available}}" = "1" ]; then
  if [ "${{bootcount}}" = "1" ]; then
    echo "aloft: the trial boot of partition ${{mender_boot_part}} did not commit: falling back"
    if [ "${{mender_boot_part}}" = "2" ]; then
      set mender_boot_part=3
    else
      set mender_boot_part=2
    fi
    set upgrade_available=0
    set bootcount=0
    set mender_boot_part_hex="${{mender_boot_part}}"
    save_env --file "${{env_file}}" mender_boot_part mender_boot_part_hex upgrade_available bootcount
  else
    set bootcount=1
    save_env --file "${{env_file}}" bootcount
  fi
fi
if [ "${{mender_boot_part}}" = "3" ]; then
  set aloft_slot=rootfs-b
else
  set aloft_slot=rootfs-a
fi
regexp --set 1:aloft_disk '^\(?([^,)]+)' "${{root}}"
echo "aloft: booting ${{aloft_slot}} (partition ${{mender_boot_part}}, upgrade_available=${{upgrade_available}}, bootcount=${{bootcount}})"
linux (${{aloft_disk}},gpt${{mender_boot_part}})/boot/vmlinuz root=PARTLABEL=${{aloft_slot}} rw rootwait console=ttyS0,115200 panic=5 {kernel_args}
if [ -f (${{aloft_disk}},gpt${{mender_boot_part}})/boot/initrd.img ]; then
  initrd (${{aloft_disk}},gpt${{mender_boot_part}})/boot/initrd.img
fi
boot
echo "aloft: partition ${{mender_boot_part}} has no bootable kernel: rebooting"
sleep 3
reboot
"#
    )
}

/// Builds the ESP filesystem image at `out` (`bytes` large) with GRUB, its script and a fresh
/// environment block that boots slot A.
pub(crate) fn build_esp(work: &Path, out: &Path, bytes: u64, kernel_args: &str) -> Result<()> {
    let efi = work.join("BOOTX64.EFI");
    let mut mkimage = std::process::Command::new("grub-mkimage");
    mkimage
        .args(["-O", "x86_64-efi", "-p", "/grub", "-o"])
        .arg(&efi)
        .args(MODULES);
    run(&mut mkimage, "grub-mkimage")?;
    let cfg = work.join("grub.cfg");
    fs_err::write(&cfg, grub_cfg(kernel_args))?;
    let env = work.join("grubenv");
    let vars = [
        ("mender_boot_part", "2"),
        ("mender_boot_part_hex", "2"),
        ("upgrade_available", "0"),
        ("bootcount", "0"),
    ];
    let vars: aloft_device::boot::Vars = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    aloft_device::boot::EnvStore::store(&aloft_device::boot::grub::GrubEnv::new(&env), &vars)
        .context("cannot make the GRUB environment block")?;
    // 4 KiB clusters: the 1 KiB environment block is always one contiguous cluster, which GRUB's
    // save_env needs to rewrite it in place.
    let mut mkfs = std::process::Command::new("mkfs.vfat");
    mkfs.args(["-n", "ESP", "-S", "512", "-s", "8", "-C"])
        .arg(out)
        .arg((bytes / 1024).to_string());
    run(&mut mkfs, "mkfs.vfat")?;
    let image = out
        .to_str()
        .context("the work folder's path is not UTF-8")?;
    run(
        std::process::Command::new("mmd").args(["-i", image, "::/EFI", "::/EFI/BOOT", "::/grub"]),
        "mmd",
    )?;
    for (src, dst) in [
        (&efi, "::/EFI/BOOT/BOOTX64.EFI"),
        (&cfg, "::/grub/grub.cfg"),
        (&env, "::/grub/grubenv"),
    ] {
        run(
            std::process::Command::new("mcopy")
                .args(["-i", image])
                .arg(src)
                .arg(dst),
            "mcopy",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_speaks_menders_protocol_and_boots_each_slot_by_its_name() {
        let cfg = grub_cfg("quiet");
        for needle in [
            "load_env --file \"${env_file}\"",
            "if [ \"${upgrade_available}\" = \"1\" ]; then",
            "if [ \"${bootcount}\" = \"1\" ]; then",
            "save_env --file \"${env_file}\" mender_boot_part mender_boot_part_hex upgrade_available bootcount",
            "save_env --file \"${env_file}\" bootcount",
            "root=PARTLABEL=${aloft_slot}",
            "set aloft_slot=rootfs-b",
            "/boot/initrd.img",
            "panic=5 quiet",
        ] {
            assert!(cfg.contains(needle), "{needle}\n{cfg}");
        }
        // Anything but 3 boots slot A: a lost or unreadable environment never bricks.
        assert!(
            cfg.contains("if [ \"${mender_boot_part}\" != \"3\" ]; then\n  set mender_boot_part=2")
        );
    }
}
