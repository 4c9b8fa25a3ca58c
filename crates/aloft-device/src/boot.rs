//! Bootloader environments: the variables (`mender_boot_part`, `upgrade_available`,
//! `bootcount`, ...) through which the running system tells the bootloader which slot to try.
//!
//! Owns: the on-disk formats ([`uboot`]: U-Boot environment, single or redundant copies;
//! [`grub`]: GRUB environment block; [`grub_pair`]: its lock-guarded redundant pair for a FAT
//! ESP) and their power-cut-safe writes. Must not: decide what to
//! write; the update state machine does, through [`EnvStore::update`].

pub mod control;
pub mod grub;
pub mod grub_pair;
pub mod uboot;

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

/// Environment variables, sorted by name.
pub type Vars = BTreeMap<String, String>;

/// Result alias for this module.
pub type Result<T, E = EnvError> = std::result::Result<T, E>;

/// Why an environment could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// Reading or writing the medium failed.
    #[error("i/o error on {path}")]
    Io {
        /// The file or device.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The location configuration (`fw_env.config`) is unusable.
    #[error("invalid {path}, line {line}: {reason}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// 1-based line number (0: the file as a whole).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// No copy of the environment has a valid checksum or signature line.
    #[error("no valid environment in {path}: {reason}")]
    Invalid {
        /// The file or device.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// A variable name or value the format cannot hold.
    #[error("cannot store variable {name:?}: {reason}")]
    BadVariable {
        /// The variable name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The variables do not fit the environment's size.
    #[error("the environment needs {needed} bytes but {path} holds {capacity}")]
    TooLarge {
        /// The file or device.
        path: PathBuf,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        capacity: usize,
    },
}

/// Where a bootloader keeps its variables.
pub trait EnvStore {
    /// Reads the current variables.
    fn load(&self) -> Result<Vars>;

    /// Replaces all variables. Implementations make this power-cut safe: after a crash at any
    /// instant, [`EnvStore::load`] returns either the old or the new variables.
    fn store(&self, vars: &Vars) -> Result<()>;

    /// Load, change, store: the one way the update engine edits the environment. Nothing is
    /// written when `change` leaves the variables as they were.
    fn update(&self, change: &mut dyn FnMut(&mut Vars)) -> Result<Vars> {
        let before = self.load()?;
        let mut after = before.clone();
        change(&mut after);
        if after != before {
            self.store(&after)?;
        }
        Ok(after)
    }
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(io::Error) -> EnvError + '_ {
    move |source| EnvError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Overwrites `path`, which already holds exactly `data.len()` bytes, in place and syncs it (one
/// durable write); any other file is replaced with [`replace_file`]. Not atomic: callers guard
/// the file with a lock (see [`grub_pair`]).
pub(crate) fn rewrite_file(path: &std::path::Path, data: &[u8]) -> Result<()> {
    use std::io::Write as _;
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == data.len() as u64 => {}
        _ => return replace_file(path, data),
    }
    crate::crash::durable_write(|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        f.write_all(data).map_err(io_err(path))?;
        f.sync_all().map_err(io_err(path))
    })
}

/// Replaces `path` with `data` atomically (also used for the client's state files): temporary file in the same folder, fsync, rename,
/// fsync of the folder.
pub fn replace_file(path: &std::path::Path, data: &[u8]) -> Result<()> {
    crate::crash::durable_write(|| replace_file_now(path, data))
}

fn replace_file_now(path: &std::path::Path, data: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".aloft-env-")
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    tmp.write_all(data).map_err(io_err(path))?;
    tmp.as_file().sync_all().map_err(io_err(path))?;
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file()
            .set_permissions(meta.permissions())
            .map_err(io_err(path))?;
    }
    tmp.persist(path).map_err(|e| EnvError::Io {
        path: path.to_owned(),
        source: e.error,
    })?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}
