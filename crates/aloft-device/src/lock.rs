//! One aloft process at a time acts on a device's state.
//!
//! Owns: `DATA/aloft.lock`, an advisory `flock` taken by every operation that changes the
//! update state, the slots or the bootloader environment (install, commit, rollback, resume;
//! the daemon takes it through the same calls), and `DATA/daemon/daemon.lock`, held for the
//! whole life of a daemon. The kernel drops a `flock` when its holder dies, so a killed process
//! never leaves a lock that blocks forever, and only a holder of the lock ever judges an
//! interrupted writer dead. The file itself is never removed (removing lock files races).
//! Must not: be taken twice by one process (a second open file description would wait on the
//! first one).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why the lock could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds it for longer than we wait.
    #[error(
        "another aloft process is working on this device ({holder}; lock {path}); nothing was changed: try again when it has finished"
    )]
    Held {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as it wrote itself into the file.
        holder: String,
    },
    /// The lock file could not be opened.
    #[error("cannot open the lock {path}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A held lock; dropped, it is released.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// How long a command waits for a busy device before it refuses.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

impl Lock {
    /// Takes the lock at `path`, waiting up to `wait` while another process holds it, and
    /// records `what` (with this process id) for whoever waits next.
    pub fn acquire(path: &Path, what: &str, wait: Duration) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    return Err(LockError::Held {
                        path: path.to_owned(),
                        holder: if holder.is_empty() {
                            "a process that has not said who it is".into()
                        } else {
                            holder.chars().take(200).collect()
                        },
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        // Who holds it is informative only: a failure to say so does not matter.
        let _ = file.set_len(0);
        let _ = file.seek(SeekFrom::Start(0));
        let _ = write!(file, "pid {}: {what}", std::process::id());
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_then_refuses_and_names_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aloft.lock");
        let first = Lock::acquire(&path, "aloft install", DEFAULT_WAIT).unwrap();
        let started = Instant::now();
        let err = Lock::acquire(&path, "aloft commit", Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        let text = err.to_string();
        assert!(text.contains("aloft install"), "{text}");
        assert!(text.contains(&std::process::id().to_string()), "{text}");
        drop(first);
        // Not `Duration::ZERO`: a process another test forks holds a copy of the descriptor
        // (and so the lock) until it execs.
        Lock::acquire(&path, "aloft commit", DEFAULT_WAIT).unwrap();
    }

    #[test]
    fn a_lock_released_while_waiting_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aloft.lock");
        let first = Lock::acquire(&path, "first", DEFAULT_WAIT).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
        });
        Lock::acquire(&path, "second", Duration::from_secs(5)).unwrap();
        releaser.join().unwrap();
    }
}
