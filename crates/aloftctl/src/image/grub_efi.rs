//! The x86-64 EFI boot flow: a standalone GRUB (`EFI/BOOT/BOOTX64.EFI`) on the EFI system
//! partition, its `grub/grub.cfg` implementing Mender's GRUB boot protocol, and the redundant,
//! lock-guarded pair of environment blocks under `grub/` (`mender_grubenv1/{env,lock}`,
//! `mender_grubenv2/{env,lock}`; see `aloft_device::boot::grub_pair`) that GRUB and the device
//! client share. FAT has no journal: a single block replaced or torn by a power cut could
//! leave GRUB without its variables, a pair never does.
//!
//! The protocol, as Mender's `grub-mender-grubenv` keeps it: `mender_boot_part` (2 or 3) and
//! `mender_boot_part_hex` name the slot to boot; `upgrade_available=1` marks a trial. The first
//! trial boot sets `bootcount=1`; a boot that finds `bootcount=1` while the trial is still not
//! committed switches back to the other slot and clears the trial, so a new system that never
//! reaches its commit (a panic, a hang ended by the watchdog or `panic=`, a power cut) falls back
//! by itself. Each slot carries its own kernel and initramfs in `/boot`.

use std::path::Path;

use anyhow::{Context as _, Result};

use aloft_device::boot::grub_pair::{COPIES, GrubEnvPair};

use super::tools::run;

/// Where the device sees the ESP, and the environment pair's folder on it.
pub(crate) const ESP_MOUNT: &str = "/boot/efi";
/// The folder of the environment pair, relative to the ESP.
pub(crate) const GRUBENV_DIR: &str = "grub";

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
set env_dir="${{prefix}}"
# The pair's reading rule: copy 1 when its lock says editing=0 and it loads, else copy 2.
function aloft_load_env {{
  set editing=unknown
  load_env --file "${{env_dir}}/mender_grubenv1/lock" editing
  set aloft_env_copy=2
  if [ "${{editing}}" = "0" ]; then
    if load_env --file "${{env_dir}}/mender_grubenv1/env"; then
      set aloft_env_copy=1
    fi
  fi
  if [ "${{aloft_env_copy}}" = "2" ]; then
    load_env --file "${{env_dir}}/mender_grubenv2/env"
  fi
}}
# Each copy in turn, between its lock's editing=1 and editing=0: one copy is always whole.
function aloft_save_env {{
  for aloft_copy in 1 2; do
    set editing=1
    save_env --file "${{env_dir}}/mender_grubenv${{aloft_copy}}/lock" editing
    save_env --file "${{env_dir}}/mender_grubenv${{aloft_copy}}/env" mender_boot_part mender_boot_part_hex upgrade_available bootcount
    set editing=0
    save_env --file "${{env_dir}}/mender_grubenv${{aloft_copy}}/lock" editing
  done
}}
aloft_load_env
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
  else
    set bootcount=1
  fi
  aloft_save_env
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
    aloft_device::boot::EnvStore::store(&GrubEnvPair::new(&env), &vars)
        .context("cannot make the GRUB environment pair")?;
    // 4 KiB clusters: each 1 KiB environment block is one contiguous cluster, which GRUB's
    // save_env needs to rewrite it in place.
    let mut mkfs = std::process::Command::new("mkfs.vfat");
    mkfs.args(["-n", "ESP", "-S", "512", "-s", "8", "-C"])
        .arg(out)
        .arg((bytes / 1024).to_string());
    run(&mut mkfs, "mkfs.vfat")?;
    let image = out
        .to_str()
        .context("the work folder's path is not UTF-8")?;
    let mut folders = vec!["::/EFI".to_owned(), "::/EFI/BOOT".into(), "::/grub".into()];
    let mut files = vec![
        (efi, "::/EFI/BOOT/BOOTX64.EFI".to_owned()),
        (cfg, "::/grub/grub.cfg".into()),
    ];
    for copy in COPIES {
        folders.push(format!("::/grub/{copy}"));
        for file in ["env", "lock"] {
            files.push((env.join(copy).join(file), format!("::/grub/{copy}/{file}")));
        }
    }
    run(
        std::process::Command::new("mmd")
            .args(["-i", image])
            .args(&folders),
        "mmd",
    )?;
    for (src, dst) in &files {
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
            "load_env --file \"${env_dir}/mender_grubenv1/lock\" editing",
            "if [ \"${editing}\" = \"0\" ]; then",
            "if load_env --file \"${env_dir}/mender_grubenv1/env\"; then",
            "load_env --file \"${env_dir}/mender_grubenv2/env\"",
            "for aloft_copy in 1 2; do",
            "save_env --file \"${env_dir}/mender_grubenv${aloft_copy}/env\" mender_boot_part mender_boot_part_hex upgrade_available bootcount",
            "if [ \"${upgrade_available}\" = \"1\" ]; then",
            "if [ \"${bootcount}\" = \"1\" ]; then",
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
