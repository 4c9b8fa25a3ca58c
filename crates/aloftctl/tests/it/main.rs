//! End-to-end tests of `aloftctl`, with the real `mender-artifact` (Debian's 3.9) as the judge of
//! compatibility in both directions.

mod cli;
mod delta;
mod image;
mod mender;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) fn aloftctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aloftctl"))
        .args(args)
        .output()
        .expect("aloftctl runs")
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs aloftctl and insists on success.
pub(crate) fn ok(args: &[&str]) -> Output {
    let o = aloftctl(args);
    assert!(o.status.success(), "aloftctl {args:?} failed: {}", text(&o));
    o
}

/// `aloftctl artifact write rootfs-image` of the 1 MiB vector image, device type `dev`, plus `extra`.
pub(crate) fn write_rootfs(name: &str, out: &Path, extra: &[&str]) -> Output {
    let image = vec_path("inputs/rootfs-v1.ext4");
    let out = p(out);
    let mut args = vec![
        "artifact",
        "write",
        "rootfs-image",
        "-f",
        &image,
        "-n",
        name,
        "-t",
        "dev",
        "-o",
        &out,
    ];
    args.extend_from_slice(extra);
    aloftctl(&args)
}

pub(crate) fn vectors() -> PathBuf {
    aloft_testkit::vectors_dir()
}

pub(crate) fn vec_path(rel: &str) -> String {
    vectors().join(rel).display().to_string()
}

pub(crate) fn p(path: &Path) -> String {
    path.display().to_string()
}
