//! Regression tests for defects found by acceptance runs: one aloft process at a time, exit
//! codes that tell the truth, the boot-time resume of a daemon-managed device, damaged state
//! files, and what `status` says between an install and its reboot.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aloft_artifact::Compression;
use aloft_device::boot::control::SlotId;
use aloft_device::sim::{self, SimBootloader};

use crate::{Dev, rootfs_artifact, text};

/// Waits until the device lock names `what` (the holder writes itself into it).
fn wait_for_holder(dev: &Dev, what: &str) {
    let lock = dev.dir.join("data/aloft.lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&lock).is_ok_and(|s| s.contains(what)) {
        assert!(
            Instant::now() < deadline,
            "no process took the lock for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `aloft install -` fed with the first `part` bytes of `bytes`, holding the lock (it waits for
/// the rest); returns the process and its standard input.
fn stalled_install(
    dev: &Dev,
    bytes: &[u8],
    part: usize,
) -> (std::process::Child, std::process::ChildStdin) {
    let mut install = Command::new(env!("CARGO_BIN_EXE_aloft"))
        .arg("--config")
        .arg(&dev.config)
        .args(["install", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = install.stdin.take().unwrap();
    stdin.write_all(&bytes[..part]).unwrap();
    wait_for_holder(dev, "install");
    (install, stdin)
}

#[test]
fn nothing_else_acts_on_the_device_while_an_install_writes_its_slot() {
    let dev = Dev::new(SimBootloader::Grub);
    dev.set_config("lock_wait_seconds = 1");
    let (art, image) = rootfs_artifact(
        &dev.dir,
        "release-2",
        2 << 20,
        "qemux86-64",
        Compression::None,
    );
    let (other, _) = rootfs_artifact(
        &dev.dir,
        "release-3",
        1 << 20,
        "qemux86-64",
        Compression::None,
    );
    let bytes = std::fs::read(&art).unwrap();
    let before_b = dev.slot("b");

    // An install that reads its artifact from a pipe we fill slowly: it holds the lock.
    let (install, mut stdin) = stalled_install(&dev, &bytes, bytes.len() / 2);

    for (args, what) in [
        (vec!["commit"], "commit"),
        (vec!["rollback"], "rollback"),
        (vec!["resume"], "resume"),
        (vec!["install", other.to_str().unwrap()], "second install"),
    ] {
        let started = Instant::now();
        let o = dev.aloft(&args);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", text(&o));
        assert!(
            text(&o).contains("another aloft process is working on this device"),
            "{what}: {}",
            text(&o)
        );
        assert!(
            text(&o).contains("install"),
            "names the holder: {}",
            text(&o)
        );
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{what} waited first"
        );
    }
    assert_eq!(
        dev.env()["upgrade_available"],
        "0",
        "nothing armed meanwhile"
    );
    assert_eq!(dev.env()["mender_boot_part"], "2");

    // The install goes on undisturbed and arms its slot; the refused commands left no trace.
    stdin.write_all(&bytes[bytes.len() / 2..]).unwrap();
    drop(stdin);
    let out = install.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(&dev.slot("b")[..image.len()], &image[..]);
    assert_ne!(dev.slot("b"), before_b);
    let status = dev.status();
    assert_eq!(status["pending"], "installed", "{status}");
    assert!(
        status["last"].is_null(),
        "no failure was recorded: {status}"
    );
    assert_eq!(dev.env()["upgrade_available"], "1");
    assert_eq!(dev.reboot(), SlotId::B);
    assert_eq!(dev.aloft(&["commit"]).status.code(), Some(0));
    assert_eq!(dev.status()["artifact_name"], "release-2");
}

#[test]
fn a_lock_left_by_a_killed_process_does_not_block() {
    let dev = Dev::new(SimBootloader::Uboot);
    let (art, _) = rootfs_artifact(
        &dev.dir,
        "release-2",
        1 << 20,
        "qemux86-64",
        Compression::None,
    );
    let bytes = std::fs::read(&art).unwrap();
    let (mut install, _stdin) = stalled_install(&dev, &bytes, bytes.len() / 3);
    install.kill().unwrap();
    install.wait().unwrap();
    // The next holder judges the writer dead (it holds the lock) and drops its update.
    let o = dev.aloft(&["resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let status = dev.status();
    assert!(
        status["last"]["reason"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{status}"
    );
    dev.ok(&["install", art.to_str().unwrap()]);
}

#[test]
fn commit_exit_codes_tell_the_truth() {
    let dev = Dev::new(SimBootloader::Uboot);
    let o = dev.aloft(&["commit"]);
    assert_eq!(o.status.code(), Some(2), "nothing to commit: {}", text(&o));
    assert!(text(&o).contains("nothing to commit"));

    dev.install_release_2(Compression::Gzip);
    let o = dev.aloft(&["commit"]);
    assert_eq!(o.status.code(), Some(2), "before the reboot: {}", text(&o));
    assert_eq!(
        dev.env()["upgrade_available"],
        "1",
        "still armed for its trial"
    );

    sim::set_bootable(&dev.dir, SlotId::B, false).unwrap();
    assert_eq!(dev.reboot(), SlotId::A, "the bootloader fell back");
    let o = dev.aloft(&["commit"]);
    assert_eq!(o.status.code(), Some(1), "a failed update: {}", text(&o));
    assert!(text(&o).contains("did not boot"), "{}", text(&o));
    assert_eq!(dev.aloft(&["commit"]).status.code(), Some(2));
}

#[test]
fn status_between_install_and_reboot_says_what_runs_and_what_is_next() {
    for bootloader in [SimBootloader::Uboot, SimBootloader::Grub] {
        let dev = Dev::new(bootloader);
        dev.install_release_2(Compression::Gzip);
        let shown = dev.ok(&["status"]);
        assert!(shown.contains("running slot: a"), "{shown}");
        assert!(shown.contains("next boot: slot b on trial"), "{shown}");
        assert_eq!(dev.status()["booted_slot"], "a");
        assert_eq!(dev.reboot(), SlotId::B);
        let shown = dev.ok(&["status"]);
        assert!(shown.contains("running slot: b"), "{shown}");
        assert!(!shown.contains("next boot"), "{shown}");
    }
}

#[test]
fn boot_time_resume_leaves_the_commit_to_the_daemon() {
    let dev = Dev::new(SimBootloader::Grub);
    let text_before = std::fs::read_to_string(&dev.config).unwrap();
    std::fs::write(
        &dev.config,
        format!("{text_before}\n[daemon]\nserver_url = \"https://127.0.0.1:9\"\n"),
    )
    .unwrap();
    dev.install_release_2(Compression::Gzip);
    assert_eq!(dev.reboot(), SlotId::B);
    let o = dev.aloft(&["resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("the daemon checks it"), "{}", text(&o));
    assert_eq!(dev.env()["upgrade_available"], "1", "not committed");
    assert_eq!(dev.status()["pending"], "installed");
    assert_eq!(dev.status()["artifact_name"], "factory-1");
    // An explicit commit by the operator still works.
    assert_eq!(dev.aloft(&["commit"]).status.code(), Some(0));
    assert_eq!(dev.status()["artifact_name"], "release-2");
}

#[test]
fn a_damaged_state_file_is_kept_aside_and_the_update_of_unknown_state_dropped() {
    let dev = Dev::new(SimBootloader::Uboot);
    dev.install_release_2(Compression::Gzip);
    assert_eq!(dev.reboot(), SlotId::B);
    std::fs::write(
        dev.dir.join("data/state.json"),
        b"{\"pending\": {\"phase\": \"ins",
    )
    .unwrap();
    let o = dev.aloft(&["resume"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("state.json.corrupt"),
        "tells the operator: {}",
        text(&o)
    );
    assert!(dev.dir.join("data/state.json.corrupt").exists());
    assert_eq!(dev.env()["upgrade_available"], "0");
    assert_eq!(
        dev.env()["mender_boot_part"],
        "2",
        "the trial slot is rolled back"
    );
    let status = dev.status();
    assert_eq!(status["artifact_name"], "factory-1");
    assert!(
        status["last"]["reason"]
            .as_str()
            .unwrap()
            .contains("unreadable"),
        "{status}"
    );
    assert_eq!(dev.reboot(), SlotId::A);
    // Commands work again without anybody deleting anything.
    dev.install_release_2(Compression::Gzip);
}

#[test]
fn a_missing_verification_key_is_named() {
    let dev = Dev::new(SimBootloader::Uboot);
    dev.set_config("verify_keys = [\"/nonexistent/keys/release.pem\"]");
    let (art, _) = rootfs_artifact(
        &dev.dir,
        "release-2",
        1 << 20,
        "qemux86-64",
        Compression::Gzip,
    );
    let o = dev.aloft(&["install", art.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("/nonexistent/keys/release.pem"),
        "{}",
        text(&o)
    );
}
