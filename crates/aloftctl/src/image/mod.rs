//! `aloftctl image build`: a bootable A/B disk image from a root filesystem, without root
//! mounts or loop devices (filesystems made with `mke2fs -d` and `mkfs.vfat` + mtools, the
//! partition table with `sfdisk` on a file), and the matching rootfs-image artifact.
//!
//! Everything is made in a temporary folder beside the output and renamed into place at the
//! end, so a failure at any step leaves no partial image or artifact. Layout (`layout.rs`):
//! 1 EFI system partition, 2 slot A, 3 slot B (same size), 4 data (`/data`: aloft's data
//! folder and the journal). One file per boot flow: `grub_efi.rs` for x86-64 EFI.

mod grub_efi;
mod layout;
mod rootfs;
mod tools;

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::cli::{ImageCommand, WriteCommon, WriteKind};

pub(crate) fn run(command: ImageCommand) -> Result<()> {
    match command {
        ImageCommand::Build(args) => build(&args),
    }
}

/// Prints one step of a long build (stderr), with the time since the start.
struct Steps {
    started: Instant,
    quiet: bool,
}

impl Steps {
    fn say(&self, what: &str) {
        if !self.quiet {
            eprintln!("[{:5.1}s] {what}", self.started.elapsed().as_secs_f64());
        }
    }
}

fn size(value: &str, flag: &str) -> Result<u64> {
    aloft_device::config::parse_size(value)
        .filter(|&n| n > 0)
        .with_context(|| format!("{flag} {value:?} is not a size (e.g. 256M, 1G)"))
}

fn build(a: &crate::cli::ImageBuild) -> Result<()> {
    let steps = Steps {
        started: Instant::now(),
        quiet: a.quiet,
    };
    let slot = size(&a.slot_size, "--slot-size")?;
    let esp = size(&a.esp_size, "--esp-size")?;
    let data = size(&a.data_size, "--data-size")?;
    if esp < 8 << 20 {
        bail!("--esp-size must be at least 8M (GRUB and its environment live there)");
    }
    if data < 8 << 20 {
        bail!("--data-size must be at least 8M (the device's state and downloads live there)");
    }
    let files = a
        .files
        .iter()
        .map(|f| {
            let (src, dest) = f
                .split_once(':')
                .with_context(|| format!("--file {f:?} must be SOURCE:/DESTINATION"))?;
            Ok((PathBuf::from(src), dest.to_owned()))
        })
        .collect::<Result<Vec<_>>>()?;
    if a.server_cert.is_some() && a.server_url.is_none() {
        bail!("--server-cert needs --server-url");
    }
    if a.key.is_some() && a.artifact.is_none() {
        bail!("-k signs the artifact: give --artifact too");
    }
    tools::require()?;
    let source = rootfs::detect(&a.rootfs)?;

    let first_output = a
        .output
        .as_ref()
        .or(a.artifact.as_ref())
        .context("no output")?;
    let out_dir = match first_output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let work = tempfile::Builder::new()
        .prefix(".aloft-image-")
        .tempdir_in(&out_dir)
        .with_context(|| format!("cannot make a work folder in {}", out_dir.display()))?;
    let tree = work.path().join("tree");
    fs_err::create_dir_all(&tree)?;
    steps.say(&format!(
        "staging the root filesystem from {}",
        a.rootfs.display()
    ));
    rootfs::stage(&source, &tree)?;
    let kernel = rootfs::check(&tree)?;
    steps.say(&format!(
        "kernel {}{}",
        kernel.image,
        kernel
            .initrd
            .as_deref()
            .map_or(String::new(), |i| format!(", initramfs {i}"))
    ));
    let aloft = match &a.aloft {
        Some(p) => Some(p.clone()),
        None if tree.join("usr/bin/aloft").exists() => None,
        None => Some(sibling("aloft")?),
    };
    let settings = rootfs::Settings {
        device_type: a.device_type.clone(),
        artifact_name: a.artifact_name.clone(),
        aloft,
        server_url: a.server_url.clone(),
        server_cert: a.server_cert.clone(),
        verify_keys: a.verify_keys.clone(),
        health_check: a.health_check.clone(),
        poll_seconds: a.poll_seconds,
        files,
    };
    rootfs::install(&tree, &settings)?;
    let needed = rootfs::tree_size(&tree);
    // ext4 keeps about 5 % for inodes, the journal and metadata at these sizes.
    if needed + needed / 20 + (8 << 20) > slot {
        bail!(
            "the root filesystem ({} MiB with aloft) does not fit a {} MiB slot: give a larger --slot-size",
            needed >> 20,
            slot >> 20
        );
    }

    steps.say(&format!("making the slot filesystem ({} MiB)", slot >> 20));
    let slot_img = work.path().join("rootfs.ext4");
    mke2fs(&slot_img, slot, Some(&tree), "rootfs")?;
    if a.output.is_none() {
        write_artifact(a, &slot_img, &steps)?;
        return Ok(());
    }
    let data_tree = work.path().join("data-tree");
    fs_err::create_dir_all(data_tree.join("aloft"))?;
    fs_err::create_dir_all(data_tree.join("journal"))?;
    let data_img = work.path().join("data.ext4");
    mke2fs(&data_img, data, Some(&data_tree), "data")?;
    steps.say("making the EFI system partition with GRUB");
    let esp_img = work.path().join("esp.vfat");
    grub_efi::build_esp(work.path(), &esp_img, esp, &a.kernel_args)?;

    steps.say("writing the partition table and the partitions");
    let (parts, disk_size) = layout::layout(esp, slot, data);
    let disk = work.path().join("disk.img");
    {
        let f = fs_err::File::create(&disk)?;
        f.set_len(disk_size)?;
    }
    let mut sfdisk = Command::new("sfdisk");
    sfdisk
        .arg("--quiet")
        .arg(&disk)
        .stdin(std::process::Stdio::piped());
    sfdisk_with_script(&mut sfdisk, &layout::sfdisk_script(&parts))?;
    for (part, image) in [
        (&parts[0], &esp_img),
        (&parts[1], &slot_img),
        (&parts[3], &data_img),
    ] {
        place(&disk, part.offset(), part.bytes(), image)?;
    }
    fs_err::File::open(&disk)?.sync_all()?;

    write_artifact(a, &slot_img, &steps)?;
    let output = a.output.as_ref().context("no output")?;
    fs_err::rename(&disk, output)?;
    steps.say(&format!(
        "wrote {} ({} MiB; slots of {} MiB, boots slot A: {})",
        output.display(),
        disk_size >> 20,
        slot >> 20,
        a.artifact_name
    ));
    Ok(())
}

/// The rootfs-image artifact of the slot filesystem, when asked for.
fn write_artifact(a: &crate::cli::ImageBuild, slot_img: &Path, steps: &Steps) -> Result<()> {
    let Some(out) = &a.artifact else {
        return Ok(());
    };
    steps.say(&format!("writing the artifact {}", out.display()));
    crate::artifact::write(WriteKind::RootfsImage {
        file: slot_img.to_owned(),
        common: WriteCommon {
            name: a.artifact_name.clone(),
            device_types: vec![a.device_type.clone()],
            output: out.clone(),
            key: a.key.clone(),
            compression: a.compression,
            level: None,
            provides: Vec::new(),
            depends: Vec::new(),
            clears: Vec::new(),
            depends_names: Vec::new(),
            group: None,
            depends_groups: Vec::new(),
            scripts: Vec::new(),
            no_progress: a.quiet,
        },
        software: crate::cli::Versioning::default(),
        no_checksum_provide: false,
    })
}

/// A binary installed beside this one (`aloft` next to `aloftctl`).
fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find aloftctl's own path")?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "the root filesystem has no /usr/bin/aloft and there is no {} beside aloftctl: give one with --aloft",
            path.display()
        );
    }
    Ok(path)
}

fn mke2fs(image: &Path, bytes: u64, tree: Option<&Path>, label: &str) -> Result<()> {
    let mut cmd = Command::new("mke2fs");
    cmd.args(["-q", "-F", "-t", "ext4", "-L", label, "-m", "0"])
        .args([
            "-E",
            "root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0",
        ]);
    if let Some(tree) = tree {
        cmd.arg("-d").arg(tree);
    }
    cmd.arg(image).arg(format!("{}k", bytes / 1024));
    tools::run(&mut cmd, "mke2fs").map_err(|e| {
        if e.to_string().contains("Could not allocate block") {
            anyhow::anyhow!(
                "the root filesystem does not fit the slot: give a larger --slot-size ({e})"
            )
        } else {
            e
        }
    })
}

fn sfdisk_with_script(cmd: &mut Command, script: &str) -> Result<()> {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot run sfdisk (Debian package fdisk)")?;
    child
        .stdin
        .take()
        .context("sfdisk's input")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "sfdisk failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Copies `image` into `disk` at `offset`, leaving runs of zeros as holes (the disk is sparse).
fn place(disk: &Path, offset: u64, room: u64, image: &Path) -> Result<()> {
    let len = fs_err::metadata(image)?.len();
    if len > room {
        bail!(
            "{} ({len} bytes) is larger than its partition ({room} bytes)",
            image.display()
        );
    }
    let mut src = fs_err::File::open(image)?;
    let mut dst = fs_err::OpenOptions::new().write(true).open(disk)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = offset;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            dst.seek(SeekFrom::Start(at))?;
            dst.write_all(&buf[..n])?;
        }
        at += n as u64;
    }
    Ok(())
}
