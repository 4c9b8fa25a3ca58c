//! A redundant pair of GRUB environment blocks for a FAT EFI system partition, in the layout
//! Mender's `grub-mender-grubenv` uses: `DIR/mender_grubenv1/{env,lock}` and
//! `DIR/mender_grubenv2/{env,lock}`.
//!
//! FAT has no journal, and a rename there is not atomic, so no single file can be replaced
//! safely. Each `lock` is a GRUB block holding `editing=1` while its copy is being rewritten
//! and `editing=0` otherwise. A store rewrites copy 1 and then copy 2, each in place and
//! between its lock's `editing=1` and `editing=0`, every step synced; so at any instant at
//! least one copy is whole and says so. The reading rule, shared with the GRUB script that
//! `aloftctl image build` writes: copy 1 when its lock reads `editing=0` and the copy is a
//! valid block; else copy 2.

use std::path::{Path, PathBuf};

use super::grub::GrubEnv;
use super::{EnvError, EnvStore, Result, Vars, io_err};

/// The two copies' folders, in reading order.
pub const COPIES: [&str; 2] = ["mender_grubenv1", "mender_grubenv2"];

/// A lock-guarded pair of GRUB environment blocks under one folder.
#[derive(Debug, Clone)]
pub struct GrubEnvPair {
    dir: PathBuf,
}

impl GrubEnvPair {
    /// The pair under `dir` (the copies are created on the first store if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder holding both copies.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn env(&self, copy: &str) -> GrubEnv {
        GrubEnv::new(self.dir.join(copy).join("env"))
    }

    fn lock(&self, copy: &str) -> GrubEnv {
        GrubEnv::new(self.dir.join(copy).join("lock"))
    }

    /// Whether copy 1's lock says it is whole (`editing=0`). An unreadable lock is not.
    fn first_is_settled(&self) -> bool {
        matches!(
            self.lock(COPIES[0]).load_existing(),
            Ok(Some(vars)) if vars.get("editing").map(String::as_str) == Some("0")
        )
    }
}

/// `editing=<flag>`, the whole content of a lock.
fn editing(flag: &str) -> Vars {
    Vars::from([("editing".to_owned(), flag.to_owned())])
}

impl EnvStore for GrubEnvPair {
    /// Copy 1 when settled and valid, else copy 2. Both missing read as an empty environment
    /// (GRUB then boots its defaults); a pair with no valid copy is an error.
    fn load(&self) -> Result<Vars> {
        let first = if self.first_is_settled() {
            self.env(COPIES[0]).load_existing()
        } else {
            Ok(None)
        };
        let first_err = match first {
            Ok(Some(vars)) => return Ok(vars),
            Ok(None) => None,
            Err(e) => Some(e),
        };
        match self.env(COPIES[1]).load_existing() {
            Ok(Some(vars)) => Ok(vars),
            Ok(None) => first_err.map_or_else(|| Ok(Vars::new()), Err),
            Err(second) => {
                let first = first_err.map_or_else(
                    || "is being edited or missing".to_owned(),
                    |e| e.to_string(),
                );
                Err(EnvError::Invalid {
                    path: self.dir.clone(),
                    reason: format!("neither copy is usable: copy 1: {first}; copy 2: {second}"),
                })
            }
        }
    }

    fn store(&self, vars: &Vars) -> Result<()> {
        for copy in COPIES {
            let folder = self.dir.join(copy);
            std::fs::create_dir_all(&folder).map_err(io_err(&folder))?;
            let lock = self.lock(copy);
            lock.rewrite(&editing("1"))?;
            self.env(copy).rewrite(vars)?;
            lock.rewrite(&editing("0"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(part: &str) -> Vars {
        Vars::from([
            ("mender_boot_part".to_owned(), part.to_owned()),
            ("upgrade_available".to_owned(), "0".to_owned()),
        ])
    }

    fn pair_at(part: &str) -> (tempfile::TempDir, GrubEnvPair) {
        let dir = tempfile::tempdir().unwrap();
        let pair = GrubEnvPair::new(dir.path());
        pair.store(&vars(part)).unwrap();
        (dir, pair)
    }

    #[test]
    fn a_store_writes_both_copies_in_1024_byte_blocks_with_settled_locks() {
        let (dir, pair) = pair_at("3");
        for copy in COPIES {
            let env = dir.path().join(copy).join("env");
            assert_eq!(std::fs::metadata(&env).unwrap().len(), 1024);
            assert_eq!(GrubEnv::new(&env).load().unwrap(), vars("3"));
            let lock = GrubEnv::new(dir.path().join(copy).join("lock"));
            assert_eq!(lock.load().unwrap(), editing("0"));
        }
        assert_eq!(pair.load().unwrap(), vars("3"));
    }

    #[test]
    fn the_reading_rule_falls_back_to_copy_2_whenever_copy_1_is_not_whole() {
        // Each case: what a power cut during the store of "3" over "2" can leave of copy 1
        // (copy 2 still holds "2"), and what must be read.
        type Damage = fn(&Path);
        let cases: [(&str, Damage, &str); 5] = [
            ("copy 1 being edited", |d| lock_of(d, "1"), "2"),
            (
                "copy 1 torn while edited",
                |d| {
                    lock_of(d, "1");
                    std::fs::write(d.join(COPIES[0]).join("env"), b"# GRUB Env").unwrap();
                },
                "2",
            ),
            (
                "copy 1's lock unreadable",
                |d| std::fs::write(d.join(COPIES[0]).join("lock"), b"garbage").unwrap(),
                "2",
            ),
            (
                "copy 1's lock missing",
                |d| std::fs::remove_file(d.join(COPIES[0]).join("lock")).unwrap(),
                "2",
            ),
            ("copy 1 settled with the new value", |_| {}, "3"),
        ];
        for (what, damage, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let pair = GrubEnvPair::new(dir.path());
            pair.store(&vars("2")).unwrap();
            pair.env(COPIES[0]).rewrite(&vars("3")).unwrap();
            damage(dir.path());
            assert_eq!(pair.load().unwrap(), vars(want), "{what}");
        }
    }

    fn lock_of(dir: &Path, flag: &str) {
        GrubEnv::new(dir.join(COPIES[0]).join("lock"))
            .rewrite(&editing(flag))
            .unwrap();
    }

    #[test]
    fn a_missing_pair_is_empty_and_a_pair_with_no_valid_copy_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let pair = GrubEnvPair::new(dir.path().join("none"));
        assert!(pair.load().unwrap().is_empty());
        let (dir, pair) = pair_at("2");
        for copy in COPIES {
            std::fs::write(dir.path().join(copy).join("env"), b"not grub").unwrap();
        }
        let err = pair.load().unwrap_err().to_string();
        assert!(err.contains("no valid environment"), "{err}");
    }

    #[test]
    fn the_next_store_repairs_a_copy_a_power_cut_tore() {
        let (dir, pair) = pair_at("2");
        for copy in COPIES {
            let mut torn = vec![b'x'; 1024];
            torn[..10].copy_from_slice(b"# GRUB Env");
            std::fs::write(dir.path().join(copy).join("env"), &torn).unwrap();
            std::fs::write(dir.path().join(copy).join("lock"), &torn).unwrap();
        }
        pair.store(&vars("3")).unwrap();
        assert_eq!(pair.load().unwrap(), vars("3"));
        for copy in COPIES {
            let env = GrubEnv::new(dir.path().join(copy).join("env"));
            assert_eq!(env.load().unwrap(), vars("3"), "{copy}");
        }
    }

    #[test]
    fn a_rewrite_keeps_the_file_where_it_is() {
        use std::os::unix::fs::MetadataExt as _;
        let (dir, pair) = pair_at("2");
        let env = dir.path().join(COPIES[0]).join("env");
        let before = std::fs::metadata(&env).unwrap().ino();
        pair.store(&vars("3")).unwrap();
        assert_eq!(std::fs::metadata(&env).unwrap().ino(), before);
        assert_eq!(pair.load().unwrap(), vars("3"));
    }
}
