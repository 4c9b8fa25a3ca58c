//! The `aloft` client on simulated A/B devices: install → reboot → commit, bootloader fallback,
//! health-check rollback, hostile artifacts, and `kill -9` at random moments.

mod delta;
mod modules;
mod power;
mod safety;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aloft_artifact::{ArtifactWriter, Compression, PayloadSource, PayloadType};
use aloft_device::boot::EnvStore;
use aloft_device::boot::control::SlotId;
use aloft_device::boot::grub_pair::GrubEnvPair;
use aloft_device::boot::uboot::UbootEnv;
use aloft_device::sim::{self, SimBootloader, SimOptions};

struct Dev {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    config: PathBuf,
}

impl Dev {
    fn new(bootloader: SimBootloader) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("device");
        let options = SimOptions {
            device_type: "qemux86-64".into(),
            bootloader,
            slot_size: 16 << 20,
            artifact_name: "factory-1".into(),
            reboot_command: Some(format!(
                "touch '{}/reboot-requested'",
                tmp.path().join("device").display()
            )),
            on_boot: None,
            server: None,
        };
        let config = sim::create(&dir, &options).unwrap();
        let dir = std::fs::canonicalize(dir).unwrap();
        Self {
            _tmp: tmp,
            dir,
            config,
        }
    }

    fn aloft(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aloft"));
        cmd.arg("--config").arg(&self.config).args(args);
        cmd.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.aloft(args);
        assert!(o.status.success(), "aloft {args:?}: {}", text(&o));
        String::from_utf8(o.stdout).unwrap()
    }

    fn reboot(&self) -> SlotId {
        let _ = std::fs::remove_file(self.dir.join("reboot-requested"));
        sim::reboot(&self.dir).unwrap()
    }

    fn env(&self) -> aloft_device::boot::Vars {
        if self.dir.join("grub").exists() {
            GrubEnvPair::new(self.dir.join("grub")).load().unwrap()
        } else {
            UbootEnv::from_config(&self.dir.join("fw_env.config"))
                .unwrap()
                .load()
                .unwrap()
        }
    }

    fn slot(&self, slot: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(format!("slot-{slot}.img"))).unwrap()
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).unwrap()
    }

    /// Builds release-2 (a 1 MiB image) and installs it; the slot is armed, not yet booted.
    fn install_release_2(&self, codec: Compression) {
        let (art, _) = rootfs_artifact(&self.dir, "release-2", 1 << 20, "qemux86-64", codec);
        self.ok(&["install", art.to_str().unwrap()]);
    }

    fn set_config(&self, extra: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        // Top-level keys must come before the first table.
        let (head, tables) = text.split_at(text.find("\n[").unwrap());
        std::fs::write(&self.config, format!("{head}\n{extra}\n{tables}")).unwrap();
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A rootfs image of `size` pseudo-random bytes and its artifact.
pub(crate) fn rootfs_artifact(
    dir: &Path,
    name: &str,
    size: usize,
    device_type: &str,
    codec: Compression,
) -> (PathBuf, Vec<u8>) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ name.len() as u64;
    let image: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_be_bytes()[0]
        })
        .collect();
    let mut w = ArtifactWriter::new(name, vec![device_type.into()], PayloadType::RootfsImage);
    w.files
        .push(PayloadSource::from_bytes("rootfs.ext4", image.clone()));
    w.compression = codec;
    let path = dir.join(format!("{name}.mender"));
    w.write(std::fs::File::create(&path).unwrap()).unwrap();
    (path, image)
}

fn install_reboot_commit(bootloader: SimBootloader) {
    let dev = Dev::new(bootloader);
    let (art, image) = rootfs_artifact(
        &dev.dir,
        "release-2",
        3 << 20,
        "qemux86-64",
        Compression::Gzip,
    );
    let o = dev.aloft(&["install", art.to_str().unwrap(), "--reboot-exit-code"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert_eq!(dev.env()["upgrade_available"], "1");
    assert_eq!(dev.env()["mender_boot_part"], "3");
    assert_eq!(
        dev.ok(&["show-artifact"]).trim(),
        "factory-1",
        "nothing is committed before the reboot"
    );

    assert_eq!(dev.reboot(), SlotId::B);
    assert!(dev.ok(&["resume"]).contains("committed"));
    assert_eq!(
        &dev.slot("b")[..image.len()],
        &image[..],
        "slot B holds the image byte for byte"
    );
    let env = dev.env();
    assert_eq!(
        (
            env["mender_boot_part"].as_str(),
            env["upgrade_available"].as_str()
        ),
        ("3", "0")
    );
    assert_eq!(dev.ok(&["show-artifact"]).trim(), "release-2");
    assert!(
        dev.ok(&["show-provides"])
            .contains("rootfs-image.version=release-2")
    );
    // It stays on B from now on.
    assert_eq!(dev.reboot(), SlotId::B);
    assert_eq!(
        dev.aloft(&["commit"]).status.code(),
        Some(2),
        "nothing left to commit"
    );
}

#[test]
fn rootfs_install_reboot_commit_with_uboot() {
    install_reboot_commit(SimBootloader::Uboot);
}

#[test]
fn rootfs_install_reboot_commit_with_grub() {
    install_reboot_commit(SimBootloader::Grub);
}

#[test]
fn a_new_slot_that_does_not_boot_is_reported_with_the_reason() {
    let dev = Dev::new(SimBootloader::Uboot);
    dev.install_release_2(Compression::Zstd);
    sim::set_bootable(&dev.dir, SlotId::B, false).unwrap();
    assert_eq!(
        dev.reboot(),
        SlotId::A,
        "the bootloader fell back by itself"
    );
    assert!(dev.ok(&["resume"]).contains("did not boot"));
    let status = dev.status();
    assert_eq!(
        status["artifact_name"], "factory-1",
        "the old artifact name is kept"
    );
    assert_eq!(status["last"]["success"], false);
    assert!(
        status["last"]["reason"]
            .as_str()
            .unwrap()
            .contains("bootloader fell back to slot a"),
        "{status}"
    );
    assert!(status["pending"].is_null());
}

#[test]
fn a_failing_health_check_rolls_back_by_itself() {
    let dev = Dev::new(SimBootloader::Grub);
    dev.set_config("health_check = \"echo 'app did not start' >&2; exit 3\"");
    dev.install_release_2(Compression::Gzip);
    assert_eq!(dev.reboot(), SlotId::B);
    dev.ok(&["resume"]);
    assert!(
        dev.dir.join("reboot-requested").exists(),
        "the client asked for the rollback reboot"
    );
    assert_eq!(dev.env()["mender_boot_part"], "2", "pointed back at slot A");
    assert_eq!(dev.reboot(), SlotId::A);
    dev.ok(&["resume"]);
    let status = dev.status();
    assert_eq!(status["artifact_name"], "factory-1");
    let reason = status["last"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("health check") && reason.contains("app did not start"),
        "{reason}"
    );
}

#[test]
fn operator_rollback_before_the_reboot_disarms_the_slot() {
    let dev = Dev::new(SimBootloader::Uboot);
    dev.install_release_2(Compression::Gzip);
    dev.ok(&["rollback"]);
    assert_eq!(dev.env()["upgrade_available"], "0");
    assert_eq!(dev.reboot(), SlotId::A);
    assert_eq!(dev.aloft(&["rollback"]).status.code(), Some(2));
}

#[test]
fn bad_artifacts_are_refused_and_leave_the_device_as_it_was() {
    let dev = Dev::new(SimBootloader::Uboot);
    let key = aloft_artifact::SigningKey::generate(aloft_artifact::KeyType::Ecdsa).unwrap();
    std::fs::write(
        dev.dir.join("trusted.pem"),
        key.verifying_key().to_pem().unwrap(),
    )
    .unwrap();
    dev.set_config("verify_keys = [\"trusted.pem\"]");
    let (unsigned, _) = rootfs_artifact(
        &dev.dir,
        "unsigned-2",
        1 << 20,
        "qemux86-64",
        Compression::Gzip,
    );
    let (other_unsigned, _) = rootfs_artifact(
        &dev.dir,
        "other-2",
        1 << 20,
        "raspberrypi4",
        Compression::Gzip,
    );
    let other_type = dev.dir.join("other-2-signed.mender");
    aloft_artifact::sign_artifact(
        std::fs::File::open(&other_unsigned).unwrap(),
        std::fs::File::create(&other_type).unwrap(),
        &key,
        aloft_artifact::SignMode::RefuseSigned,
    )
    .unwrap();
    let mut cases: Vec<(String, PathBuf, &str)> = vec![
        ("unsigned".into(), unsigned, "not signed"),
        ("wrong device type".into(), other_type, "device type"),
    ];
    for f in aloft_testkit::hostile::all() {
        let path = dev.dir.join(format!("{}.mender", f.name));
        std::fs::write(&path, &f.bytes).unwrap();
        cases.push((f.name.clone(), path, ""));
    }
    let slot_b = dev.slot("b");
    let env = dev.env();
    for (name, path, expect) in cases {
        let o = dev.aloft(&["install", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", text(&o));
        assert!(text(&o).contains(expect), "{name}: {}", text(&o));
        assert_eq!(
            dev.env(),
            env,
            "{name}: the bootloader environment is untouched"
        );
        assert!(
            dev.slot("b") == slot_b,
            "{name}: the inactive slot is untouched"
        );
        assert!(dev.status()["pending"].is_null(), "{name}");
    }
}

#[test]
fn a_corrupt_payload_never_becomes_bootable() {
    let dev = Dev::new(SimBootloader::Uboot);
    let (art, _) = rootfs_artifact(
        &dev.dir,
        "release-2",
        1 << 20,
        "qemux86-64",
        Compression::None,
    );
    let mut bytes = std::fs::read(&art).unwrap();
    let at = bytes.len() - 4096; // inside the image, near its end
    bytes[at] ^= 1;
    std::fs::write(&art, bytes).unwrap();
    let env = dev.env();
    let o = dev.aloft(&["install", art.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("checksum mismatch"), "{}", text(&o));
    assert_eq!(dev.env(), env, "never armed");
    assert_eq!(dev.reboot(), SlotId::A);
    assert_eq!(dev.status()["last"]["success"], false);
}

/// `kill -9` of the client at random moments of the install (across the slot write, the state
/// writes and the arming), then restart, reboots and resume: the device always ends on a slot
/// holding a complete, verified image, with no update left pending and a report that agrees.
#[test]
fn kill_9_at_random_moments_never_bricks_or_lies() {
    let dev = Dev::new(SimBootloader::Uboot);
    let (art, image) = rootfs_artifact(
        &dev.dir,
        "release-2",
        8 << 20,
        "qemux86-64",
        Compression::None,
    );
    let art = art.to_str().unwrap().to_owned();
    let runs: u64 = std::env::var("ALOFT_KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    // Calibrate: how long does a whole install take here?
    let start = std::time::Instant::now();
    dev.ok(&["install", &art]);
    let full = start.elapsed();
    dev.ok(&["rollback"]);
    let mut x: u64 = 12345;
    let (mut stayed_on_a, mut reached_b) = (0, 0);
    for run in 0..runs {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let delay = full.mul_f64(f64::from(u32::try_from((x >> 33) % 1000).unwrap()) / 900.0);
        // Wipe slot B so a stale image from an earlier run cannot pass for a new one.
        std::fs::OpenOptions::new()
            .write(true)
            .open(dev.dir.join("slot-b.img"))
            .unwrap()
            .set_len(0)
            .unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(dev.dir.join("slot-b.img"))
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_aloft"))
            .arg("--config")
            .arg(&dev.config)
            .args(["install", &art])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();

        // The device restarts (maybe without a reboot first), then boots until settled.
        dev.aloft(&["resume"]);
        for _ in 0..3 {
            if dev.status()["pending"].is_null() {
                break;
            }
            dev.reboot();
            dev.aloft(&["resume"]);
        }
        let status = dev.status();
        assert!(
            status["pending"].is_null(),
            "run {run} ({delay:?}): still pending: {status}"
        );
        let booted = dev.reboot();
        let env = dev.env();
        assert_eq!(
            env["upgrade_available"], "0",
            "run {run}: nothing left on trial"
        );
        match booted {
            SlotId::B => {
                reached_b += 1;
                assert!(
                    dev.slot("b")[..image.len()] == image[..],
                    "run {run}: slot B boots but is incomplete"
                );
                assert_eq!(status["artifact_name"], "release-2", "run {run}");
                assert_eq!(status["last"]["success"], true, "run {run}");
                // Go back to A for the next run, the way an operator would: install A's image.
                dev.ok(&["install", &art]);
                dev.reboot();
                dev.ok(&["resume"]);
                // Now on A with release-2 too; reset the device for a clean next run.
                let fresh = Dev::reset(&dev);
                assert_eq!(fresh, SlotId::A);
            }
            SlotId::A => {
                stayed_on_a += 1;
                assert_eq!(status["artifact_name"], "factory-1", "run {run}");
                if let Some(last) = status["last"].as_object() {
                    assert_eq!(
                        last["success"], false,
                        "run {run}: A runs, so the update did not succeed"
                    );
                }
            }
        }
    }
    eprintln!("{runs} kills: {stayed_on_a} stayed on A, {reached_b} completed on B");
    assert!(
        stayed_on_a > 0 && reached_b > 0,
        "the kill delays must cover both outcomes"
    );
}

impl Dev {
    /// Back to factory state (slot A, nothing installed), keeping the folder.
    fn reset(dev: &Dev) -> SlotId {
        let text = std::fs::read_to_string(&dev.config).unwrap();
        let options = SimOptions {
            device_type: "qemux86-64".into(),
            bootloader: SimBootloader::Uboot,
            slot_size: 16 << 20,
            artifact_name: "factory-1".into(),
            reboot_command: Some(format!("touch '{}/reboot-requested'", dev.dir.display())),
            on_boot: None,
            server: None,
        };
        sim::create(&dev.dir, &options).unwrap();
        std::fs::write(&dev.config, text).unwrap();
        sim::reboot(&dev.dir).unwrap()
    }
}

#[test]
fn install_from_stdin_and_from_an_http_url() {
    use std::io::Write as _;
    let dev = Dev::new(SimBootloader::Uboot);
    let (art, image) = rootfs_artifact(
        &dev.dir,
        "release-2",
        1 << 20,
        "qemux86-64",
        Compression::Gzip,
    );
    // Standard input.
    let mut child = Command::new(env!("CARGO_BIN_EXE_aloft"))
        .arg("--config")
        .arg(&dev.config)
        .args(["install", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&art).unwrap())
        .unwrap();
    assert!(child.wait().unwrap().success());
    dev.ok(&["rollback"]);

    // A URL, served by a one-shot HTTP server on loopback.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = std::fs::read(&art).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = std::io::Read::read(&mut conn, &mut request);
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        conn.write_all(&body).unwrap();
    });
    dev.ok(&[
        "install",
        &format!("http://127.0.0.1:{port}/release-2.mender"),
    ]);
    server.join().unwrap();
    assert_eq!(dev.reboot(), SlotId::B);
    dev.ok(&["resume"]);
    assert_eq!(&dev.slot("b")[..image.len()], &image[..]);
    // A URL that answers 404 is an error that names the URL.
    let o = dev.aloft(&["install", &format!("http://127.0.0.1:{port}/gone.mender")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("gone.mender"), "{}", text(&o));
}
