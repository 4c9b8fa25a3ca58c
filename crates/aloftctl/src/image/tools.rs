//! The system tools an image is built with (no root mounts, no loop devices): each is checked
//! before anything is written, and each failure names the tool and what it said.

use std::process::Command;

use anyhow::{Result, bail};

/// (program, Debian package) for every tool the x86-64 GRUB image needs.
pub(crate) const NEEDED: &[(&str, &str)] = &[
    ("mke2fs", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("mkfs.vfat", "dosfstools"),
    ("mmd", "mtools"),
    ("mcopy", "mtools"),
    ("sfdisk", "fdisk"),
    (
        "grub-mkimage",
        "grub-common (and grub-efi-amd64-bin for the x86_64-efi modules)",
    ),
    ("tar", "tar"),
    ("cp", "coreutils"),
];

/// Fails with the list of missing tools and their packages.
pub(crate) fn require() -> Result<()> {
    let missing: Vec<String> = NEEDED
        .iter()
        .filter(|(program, _)| which(program).is_none())
        .map(|(program, package)| format!("{program} (Debian package {package})"))
        .collect();
    if !missing.is_empty() {
        bail!("missing tools: {}", missing.join(", "));
    }
    if !std::path::Path::new("/usr/lib/grub/x86_64-efi/linux.mod").exists() {
        bail!(
            "GRUB's x86_64-efi modules are missing (/usr/lib/grub/x86_64-efi): install the Debian package grub-efi-amd64-bin"
        );
    }
    Ok(())
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Runs `cmd` (found on PATH or in the sbin folders); an error carries the end of its output.
pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let program = cmd.get_program().to_owned();
    if let Some(found) = program.to_str().and_then(which) {
        let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
        let mut full = Command::new(found);
        full.args(args);
        if let Some(dir) = cmd.get_current_dir() {
            full.current_dir(dir);
        }
        return output(&mut full, what);
    }
    output(cmd, what)
}

fn output(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {what}: {e}"))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let text = if text.trim().is_empty() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            text.into_owned()
        };
        let tail: Vec<&str> = text.lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{what} failed ({}): {}", out.status, tail.join(" / "));
    }
    Ok(())
}
