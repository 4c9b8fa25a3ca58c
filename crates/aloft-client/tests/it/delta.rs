//! Delta updates on a simulated A/B device: the delta is applied from the running slot into
//! the inactive one, a changed running slot is refused before the inactive slot's first byte
//! changes, and an apply cut by a power cut resumes at its last durable window.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use aloft_artifact::{ArtifactWriter, PayloadSource, PayloadType, ReadOptions};
use aloft_delta::EncodeOptions;
use aloft_delta::artifact::MakeOptions;
use aloft_device::boot::control::SlotId;
use aloft_device::sim::SimBootloader;
use aloft_testkit::images::{copy_tree, ext4, library_tree, noise};
use sha2::Digest as _;

use crate::{Dev, text};

const IMAGE: u64 = 8 << 20;

/// Two releases as ext4 images: libraries of noise, the second with one added and one gone.
fn releases(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let v1 = dir.join("tree-1");
    library_tree(&v1, 30, 60_000);
    let v2 = dir.join("tree-2");
    copy_tree(&v1, &v2);
    std::fs::write(v2.join("usr/lib/new.so"), noise(77, 50_000)).unwrap();
    std::fs::remove_file(v2.join("usr/lib/lib4.so")).unwrap();
    (
        ext4(&v1, &dir.join("v1.ext4"), IMAGE, 1024),
        ext4(&v2, &dir.join("v2.ext4"), IMAGE, 1024),
    )
}

fn full(dir: &Path, name: &str, image: &[u8]) -> PathBuf {
    let mut w = ArtifactWriter::new(name, vec!["qemux86-64".into()], PayloadType::RootfsImage);
    w.files
        .push(PayloadSource::from_bytes("rootfs.ext4", image.to_vec()));
    let path = dir.join(format!("{name}.mender"));
    w.write(std::fs::File::create(&path).unwrap()).unwrap();
    path
}

/// The delta artifact release-1 → release-2, with 64 KiB windows (so that an 8 MiB image
/// has several durable resume points).
fn delta(dir: &Path, old: &Path, new: &Path) -> PathBuf {
    let path = dir.join("release-2.delta.mender");
    let options = MakeOptions {
        encode: EncodeOptions {
            window_size: 64 << 10,
            ..EncodeOptions::default()
        },
        read: ReadOptions::default(),
        signing_key: None,
        work_dir: dir,
    };
    let open =
        |p: &Path| -> Box<dyn std::io::Read + Send> { Box::new(std::fs::File::open(p).unwrap()) };
    let mut out = std::fs::File::create(&path).unwrap();
    aloft_delta::artifact::make(open(old), open(new), options, &mut out, &mut |_, _, _| {})
        .unwrap();
    path
}

/// A device running release-1 from slot B, both releases' images, release-2's full artifact
/// and the delta artifact to it.
fn on_release_1(bootloader: SimBootloader) -> (Dev, Vec<u8>, Vec<u8>, PathBuf, PathBuf) {
    let dev = Dev::new(bootloader);
    let (v1, v2) = releases(&dev.dir);
    let r1 = full(&dev.dir, "release-1", &v1);
    let r2 = full(&dev.dir, "release-2", &v2);
    dev.ok(&["install", r1.to_str().unwrap()]);
    assert_eq!(dev.reboot(), SlotId::B);
    assert!(dev.ok(&["resume"]).contains("committed"));
    let d = delta(&dev.dir, &r1, &r2);
    (dev, v1, v2, r2, d)
}

#[test]
fn a_delta_installs_from_the_running_slot_and_a_changed_source_writes_nothing() {
    let (dev, v1, v2, r2, d) = on_release_1(SimBootloader::Uboot);
    assert!(std::fs::metadata(&d).unwrap().len() * 10 < std::fs::metadata(&r2).unwrap().len());

    // The running slot changed by one byte in a block the delta copies: refused for that
    // reason, and slot A is as it was.
    let running = dev.dir.join("slot-b.img");
    let copied = (0..v1.len() / 1024)
        .rev()
        .find(|i| {
            let b = &v1[i * 1024..(i + 1) * 1024];
            b.iter().filter(|x| **x != 0).count() > 900
                && v2.windows(1024).step_by(1024).any(|w| w == b)
        })
        .expect("a block both releases share");
    let mut slot = std::fs::read(&running).unwrap();
    slot[copied * 1024 + 7] ^= 0xff;
    std::fs::write(&running, &slot).unwrap();
    let before = dev.slot("a");
    let o = dev.aloft(&["install", d.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("source does not match"), "{}", text(&o));
    // Windows before the failing one may hold the new release already; no byte of slot A
    // is anything but what it was or what release-2 has there.
    let after = dev.slot("a");
    let wrong = (0..v2.len()).find(|&i| after[i] != before[i] && after[i] != v2[i]);
    assert_eq!(wrong, None, "a wrong byte reached slot A");
    assert_eq!(after[v2.len()..], before[v2.len()..]);
    slot[copied * 1024 + 7] ^= 0xff;
    std::fs::write(&running, &slot).unwrap();

    // Intact, it installs, boots and commits: slot A holds release-2 byte for byte.
    dev.ok(&["install", d.to_str().unwrap()]);
    assert_eq!(dev.reboot(), SlotId::A);
    assert!(dev.ok(&["resume"]).contains("committed"));
    assert_eq!(&dev.slot("a")[..v2.len()], &v2[..]);
    assert_eq!(dev.ok(&["show-artifact"]).trim(), "release-2");
    let provides = dev.ok(&["show-provides"]);
    let sum = hex::encode(sha2::Sha256::digest(&v2));
    assert!(
        provides.contains(&format!("rootfs-image.checksum={sum}")),
        "{provides}"
    );
}

#[test]
fn a_power_cut_during_the_apply_resumes_at_the_last_durable_window() {
    let (dev, _, v2, _, d) = on_release_1(SimBootloader::Grub);
    let record = dev.dir.join("data/delta.json");
    // Cut at later and later durable writes until one lands inside the apply, after some
    // windows are on the slot.
    let cut = (2..60).find(|n| {
        let o = Command::new(env!("CARGO_BIN_EXE_aloft"))
            .arg("--config")
            .arg(&dev.config)
            .args(["install", d.to_str().unwrap()])
            .env("ALOFT_CRASH_AT", format!("{n}:after"))
            .output()
            .unwrap();
        let cut = o.status.signal().is_some();
        if cut {
            dev.aloft(&["resume"]); // the boot after the cut: the install is abandoned
        }
        cut && record.exists()
    });
    assert!(cut.is_some(), "no cut landed inside the apply");
    let o = dev.aloft(&["--verbose", "install", d.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("resuming the delta"), "{}", text(&o));
    assert!(
        !record.exists(),
        "the record goes once the slot is verified"
    );
    assert_eq!(dev.reboot(), SlotId::A);
    assert!(dev.ok(&["resume"]).contains("committed"));
    assert_eq!(&dev.slot("a")[..v2.len()], &v2[..]);
}
