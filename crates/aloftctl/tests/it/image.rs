//! `aloftctl image build` on small trees: a good one gives a GPT disk with GRUB, its protocol
//! variables and a valid artifact; bad input gets a clear error and leaves nothing behind.
//! (Booting real images is `aloft-server`'s `vm` test.)

use std::path::Path;
use std::process::Command;

use crate::{aloftctl, ok, text};

/// A tree that looks bootable: a kernel, an initramfs, systemd and init.
fn tree(dir: &Path, kernel: bool) -> std::path::PathBuf {
    let t = dir.join("tree");
    for d in ["boot", "usr/lib/systemd", "usr/sbin", "etc", "usr/bin"] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
    if kernel {
        std::fs::write(t.join("boot/vmlinuz-6.1.0-9-amd64"), b"old kernel").unwrap();
        std::fs::write(t.join("boot/vmlinuz-6.1.0-10-amd64"), b"new kernel").unwrap();
        std::fs::write(t.join("boot/initrd.img-6.1.0-10-amd64"), b"initramfs").unwrap();
    }
    std::fs::write(t.join("usr/lib/systemd/systemd"), b"#!/bin/sh\n").unwrap();
    std::os::unix::fs::symlink("../lib/systemd/systemd", t.join("usr/sbin/init")).unwrap();
    std::fs::write(t.join("usr/bin/aloft"), b"#!/bin/sh\necho aloft\n").unwrap();
    t
}

/// Entries of `dir` other than the tree and the inputs: what a build left there.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "tree" && n != "big")
        .collect();
    names.sort();
    names
}

#[test]
fn an_image_has_the_ab_layout_grub_and_the_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let t = tree(dir.path(), true);
    let disk = dir.path().join("disk.img");
    let art = dir.path().join("release-1.mender");
    ok(&[
        "image",
        "build",
        "--quiet",
        "--rootfs",
        t.to_str().unwrap(),
        "-n",
        "release-1",
        "--slot-size",
        "16M",
        "--data-size",
        "16M",
        "--esp-size",
        "16M",
        "-o",
        disk.to_str().unwrap(),
        "--artifact",
        art.to_str().unwrap(),
        "--server-url",
        "https://10.0.2.2:8443",
    ]);
    assert_eq!(leftovers(dir.path()), ["disk.img", "release-1.mender"]);
    let table = Command::new("sfdisk")
        .arg("--dump")
        .arg(&disk)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    for name in ["esp", "rootfs-a", "rootfs-b", "data"] {
        assert!(table.contains(&format!("name=\"{name}\"")), "{table}");
    }
    // The GRUB environment on the ESP, read back with the real tools: slot A, no trial.
    let vars = aloft_testkit::vm::grubenv_of_image(&disk, 1 << 20, dir.path());
    let vars: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for line in ["mender_boot_part=2", "upgrade_available=0", "bootcount=0"] {
        assert!(vars.iter().any(|l| l == line), "{vars:?}");
    }
    let image = format!("{}@@1M", disk.display());
    let listed = Command::new("mdir")
        .args(["-b", "-i", &image, "::/EFI/BOOT"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("BOOTX64.EFI"));
    // The artifact's image is slot A, with aloft's files in it and the newest kernel linked.
    let shown =
        String::from_utf8(ok(&["artifact", "read", art.to_str().unwrap(), "--json"]).stdout)
            .unwrap();
    assert!(
        shown.contains("\"release-1\"") && shown.contains("qemux86-64"),
        "{shown}"
    );
    let rootfs = dir.path().join("rootfs.ext4");
    let mut f = std::fs::File::create(&rootfs).unwrap();
    let out = aloftctl(&["artifact", "cat", art.to_str().unwrap(), "rootfs.ext4"]);
    std::io::Write::write_all(&mut f, &out.stdout).unwrap();
    drop(f);
    let debugfs = |request: &str| {
        let o = Command::new("debugfs")
            .args(["-R", request])
            .arg(&rootfs)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let cat = |path: &str| debugfs(&format!("cat {path}"));
    assert!(cat("/etc/aloft/aloft.toml").contains("server_url = \"https://10.0.2.2:8443\""));
    assert!(cat("/etc/mender/artifact_info").contains("artifact_name=release-1"));
    let link = debugfs("stat /boot/vmlinuz");
    assert!(
        link.contains("vmlinuz-6.1.0-10-amd64"),
        "the newest kernel is linked: {link}"
    );
    assert!(cat("/etc/fstab").contains("PARTLABEL=data"));
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = tree(dir.path(), false);
    let disk = dir.path().join("disk.img");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "image".to_owned(),
            "build".into(),
            "--quiet".into(),
            "--rootfs".into(),
            t.display().to_string(),
            "-n".into(),
            "r1".into(),
            "-o".into(),
            disk.display().to_string(),
            "--artifact".into(),
            dir.path().join("r1.mender").display().to_string(),
        ];
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        aloftctl(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // No kernel.
    let o = run(&["--slot-size", "16M"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("has no kernel"), "{}", text(&o));
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
    // Larger than the slot.
    std::fs::write(t.join("boot/vmlinuz-6.1.0-10-amd64"), b"kernel").unwrap();
    std::fs::write(t.join("big"), vec![7u8; 20 << 20]).unwrap();
    let o = run(&["--slot-size", "16M"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("does not fit a 16 MiB slot"),
        "{}",
        text(&o)
    );
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
    // Unknown options and bad values: usage errors before anything is made.
    let o = run(&["--slot-size", "16M", "--frobnicate"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = run(&["--slot-size", "lots"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("is not a size"), "{}", text(&o));
    let o = run(&["--slot-size", "64M", "--server-cert", "/etc/hostname"]);
    assert!(
        text(&o).contains("--server-cert needs --server-url"),
        "{}",
        text(&o)
    );
    let o = aloftctl(&[
        "image",
        "build",
        "--rootfs",
        "/etc/hostname",
        "-n",
        "x",
        "-o",
        "/tmp/x.img",
    ]);
    assert!(
        text(&o).contains("neither a folder, a tarball"),
        "{}",
        text(&o)
    );
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}
