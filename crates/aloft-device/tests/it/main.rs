//! The environments interoperate with the real tools in both directions: libubootenv's
//! `fw_printenv`/`fw_setenv` (single and redundant copies) and `grub-editenv`.

use std::path::Path;
use std::process::Command;

use aloft_device::boot::grub::GrubEnv;
use aloft_device::boot::grub_pair::{COPIES, GrubEnvPair};
use aloft_device::boot::uboot::UbootEnv;
use aloft_device::boot::{EnvError, EnvStore, Vars};

fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd} is needed for this test (scripts/test.sh installs libubootenv-tool and grub-common): {e}")
    });
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn set(vars: &mut Vars, name: &str, value: &str) {
    vars.insert(name.to_owned(), value.to_owned());
}

/// A blank 32 KiB env file and its `fw_env.config` (one or two copies of 16 KiB).
fn uboot_setup(dir: &Path, redundant: bool) -> (UbootEnv, String) {
    let file = dir.join("uboot.env");
    std::fs::write(&file, vec![0xffu8; 0x8000]).unwrap();
    let mut lines = vec![format!("{} 0x0 0x4000\n", file.display())];
    if redundant {
        lines.push(format!("{} 0x4000 0x4000\n", file.display()));
    }
    let config = lines.concat();
    let config_path = dir.join("fw_env.config");
    std::fs::write(&config_path, config).unwrap();
    (
        UbootEnv::from_config(&config_path).unwrap(),
        config_path.display().to_string(),
    )
}

fn fw_printenv(config: &str) -> Vars {
    tool("fw_printenv", &["-c", config])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn uboot_both_ways(redundant: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (env, config) = uboot_setup(dir.path(), redundant);
    let mut ours = Vars::new();
    set(&mut ours, "mender_boot_part", "2");
    set(&mut ours, "mender_boot_part_hex", "2");
    set(
        &mut ours,
        "bootargs",
        "console=ttyS0,115200 root=/dev/mmcblk0p2 rw",
    );
    env.store(&ours).unwrap();
    assert_eq!(
        fw_printenv(&config),
        ours,
        "fw_printenv reads what we wrote"
    );

    // Take turns: the tool writes, we read and write, the tool reads; several rounds so the
    // redundant copies alternate and the flags advance on both sides.
    for round in 0..6 {
        tool(
            "fw_setenv",
            &["-c", &config, "upgrade_available", &round.to_string()],
        );
        set(&mut ours, "upgrade_available", &round.to_string());
        assert_eq!(
            env.load().unwrap(),
            ours,
            "round {round}: we read what fw_setenv wrote"
        );
        env.update(&mut |v| {
            v.insert("bootcount".into(), round.to_string());
        })
        .unwrap();
        set(&mut ours, "bootcount", &round.to_string());
        assert_eq!(
            fw_printenv(&config),
            ours,
            "round {round}: fw_printenv reads our update"
        );
    }
    // A variable deleted by the tool is gone for us too.
    tool("fw_setenv", &["-c", &config, "bootargs"]);
    assert!(!env.load().unwrap().contains_key("bootargs"));
}

#[test]
fn uboot_single_copy_interoperates_with_libubootenv() {
    uboot_both_ways(false);
}

#[test]
fn uboot_redundant_copies_interoperate_with_libubootenv() {
    uboot_both_ways(true);
}

#[test]
fn uboot_env_with_no_valid_copy_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (env, _) = uboot_setup(dir.path(), true);
    let err = env.load().unwrap_err();
    assert!(matches!(err, EnvError::Invalid { .. }));
    assert!(err.to_string().contains("uboot.env"), "{err}");
    let missing = UbootEnv::from_config(&dir.path().join("nope.config")).unwrap_err();
    assert!(missing.to_string().contains("nope.config"), "{missing}");
}

#[test]
fn grub_env_interoperates_with_grub_editenv() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    let file = path.display().to_string();
    tool("grub-editenv", &[&file, "create"]);
    tool(
        "grub-editenv",
        &[&file, "set", "mender_boot_part=2", "odd=back\\slash"],
    );
    let env = GrubEnv::new(&path);
    let mut want = Vars::new();
    set(&mut want, "mender_boot_part", "2");
    set(&mut want, "odd", "back\\slash");
    assert_eq!(env.load().unwrap(), want, "we read what grub-editenv wrote");

    set(&mut want, "upgrade_available", "1");
    set(&mut want, "multi", "line one\nline two");
    env.store(&want).unwrap();
    let listed = tool("grub-editenv", &[&file, "list"]);
    assert!(listed.contains("upgrade_available=1\n"), "{listed}");
    assert!(listed.contains("odd=back\\slash\n"), "{listed}");
    assert!(listed.contains("multi=line one\nline two\n"), "{listed}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1024);

    tool("grub-editenv", &[&file, "unset", "odd"]);
    want.remove("odd");
    assert_eq!(
        env.load().unwrap(),
        want,
        "we read grub-editenv's change to our block"
    );
}

#[test]
fn the_grub_pair_is_four_blocks_grub_editenv_reads_and_edits() {
    let dir = tempfile::tempdir().unwrap();
    let pair = GrubEnvPair::new(dir.path());
    let mut want = Vars::new();
    set(&mut want, "mender_boot_part", "3");
    set(&mut want, "upgrade_available", "1");
    pair.store(&want).unwrap();
    for copy in COPIES {
        let file = |name: &str| dir.path().join(copy).join(name).display().to_string();
        let env = tool("grub-editenv", &[&file("env"), "list"]);
        assert_eq!(env, "mender_boot_part=3\nupgrade_available=1\n", "{copy}");
        assert_eq!(
            tool("grub-editenv", &[&file("lock"), "list"]),
            "editing=0\n"
        );
    }
    // What GRUB's save_env does in a trial boot, by the same rule: copy 1 under its lock.
    let first = |name: &str| dir.path().join(COPIES[0]).join(name).display().to_string();
    tool("grub-editenv", &[&first("lock"), "set", "editing=1"]);
    tool("grub-editenv", &[&first("env"), "set", "bootcount=1"]);
    assert_eq!(
        pair.load().unwrap(),
        want,
        "copy 1 is being edited: copy 2 counts"
    );
    tool("grub-editenv", &[&first("lock"), "set", "editing=0"]);
    set(&mut want, "bootcount", "1");
    assert_eq!(pair.load().unwrap(), want, "copy 1 settled: it counts");
}
