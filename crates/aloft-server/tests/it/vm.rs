//! Real A/B devices: disk images made by `aloftctl image build` from the Debian root filesystem
//! of `scripts/vm-rootfs.sh` (`ALOFT_VM_ROOTFS`), booted in QEMU with OVMF and GRUB, managed by
//! a real aloft-server through their own `aloft daemon`. Each scenario asserts what a user sees:
//! the server's statuses and log, `aloft status` in the guest, the slot the guest booted
//! (`/proc/cmdline`), and the GRUB variables read back from the disk image with `grub-editenv`.
//!
//! `scripts/test.sh` builds the root filesystem and the device binary (`ALOFT_VM_ALOFT`) and
//! runs these; without `ALOFT_VM_ROOTFS` they say so and do nothing. `ALOFT_VM_CUTS` sets the
//! number of power cuts (default 8: two in each phase).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aloft_server::http::Settings;
use aloft_testkit::vm::{Vm, check_esp_of_image, tail, try_grubenv_of_image};
use serde_json::{Value, json};

use crate::common::{TestApp, wait_for};
use crate::daemon::{accept, bin, device_log, inventory};

/// Where the partitions start with the default sizes (`aloftctl image build`'s layout).
const ESP_OFFSET: u64 = 1 << 20;
/// The ESP's default size.
const ESP_SIZE: u64 = 32 << 20;
/// How long a boot may take under software emulation.
const BOOT: Duration = Duration::from_secs(240);
const KERNEL_ARGS: &str = "net.ifnames=0 systemd.show_status=0 mitigations=off";

/// A server reachable from guests (10.0.2.2 is the host's loopback), the root filesystem, and
/// the images built from it.
struct Bed {
    work: tempfile::TempDir,
    keep: bool,
    rootfs: PathBuf,
    aloft: PathBuf,
    app: TestApp,
    port: u16,
}

fn rootfs() -> Option<PathBuf> {
    let found = std::env::var_os("ALOFT_VM_ROOTFS").map(PathBuf::from);
    if found.is_none() {
        eprintln!(
            "ALOFT_VM_ROOTFS is not set: the virtual machine scenarios do not run (scripts/test.sh runs them)"
        );
    }
    found
}

impl Drop for Bed {
    fn drop(&mut self) {
        // A failed scenario keeps its machines' folders (serial logs, disks) to look at.
        if std::thread::panicking() || self.keep {
            let dir = std::mem::replace(&mut self.work, tempfile::tempdir().unwrap());
            eprintln!("kept the machines' folder {}", dir.keep().display());
        }
    }
}

impl Bed {
    fn new() -> Option<Self> {
        let rootfs = rootfs()?;
        let aloft = std::env::var_os("ALOFT_VM_ALOFT").map_or_else(|| bin("aloft"), PathBuf::from);
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let app = TestApp::start_on(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Settings {
                public_url: Some(format!("https://10.0.2.2:{port}")),
                ..Settings::default()
            },
        );
        Some(Self {
            work: tempfile::tempdir().unwrap(),
            keep: std::env::var_os("ALOFT_VM_KEEP").is_some(),
            rootfs,
            aloft,
            app,
            port,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// `aloftctl image build` of release `name`: the disk image when `disk`, and the artifact.
    fn build(&self, name: &str, disk: bool, extra: &[&str]) -> PathBuf {
        let artifact = self.path(&format!("{name}.mender"));
        let mut cmd = Command::new(bin("aloftctl"));
        cmd.args(["image", "build", "--quiet", "--rootfs"])
            .arg(&self.rootfs)
            .args(["-n", name, "--artifact"])
            .arg(&artifact)
            .arg("--aloft")
            .arg(&self.aloft)
            .args(["--server-url", &format!("https://10.0.2.2:{}", self.port)])
            .arg("--server-cert")
            .arg(&self.app.cert)
            .args(["--poll-seconds", "3", "--kernel-args", KERNEL_ARGS])
            .args(["--data-size", "256M"])
            .args(extra);
        if disk {
            cmd.arg("-o").arg(self.path(&format!("{name}.img")));
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "image build {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        artifact
    }

    /// Boots a copy of `image` as a new machine, waits until it is up, and admits it.
    fn machine(&self, image: &str, name: &str) -> (Vm, PathBuf, String) {
        let disk = self.path(&format!("{name}.disk"));
        let copied = Command::new("cp")
            .args(["--sparse=always"])
            .arg(self.path(image))
            .arg(&disk)
            .status()
            .unwrap();
        assert!(copied.success());
        let mut vm = Vm::new(&self.path(name), &disk);
        vm.power_on();
        let took = vm.wait_up(BOOT).unwrap();
        eprintln!("{name}: up after {took:?}");
        let mac = vm.ok("cat /sys/class/net/eth0/address");
        let device = accept(&self.app, mac.trim());
        (vm, disk, device)
    }

    fn deploy(&self, artifact: &Path, name: &str, device: &str) -> String {
        if self
            .app
            .get("/api/management/v1/deployments/artifacts")
            .json()
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["name"] != name)
        {
            self.app.upload_ok(artifact);
        }
        self.app.deploy(&format!("to-{name}"), name, &[device])
    }

    /// The device's status in `deployment` (and its substate).
    fn status(&self, deployment: &str, device: &str) -> Option<String> {
        let list = self
            .app
            .get(&format!(
                "/api/management/v1/deployments/deployments/{deployment}/devices"
            ))
            .json();
        list.as_array()?.iter().find(|d| d["id"] == device)?["status"]
            .as_str()
            .map(str::to_owned)
    }

    fn final_status(&self, vm: &Vm, deployment: &str, device: &str, limit: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(s) = self.status(deployment, device)
                && aloft_api::status::is_final(&s)
            {
                return s;
            }
            assert!(
                started.elapsed() < limit,
                "no final status for {deployment} in {limit:?}; console:\n{}",
                tail(&vm.serial(), 60)
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// `aloft status --json` in the guest.
fn guest_status(vm: &Vm) -> Value {
    serde_json::from_str(&vm.ok("aloft status --json")).unwrap()
}

/// The slot the guest booted, from its kernel command line.
fn booted(vm: &Vm) -> String {
    let cmdline = vm.ok("cat /proc/cmdline");
    if cmdline.contains("root=PARTLABEL=rootfs-b") {
        "b".into()
    } else {
        assert!(cmdline.contains("root=PARTLABEL=rootfs-a"), "{cmdline}");
        "a".into()
    }
}

/// The GRUB variables as the disk holds them (after the guest synced its filesystems). The
/// guest's daemon may be writing the environment at that very moment (its FAT mid-update, as
/// mtools then says): sync and read again, a few times.
fn env(bed: &Bed, vm: &Vm, disk: &Path) -> std::collections::BTreeMap<String, String> {
    let mut last = String::new();
    for _ in 0..5 {
        vm.ok("sync");
        match try_grubenv_of_image(disk, ESP_OFFSET, bed.work.path()) {
            Ok(vars) => return vars.into_iter().collect(),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("the ESP could not be read after 5 syncs: {last}");
}

#[test]
fn vm_updates_fall_back_and_roll_back_on_real_boots() {
    let Some(bed) = Bed::new() else { return };
    let started = Instant::now();
    bed.build("v1", true, &[]);
    let v2 = bed.build(
        "v2",
        false,
        &["--file", "/etc/hostname:/etc/aloft-release-2"],
    );
    // v3 crashes during its boot, after its journal started, before aloft could commit it.
    let crash = bed.path("v3-crash.conf");
    std::fs::write(
        &crash,
        "[Unit]\nAfter=systemd-journal-flush.service\n\n[Service]\nExecStartPre=/bin/sh -c 'echo \"v3: fatal: \
         the application cannot start\" | systemd-cat -t v3-app -p crit; sleep 2; echo c > /proc/sysrq-trigger'\n",
    )
    .unwrap();
    let v3 = bed.build(
        "v3",
        false,
        &[
            "--file",
            &format!(
                "{}:/etc/systemd/system/aloft-resume.service.d/v3-crash.conf",
                crash.display()
            ),
        ],
    );
    // v4 boots, but its health check fails.
    let v4 = bed.build(
        "v4",
        false,
        &[
            "--health-check",
            "echo 'v4: the application is not healthy' >&2; exit 1",
        ],
    );
    eprintln!("images built in {:?}", started.elapsed());

    let (mut vm, disk, device) = bed.machine("v1.img", "dev");
    assert_eq!(booted(&vm), "a");
    assert_eq!(guest_status(&vm)["artifact_name"], "v1");

    // v1 → v2: download, write slot B, real reboot, GRUB boots B on trial, commit.
    let d = bed.deploy(&v2, "v2", &device);
    assert_eq!(bed.final_status(&vm, &d, &device, BOOT * 3), "success");
    assert_eq!(booted(&vm), "b");
    let s = guest_status(&vm);
    assert_eq!(s["artifact_name"], "v2", "{s}");
    assert!(s["pending"].is_null(), "{s}");
    vm.ok("test -f /etc/aloft-release-2");
    assert_eq!(env(&bed, &vm, &disk)["mender_boot_part"], "3");
    assert_eq!(env(&bed, &vm, &disk)["upgrade_available"], "0");
    wait_for(60, "the new artifact in the inventory", || {
        (inventory(&bed.app, &device, "artifact_name")? == json!("v2")).then_some(())
    });
    // Later boots stay on B.
    let _ = vm.exec("systemctl reboot", Duration::from_secs(5));
    vm.wait_serial("aloft: booting rootfs-b", 2, BOOT).unwrap();
    vm.wait_up(BOOT).unwrap();
    assert_eq!(booted(&vm), "b");

    // v3 crashes at boot: GRUB falls back to B by itself; the restored system reports failure
    // with what the failed boot logged.
    let d = bed.deploy(&v3, "v3", &device);
    assert_eq!(bed.final_status(&vm, &d, &device, BOOT * 4), "failure");
    assert!(
        vm.serial().contains("did not commit: falling back"),
        "GRUB fell back"
    );
    assert_eq!(booted(&vm), "b");
    let log = device_log(&bed.app, &d, &device);
    assert!(log.contains("did not boot"), "{log}");
    assert!(
        log.contains("v3: fatal: the application cannot start"),
        "rollback forensics: the failed boot's journal is in the log:\n{log}"
    );
    let s = guest_status(&vm);
    assert_eq!(s["artifact_name"], "v2");
    assert_eq!(env(&bed, &vm, &disk)["upgrade_available"], "0");

    // v4's health check fails: aloft rolls back and reboots into B, then reports the check.
    let d = bed.deploy(&v4, "v4", &device);
    assert_eq!(bed.final_status(&vm, &d, &device, BOOT * 4), "failure");
    vm.wait_up(BOOT).unwrap();
    assert_eq!(booted(&vm), "b");
    let log = device_log(&bed.app, &d, &device);
    assert!(log.contains("v4: the application is not healthy"), "{log}");
    let s = guest_status(&vm);
    assert_eq!(s["artifact_name"], "v2");
    assert!(
        s["last"]["reason"]
            .as_str()
            .unwrap()
            .contains("health check"),
        "{s}"
    );
    assert_eq!(env(&bed, &vm, &disk)["mender_boot_part"], "3");
    vm.power_cut();
    esp_is_consistent(&bed, &disk);
    eprintln!("scenarios done in {:?}", started.elapsed());
}

/// The phases a power cut is aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Download,
    SlotWrite,
    Reboot,
    TrialBoot,
}

#[test]
fn vm_power_cuts_never_brick_or_lie() {
    let Some(bed) = Bed::new() else { return };
    let cuts: usize = std::env::var("ALOFT_VM_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("ALOFT_VM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("power cuts: {cuts}, seed {seed} (ALOFT_VM_SEED to repeat)");
    let mut rng = fastrand::Rng::with_seed(seed);
    // zstd here (gzip, the default, in the other scenario): both codecs on real boots, and the
    // faster one where most installs happen.
    let zstd = ["--compression", "zstd"];
    bed.build("p1", true, &zstd);
    let p2 = bed.build("p2", false, &zstd);
    let p1 = bed.path("p1.mender");
    let (mut vm, disk, device) = bed.machine("p1.img", "cut");
    let mut running = "p1";
    let mut made = Vec::new();
    let mut round = 0;
    while made.len() < cuts {
        round += 1;
        let (artifact, target) = if running == "p1" {
            (&p2, "p2")
        } else {
            (&p1, "p1")
        };
        let d = bed.deploy(artifact, target, &device);
        // Two cuts per deployment, in phase order, every pair of phases in turn: the cuts are
        // spread evenly over the four phases.
        let pairs = [
            [Phase::Download, Phase::SlotWrite],
            [Phase::Reboot, Phase::TrialBoot],
            [Phase::Download, Phase::Reboot],
            [Phase::SlotWrite, Phase::TrialBoot],
            [Phase::Download, Phase::TrialBoot],
            [Phase::SlotWrite, Phase::Reboot],
        ];
        let planned = pairs[(round - 1) % pairs.len()];
        for phase in planned {
            if made.len() >= cuts {
                break;
            }
            let reached = wait_phase(&bed, &vm, &d, &device, phase);
            if !reached {
                break;
            }
            let delay = Duration::from_millis(rng.u64(0..4000));
            std::thread::sleep(delay);
            if bed
                .status(&d, &device)
                .is_some_and(|s| aloft_api::status::is_final(&s))
            {
                break;
            }
            vm.power_cut();
            made.push((round, phase, delay));
            eprintln!(
                "cut #{} in {phase:?} (+{delay:?}) of deployment {round}",
                made.len()
            );
            vm.power_on();
        }
        let status = bed.final_status(&vm, &d, &device, BOOT * 4);
        vm.wait_up(BOOT).unwrap();
        // The truth: success only if the device runs the new release, committed.
        let s = guest_status(&vm);
        let vars = env(&bed, &vm, &disk);
        assert_eq!(
            vars["upgrade_available"], "0",
            "nothing left on trial: {vars:?}"
        );
        assert!(s["pending"].is_null(), "nothing pending: {s}");
        if status == "success" {
            assert_eq!(s["artifact_name"], target, "{s}");
            running = target;
        } else {
            assert_eq!(status, "failure");
            assert_eq!(s["artifact_name"], running, "{s}");
        }
        let slot = booted(&vm);
        let part = if slot == "b" { "3" } else { "2" };
        assert_eq!(vars["mender_boot_part"], part, "boots the slot it runs");
        eprintln!("deployment {round} → {target}: {status}, running {running} on slot {slot}");
    }
    let by_phase = |p: Phase| made.iter().filter(|(_, q, _)| *q == p).count();
    eprintln!(
        "{} power cuts: download {}, slot write {}, reboot {}, trial boot {}",
        made.len(),
        by_phase(Phase::Download),
        by_phase(Phase::SlotWrite),
        by_phase(Phase::Reboot),
        by_phase(Phase::TrialBoot)
    );
    assert!(made.len() >= cuts);
    vm.power_cut();
    esp_is_consistent(&bed, &disk);
}

/// The ESP's FAT as the last power cut left it: nothing for fsck but the dirty bit.
fn esp_is_consistent(bed: &Bed, disk: &Path) {
    match check_esp_of_image(disk, ESP_OFFSET, ESP_SIZE, bed.work.path()) {
        Ok(report) => eprintln!("ESP after the last power cut: {}", report.trim()),
        Err(report) => panic!("the ESP's FAT is damaged after the power cuts:\n{report}"),
    }
}

/// Waits until the deployment is in `phase` on the device; false if it ended first.
fn wait_phase(bed: &Bed, vm: &Vm, d: &str, device: &str, phase: Phase) -> bool {
    let started = Instant::now();
    let trials = |vm: &Vm| {
        vm.serial()
            .matches("upgrade_available=1, bootcount=1")
            .count()
    };
    let trials_before = trials(vm);
    while started.elapsed() < BOOT * 3 {
        let Some(s) = bed.status(d, device) else {
            std::thread::sleep(Duration::from_millis(300));
            continue;
        };
        if aloft_api::status::is_final(&s) {
            return false;
        }
        let here = match phase {
            Phase::Download => s == "downloading",
            Phase::SlotWrite => s == "installing",
            Phase::Reboot => s == "rebooting",
            Phase::TrialBoot => trials(vm) > trials_before,
        };
        if here {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// The benchmark of `bench/vm.sh` (not a test: ignored, run with `--ignored`): the time from
/// "deployment created" to "success" of a 256 MiB rootfs on the VM, split into download, slot
/// write, reboot and commit, beside the floor of each part measured in the same run, and the
/// daemon's peak RSS.
#[test]
#[ignore = "a benchmark: bench/vm.sh runs it"]
#[allow(clippy::print_stdout, clippy::cast_precision_loss)]
fn vm_bench_update_phases() {
    let Some(bed) = Bed::new() else { return };
    bed.build("b1", true, &[]);
    let b2 = bed.build("b2", false, &[]);
    let (mut vm, _disk, device) = bed.machine("b1.img", "bench");
    let secs = |cmd: &str| -> f64 {
        let t = vm.ok(&format!(
            "s=$(date +%s.%N); {cmd} >/dev/null 2>&1; e=$(date +%s.%N); awk -v s=$s -v e=$e 'BEGIN {{ print e - s }}'"
        ));
        t.trim().lines().last().unwrap().parse().unwrap()
    };
    // Floors, on the same machine and disk.
    let id = bed.app.upload_ok(&b2);
    let link = bed
        .app
        .get(&format!(
            "/api/management/v1/deployments/artifacts/{id}/download"
        ))
        .expect(200)
        .json();
    let uri = link["uri"].as_str().unwrap();
    let size = std::fs::metadata(&b2).unwrap().len();
    let download_floor = secs(&format!(
        "curl -sfk -o /data/floor.mender '{uri}'; sync /data/floor.mender"
    ));
    vm.ok("rm -f /data/floor.mender");
    let write_floor = secs(
        "dd if=/dev/disk/by-partlabel/rootfs-a of=/dev/disk/by-partlabel/rootfs-b bs=1M conv=fsync",
    );
    let t = Instant::now();
    let _ = vm.exec("systemctl reboot", Duration::from_secs(5));
    vm.wait_serial("aloft: booting rootfs-a", 2, BOOT).unwrap();
    vm.wait_up(BOOT).unwrap();
    let reboot_floor = t.elapsed().as_secs_f64();

    // The update.
    let created = Instant::now();
    let d = bed.app.deploy("bench", "b2", &[&device]);
    let mut seen: Vec<(String, f64)> = Vec::new();
    let mut rss_kib = 0u64;
    loop {
        let s = bed.status(&d, &device).unwrap_or_default();
        if seen.last().is_none_or(|(last, _)| *last != s) {
            seen.push((s.clone(), created.elapsed().as_secs_f64()));
        }
        if (s == "downloading" || s == "installing")
            && let Ok(o) = vm.exec(
                "grep VmHWM /proc/$(pidof aloft | cut -d' ' -f1)/status",
                Duration::from_secs(5),
            )
        {
            let kib = o
                .text
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            rss_kib = rss_kib.max(kib);
        }
        if aloft_api::status::is_final(&s) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let at = |name: &str| seen.iter().find(|(s, _)| s == name).map(|(_, t)| *t);
    let (dl, inst, reb, done) = (
        at("downloading").unwrap(),
        at("installing").unwrap(),
        at("rebooting").unwrap(),
        at("success").expect("the update succeeded"),
    );
    // The reboot ends when the new system has started (systemd's start-up finished, as
    // systemd-analyze tells); the commit is what follows.
    vm.wait_up(BOOT).unwrap();
    let up = vm
        .ok("cut -d' ' -f1 /proc/uptime")
        .trim()
        .parse::<f64>()
        .unwrap();
    let analyze = vm.ok("systemd-analyze 2>/dev/null | head -1");
    // "Startup finished in 3.1s (firmware) + 1.0s (loader) + 6.9s (kernel) + 1min 2.5s
    // (userspace) = ...": the kernel's and userspace's parts count from the kernel's start.
    let seconds = |t: &str| -> f64 {
        t.split_whitespace()
            .map(|w| {
                w.strip_suffix("min").map_or_else(
                    || w.trim_end_matches('s').parse::<f64>().unwrap_or(0.0),
                    |m| m.parse::<f64>().unwrap_or(0.0) * 60.0,
                )
            })
            .sum()
    };
    let startup: f64 = analyze
        .split(" = ")
        .next()
        .unwrap_or_default()
        .trim_start_matches("Startup finished in ")
        .split(" + ")
        .filter(|part| part.contains("(kernel)") || part.contains("(userspace)"))
        .map(|part| seconds(part.split('(').next().unwrap_or_default()))
        .sum();
    let kernel_start = created.elapsed().as_secs_f64() - up;
    let booted_at = kernel_start + startup;
    let reboot = (booted_at - reb).max(0.0);
    let commit = (done - booted_at).max(0.0);
    println!(
        "artifact: {:.1} MiB (256 MiB rootfs, gzip)",
        size as f64 / 1_048_576.0
    );
    println!("| part | aloft | floor | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| download | {:.1} s | {download_floor:.1} s (curl of the same link) | {:.2}× |",
        inst - dl,
        (inst - dl) / download_floor
    );
    println!(
        "| slot write | {:.1} s | {write_floor:.1} s (dd conv=fsync of 256 MiB) | {:.2}× |",
        reb - inst,
        (reb - inst) / write_floor
    );
    println!(
        "| reboot | {reboot:.1} s | {reboot_floor:.1} s (systemctl reboot of v1) | {:.2}× |",
        reboot / reboot_floor
    );
    println!("| commit (after the start-up) | {commit:.1} s | | |");
    println!("| created → success | {done:.1} s | | |");
    println!(
        "daemon peak RSS while downloading and installing: {:.1} MiB",
        rss_kib as f64 / 1024.0
    );
    println!("statuses: {seen:?}");
    vm.power_cut();
}
