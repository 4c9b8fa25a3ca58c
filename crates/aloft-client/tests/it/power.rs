//! A power cut at every state transition: the client is aborted (no cleanup, like `kill -9`)
//! just before and just after each durable write (state files, bootloader environment) of an
//! install, of the resume that commits, and of the resume that rolls back. After a restart and
//! any number of reboots the device must run a complete image, with nothing left on trial and
//! a report that matches the slot it runs.

use std::os::unix::process::ExitStatusExt as _;
use std::process::Command;

use aloft_artifact::Compression;
use aloft_device::boot::control::SlotId;
use aloft_device::sim::SimBootloader;

use crate::{Dev, rootfs_artifact};

fn settle(dev: &Dev) {
    dev.aloft(&["resume"]);
    for _ in 0..4 {
        if dev.status()["pending"].is_null() {
            return;
        }
        dev.reboot();
        dev.aloft(&["resume"]);
    }
}

fn check(dev: &Dev, image: &[u8], label: &str) {
    let status = dev.status();
    assert!(
        status["pending"].is_null(),
        "{label}: still pending: {status}"
    );
    let booted = dev.reboot();
    assert_eq!(
        dev.env()["upgrade_available"],
        "0",
        "{label}: nothing may stay on trial"
    );
    let status = dev.status();
    match booted {
        SlotId::B => {
            assert!(
                dev.slot("b")[..image.len()] == *image,
                "{label}: slot B boots with an incomplete image"
            );
            assert_eq!(status["artifact_name"], "release-2", "{label}: {status}");
            assert_eq!(status["last"]["success"], true, "{label}: {status}");
        }
        SlotId::A => {
            assert_eq!(status["artifact_name"], "factory-1", "{label}: {status}");
            assert_ne!(
                status["last"]["success"], true,
                "{label}: A runs, so success would be a lie: {status}"
            );
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Stage {
    Install,
    ResumeCommit,
    ResumeRollback,
}

#[test]
fn a_crash_at_every_state_transition_recovers() {
    let mut crashes = 0;
    for bootloader in [SimBootloader::Uboot, SimBootloader::Grub] {
        for stage in [Stage::Install, Stage::ResumeCommit, Stage::ResumeRollback] {
            for when in ["before", "after"] {
                // GRUB's pair takes six durable writes per store (two locks and the copy, twice).
                for n in 1..80 {
                    let dev = Dev::new(bootloader);
                    if matches!(stage, Stage::ResumeRollback) {
                        dev.set_config("health_check = \"exit 1\"");
                    }
                    let (art, image) = rootfs_artifact(
                        &dev.dir,
                        "release-2",
                        256 << 10,
                        "qemux86-64",
                        Compression::Gzip,
                    );
                    let art = art.to_str().unwrap().to_owned();
                    let args: Vec<&str> = if matches!(stage, Stage::Install) {
                        vec!["install", &art]
                    } else {
                        dev.ok(&["install", &art]);
                        dev.reboot();
                        vec!["resume"]
                    };
                    let status = Command::new(env!("CARGO_BIN_EXE_aloft"))
                        .arg("--config")
                        .arg(&dev.config)
                        .args(&args)
                        .env("ALOFT_CRASH_AT", format!("{n}:{when}"))
                        .output()
                        .unwrap()
                        .status;
                    if status.signal() != Some(6) {
                        break; // the command got past its last durable write
                    }
                    crashes += 1;
                    settle(&dev);
                    check(
                        &dev,
                        &image,
                        &format!("{bootloader:?} {stage:?} crash {when} write {n}"),
                    );
                }
            }
        }
    }
    eprintln!("{crashes} crash points checked");
    assert!(crashes >= 24, "only {crashes} crash points were reached");
}

/// The same for an Update Module update: after a crash at any durable write of `install` and a
/// restart, nothing is pending, the module tree is gone, the name agrees with the outcome, and a
/// module whose `ArtifactInstall` ran was rolled back before the failure was recorded.
#[test]
fn a_crash_at_every_state_transition_of_a_module_update_recovers() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut crashes = 0;
    for when in ["before", "after"] {
        for n in 1..40 {
            let dev = Dev::new(SimBootloader::Uboot);
            let modules = dev.dir.join("modules");
            std::fs::create_dir_all(&modules).unwrap();
            let log = dev.dir.join("calls.log");
            let module = modules.join("app");
            std::fs::write(
                &module,
                format!("#!/bin/sh\necho \"$1\" >> '{}'\n[ \"$1\" = SupportsRollback ] && echo Yes\nexit 0\n", log.display()),
            )
            .unwrap();
            std::fs::set_permissions(&module, std::fs::Permissions::from_mode(0o755)).unwrap();
            dev.set_config(&format!("modules_dir = \"{}\"", modules.display()));
            let mut w = aloft_artifact::ArtifactWriter::new(
                "app-2",
                vec!["qemux86-64".into()],
                aloft_artifact::PayloadType::Module("app".into()),
            );
            w.files.push(aloft_artifact::PayloadSource::from_bytes(
                "app.bin",
                vec![5; 50_000],
            ));
            let art = dev.dir.join("app.mender");
            w.write(std::fs::File::create(&art).unwrap()).unwrap();
            let status = Command::new(env!("CARGO_BIN_EXE_aloft"))
                .arg("--config")
                .arg(&dev.config)
                .args(["install", art.to_str().unwrap()])
                .env("ALOFT_CRASH_AT", format!("{n}:{when}"))
                .output()
                .unwrap()
                .status;
            if status.signal() != Some(6) {
                break;
            }
            crashes += 1;
            settle(&dev);
            let label = format!("crash {when} write {n}");
            let status = dev.status();
            assert!(status["pending"].is_null(), "{label}: {status}");
            assert!(
                !dev.dir.join("data/modules/v3/payloads/0000/tree").exists(),
                "{label}: tree left behind"
            );
            let calls = std::fs::read_to_string(&log).unwrap_or_default();
            if status["last"]["success"] == true {
                assert_eq!(status["artifact_name"], "app-2", "{label}");
            } else {
                assert_eq!(status["artifact_name"], "factory-1", "{label}: {status}");
                if let Some(i) = calls.lines().position(|c| c == "ArtifactInstall") {
                    assert!(
                        calls.lines().skip(i).any(|c| c == "ArtifactRollback"),
                        "{label}: installed but not rolled back: {calls}"
                    );
                }
            }
        }
    }
    eprintln!("{crashes} module crash points checked");
    assert!(crashes >= 6, "only {crashes} crash points were reached");
}
