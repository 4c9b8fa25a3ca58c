//! End-to-end tests of `aloftctl`, with the real `mender-artifact` (Debian's 3.9) as the judge of
//! compatibility in both directions.

mod cli;
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

pub(crate) fn vectors() -> PathBuf {
    aloft_testkit::vectors_dir()
}

pub(crate) fn vec_path(rel: &str) -> String {
    vectors().join(rel).display().to_string()
}

pub(crate) fn p(path: &Path) -> String {
    path.display().to_string()
}
