//! Update Modules and state scripts: Debian's real `single-file`, `directory` and `script`
//! modules with artifacts made by the real generators (which run the real `mender-artifact`)
//! and by aloft; the protocol's call order when a module fails; artifact state scripts.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use aloft_artifact::{ArtifactWriter, Compression, PayloadSource, PayloadType, StateScript};
use aloft_device::boot::control::SlotId;
use aloft_device::sim::SimBootloader;

use crate::{Dev, text};

const EXAMPLES: &str = "/usr/share/doc/mender-client/examples";

fn run_in(dir: &Path, program: &str, args: &[&str]) {
    let o = Command::new(program).args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("{program} is needed (scripts/test.sh installs mender-client and mender-artifact): {e}")
    });
    assert!(o.status.success(), "{program} {args:?}: {}", text(&o));
}

#[test]
fn debian_single_file_module_installs_an_artifact_from_the_real_generator() {
    let dev = Dev::new(SimBootloader::Uboot);
    let work = dev.dir.join("gen");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("app.conf"), "setting = 42\n").unwrap();
    let dest = dev.dir.join("etc-myapp");
    let out = dev.dir.join("sf.mender");
    let generator = format!("{EXAMPLES}/single-file-artifact-gen");
    run_in(
        &work,
        "sh",
        &[
            &generator,
            "-n",
            "single-file-1",
            "-t",
            "qemux86-64",
            "-d",
            dest.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "app.conf",
        ],
    );
    let o = dev.aloft(&["install", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(dest.join("app.conf")).unwrap(),
        "setting = 42\n"
    );
    assert_eq!(dev.ok(&["show-artifact"]).trim(), "single-file-1");
    assert!(
        dev.ok(&["show-provides"])
            .contains("rootfs-image.single-file.version=single-file-1")
    );
    assert!(
        !dev.dir.join("data/modules/v3/payloads/0000/tree").exists(),
        "the tree is removed after Cleanup"
    );
}

#[test]
fn debian_directory_module_installs_an_artifact_from_the_real_generator() {
    let dev = Dev::new(SimBootloader::Grub);
    let src = dev.dir.join("www");
    std::fs::create_dir_all(src.join("css")).unwrap();
    std::fs::write(src.join("index.html"), "<h1>v2</h1>\n").unwrap();
    std::fs::write(src.join("css/site.css"), "h1 { color: red }\n").unwrap();
    let dest = dev.dir.join("opt-www");
    let out = dev.dir.join("dir.mender");
    let generator = format!("{EXAMPLES}/directory-artifact-gen");
    run_in(
        &dev.dir,
        "bash",
        &[
            &generator,
            "-n",
            "directory-1",
            "-t",
            "qemux86-64",
            "-d",
            dest.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
    );
    dev.ok(&["install", out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(dest.join("index.html")).unwrap(),
        "<h1>v2</h1>\n"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("css/site.css")).unwrap(),
        "h1 { color: red }\n"
    );
    assert_eq!(dev.ok(&["show-artifact"]).trim(), "directory-1");
}

#[test]
fn debian_script_module_runs_a_script_from_an_aloft_artifact() {
    let dev = Dev::new(SimBootloader::Uboot);
    let marker = dev.dir.join("script-ran");
    let mut w = ArtifactWriter::new(
        "script-1",
        vec!["qemux86-64".into()],
        PayloadType::Module("script".into()),
    );
    w.files.push(PayloadSource::from_bytes(
        "run.sh",
        format!("#!/bin/sh\necho ran > '{}'\n", marker.display()).into_bytes(),
    ));
    w.compression = Compression::Xz;
    let art = dev.dir.join("script.mender");
    w.write(std::fs::File::create(&art).unwrap()).unwrap();
    dev.ok(&["install", art.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran\n");
    assert_eq!(dev.ok(&["show-artifact"]).trim(), "script-1");
}

/// A module script `name` with `body` in a private modules folder of `dev`, which the device's
/// configuration then uses.
fn fake_module(dev: &Dev, name: &str, body: &str) {
    let modules = dev.dir.join("modules");
    std::fs::create_dir_all(&modules).unwrap();
    let path = modules.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dev.set_config(&format!("modules_dir = \"{}\"", modules.display()));
}

/// A module `name` that appends each state it is called with to `calls.log` (returned), then
/// answers with the shell `case` arms given.
fn logging_module(dev: &Dev, name: &str, cases: &str) -> std::path::PathBuf {
    let log = dev.dir.join("calls.log");
    let body = format!(
        "#!/bin/sh\necho \"$1\" >> '{}'\ncase \"$1\" in\n{cases}\nesac\nexit 0\n",
        log.display()
    );
    fake_module(dev, name, &body);
    log
}

/// An artifact `name` of module type `module_type` with `files`.
fn module_artifact(
    dev: &Dev,
    name: &str,
    module_type: &str,
    files: Vec<PayloadSource>,
) -> std::path::PathBuf {
    let mut w = ArtifactWriter::new(
        name,
        vec!["qemux86-64".into()],
        PayloadType::Module(module_type.into()),
    );
    w.files = files;
    let art = dev.dir.join(format!("{name}.mender"));
    w.write(std::fs::File::create(&art).unwrap()).unwrap();
    art
}

/// A module that logs every call and fails `ArtifactInstall`.
fn failing_module(dev: &Dev, supports_rollback: bool) -> std::path::PathBuf {
    let answer = if supports_rollback { "Yes" } else { "No" };
    logging_module(
        dev,
        "flaky",
        &format!(
            "  SupportsRollback) echo {answer} ;;\n  ArtifactInstall) echo 'disk on fire' >&2; exit 3 ;;"
        ),
    );
    module_artifact(
        dev,
        "flaky-2",
        "flaky",
        vec![PayloadSource::from_bytes("payload.bin", vec![1, 2, 3])],
    )
}

#[test]
fn a_failing_module_is_rolled_back_in_protocol_order() {
    let dev = Dev::new(SimBootloader::Uboot);
    let art = failing_module(&dev, true);
    let o = dev.aloft(&["install", art.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("disk on fire"), "{}", text(&o));
    // The order Mender 3.4 was observed to use.
    let calls = std::fs::read_to_string(dev.dir.join("calls.log")).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            "Download",
            "SupportsRollback",
            "ArtifactInstall",
            "ArtifactRollback",
            "NeedsArtifactReboot",
            "ArtifactFailure",
            "Cleanup"
        ]
    );
    assert_eq!(dev.ok(&["show-artifact"]).trim(), "factory-1");
    assert_eq!(dev.status()["last"]["success"], false);
}

#[test]
fn a_failing_module_without_rollback_marks_the_device_inconsistent() {
    let dev = Dev::new(SimBootloader::Uboot);
    let art = failing_module(&dev, false);
    assert_eq!(
        dev.aloft(&["install", art.to_str().unwrap()]).status.code(),
        Some(1)
    );
    let calls = std::fs::read_to_string(dev.dir.join("calls.log")).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            "Download",
            "SupportsRollback",
            "ArtifactInstall",
            "ArtifactFailure",
            "Cleanup"
        ]
    );
    assert_eq!(dev.ok(&["show-artifact"]).trim(), "flaky-2_INCONSISTENT");
}

fn logging_script(name: &str, log: &Path, exit: i32) -> StateScript {
    StateScript {
        name: name.into(),
        content: format!(
            "#!/bin/sh\necho {name} >> '{}'\nexit {exit}\n",
            log.display()
        )
        .into_bytes(),
        sha256: [0; 32],
    }
}

fn rootfs_with_scripts(dev: &Dev, scripts: Vec<StateScript>) -> std::path::PathBuf {
    let mut w = ArtifactWriter::new(
        "release-2",
        vec!["qemux86-64".into()],
        PayloadType::RootfsImage,
    );
    w.files
        .push(PayloadSource::from_bytes("rootfs.ext4", vec![7u8; 100_000]));
    w.scripts = scripts;
    let art = dev.dir.join("scripted.mender");
    w.write(std::fs::File::create(&art).unwrap()).unwrap();
    art
}

#[test]
fn artifact_state_scripts_run_around_each_state_in_order() {
    let dev = Dev::new(SimBootloader::Uboot);
    let log = dev.dir.join("scripts.log");
    let names = [
        "ArtifactInstall_Enter_00",
        "ArtifactInstall_Enter_10_second",
        "ArtifactInstall_Leave_00",
        "ArtifactReboot_Enter_00",
        "ArtifactReboot_Leave_00",
        "ArtifactCommit_Enter_00",
        "ArtifactCommit_Leave_00",
    ];
    let art = rootfs_with_scripts(
        &dev,
        names.iter().map(|n| logging_script(n, &log, 0)).collect(),
    );
    dev.ok(&["install", art.to_str().unwrap()]);
    dev.reboot();
    dev.ok(&["resume"]);
    assert_eq!(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        names
    );
    assert_eq!(dev.ok(&["show-artifact"]).trim(), "release-2");
}

#[test]
fn a_failing_reboot_leave_script_rolls_the_update_back() {
    let dev = Dev::new(SimBootloader::Grub);
    let log = dev.dir.join("scripts.log");
    let art = rootfs_with_scripts(
        &dev,
        vec![
            logging_script("ArtifactReboot_Leave_50_check", &log, 1),
            logging_script("ArtifactFailure_Enter_00", &log, 0),
        ],
    );
    dev.ok(&["install", art.to_str().unwrap()]);
    assert_eq!(dev.reboot(), SlotId::B);
    dev.ok(&["resume"]);
    assert_eq!(dev.reboot(), SlotId::A);
    dev.ok(&["resume"]);
    let reason = dev.status()["last"]["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("ArtifactReboot_Leave_50_check"), "{reason}");
    assert_eq!(dev.ok(&["show-artifact"]).trim(), "factory-1");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("ArtifactFailure_Enter_00"), "{log}");
}

/// Regression: with a relative `--config`, the module used to get a relative tree path (the
/// protocol requires an absolute one, and the module runs inside the tree).
#[test]
fn a_relative_config_path_still_gives_modules_an_absolute_tree() {
    let dev = Dev::new(SimBootloader::Uboot);
    let marker = dev.dir.join("script-ran");
    module_artifact(
        &dev,
        "script-1",
        "script",
        vec![PayloadSource::from_bytes(
            "run.sh",
            format!("#!/bin/sh\necho ran > '{}'\n", marker.display()).into_bytes(),
        )],
    );
    let o = Command::new(env!("CARGO_BIN_EXE_aloft"))
        .current_dir(dev.dir.parent().unwrap())
        .args([
            "--config",
            "device/aloft.toml",
            "install",
            "device/script-1.mender",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(marker.exists());
}

#[test]
fn a_module_that_needs_a_reboot_is_verified_and_committed_after_it() {
    let dev = Dev::new(SimBootloader::Uboot);
    let log = logging_module(
        &dev,
        "firmware",
        "  SupportsRollback) echo Yes ;;\n  NeedsArtifactReboot) echo Yes ;;",
    );
    let art = module_artifact(
        &dev,
        "fw-2",
        "firmware",
        vec![PayloadSource::from_bytes("fw.bin", vec![9; 1000])],
    );

    let o = dev.aloft(&["install", art.to_str().unwrap(), "--reboot-exit-code"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert_eq!(
        dev.ok(&["show-artifact"]).trim(),
        "factory-1",
        "not committed before the reboot"
    );
    assert_eq!(
        dev.aloft(&["resume"]).status.code(),
        Some(0),
        "no reboot yet: still waiting"
    );
    dev.reboot();
    assert!(dev.ok(&["resume"]).contains("committed"));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            "Download",
            "SupportsRollback",
            "ArtifactInstall",
            "NeedsArtifactReboot",
            "ArtifactReboot",
            "ArtifactVerifyReboot",
            "ArtifactCommit",
            "Cleanup"
        ]
    );
    assert_eq!(dev.ok(&["show-artifact"]).trim(), "fw-2");
}

#[test]
fn debian_script_module_with_an_artifact_from_mender_artifact() {
    let dev = Dev::new(SimBootloader::Uboot);
    let marker = dev.dir.join("from-mender-artifact");
    let script = dev.dir.join("run.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho ok > '{}'\n", marker.display()),
    )
    .unwrap();
    let art = dev.dir.join("ma-script.mender");
    run_in(
        &dev.dir,
        "mender-artifact",
        &[
            "write",
            "module-image",
            "-T",
            "script",
            "-n",
            "ma-script-1",
            "-t",
            "qemux86-64",
            "-f",
            "run.sh",
            "-o",
            art.to_str().unwrap(),
        ],
    );
    dev.ok(&["install", art.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ok\n");
    assert!(
        dev.ok(&["show-provides"])
            .contains("rootfs-image.script.version=ma-script-1")
    );
}

#[test]
fn debian_single_file_module_with_an_artifact_from_aloftctl() {
    let dev = Dev::new(SimBootloader::Grub);
    let dest = dev.dir.join("etc-app");
    let mut w = ArtifactWriter::new(
        "sf-aloft-1",
        vec!["qemux86-64".into()],
        PayloadType::Module("single-file".into()),
    );
    for (name, content) in [
        ("dest_dir", format!("{}\n", dest.display())),
        ("filename", "app.conf\n".to_owned()),
        ("permissions", "640\n".to_owned()),
        ("app.conf", "mode = aloft\n".to_owned()),
    ] {
        w.files
            .push(PayloadSource::from_bytes(name, content.into_bytes()));
    }
    let art = dev.dir.join("sf-aloft.mender");
    w.write(std::fs::File::create(&art).unwrap()).unwrap();
    dev.ok(&["install", art.to_str().unwrap()]);
    let installed = dest.join("app.conf");
    assert_eq!(
        std::fs::read_to_string(&installed).unwrap(),
        "mode = aloft\n"
    );
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

#[test]
fn a_streaming_module_reads_the_payload_through_the_fifos() {
    let dev = Dev::new(SimBootloader::Uboot);
    let got = dev.dir.join("got");
    std::fs::create_dir_all(&got).unwrap();
    let body = format!(
        "#!/bin/sh\nset -e\ncase \"$1\" in\n  Download)\n    while true; do\n      f=$(cat stream-next)\n      [ -z \"$f\" ] && break\n      cat \"$f\" > '{got}'/\"$(basename \"$f\")\"\n      ls files >> '{got}/files-listing'\n    done ;;\nesac\nexit 0\n",
        got = got.display()
    );
    fake_module(&dev, "streamer", &body);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let art = module_artifact(
        &dev,
        "stream-1",
        "streamer",
        vec![
            PayloadSource::from_bytes("big.bin", big.clone()),
            PayloadSource::from_bytes("small.txt", b"hello\n".to_vec()),
        ],
    );
    dev.ok(&["install", art.to_str().unwrap()]);
    assert!(
        std::fs::read(got.join("big.bin")).unwrap() == big,
        "the module read the whole stream"
    );
    assert_eq!(std::fs::read(got.join("small.txt")).unwrap(), b"hello\n");
    assert_eq!(
        std::fs::read_to_string(got.join("files-listing")).unwrap(),
        "",
        "nothing was put in files/"
    );
    assert_eq!(dev.ok(&["show-artifact"]).trim(), "stream-1");
}

#[test]
fn a_rollback_that_needs_a_reboot_is_verified_after_it() {
    let dev = Dev::new(SimBootloader::Uboot);
    let log = logging_module(
        &dev,
        "kernel",
        "  SupportsRollback) echo Yes ;;\n  NeedsArtifactReboot) echo Yes ;;\n  ArtifactInstall) exit 1 ;;",
    );
    let art = module_artifact(
        &dev,
        "kernel-2",
        "kernel",
        vec![PayloadSource::from_bytes("vmlinuz", vec![1; 100])],
    );
    assert_eq!(
        dev.aloft(&["install", art.to_str().unwrap()]).status.code(),
        Some(1)
    );
    assert!(
        dev.status()["pending"].is_string(),
        "the rollback waits for its reboot"
    );
    dev.reboot();
    dev.ok(&["resume"]);
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            "Download",
            "SupportsRollback",
            "ArtifactInstall",
            "ArtifactRollback",
            "NeedsArtifactReboot",
            "ArtifactRollbackReboot",
            "ArtifactVerifyRollbackReboot",
            "ArtifactFailure",
            "Cleanup"
        ]
    );
    let status = dev.status();
    assert!(status["pending"].is_null());
    assert_eq!(status["artifact_name"], "factory-1");
    assert_eq!(status["last"]["success"], false);
}
