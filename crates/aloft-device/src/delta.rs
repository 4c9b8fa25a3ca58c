//! Applying a delta payload: from the running slot into the inactive one, a window at a time.
//!
//! Owns: the resume record (`DATA/delta.json`: which target, which slot, how many windows are
//! on it durably) and the order data → fsync → record. Must not: write a window the decoder
//! did not verify; read the source past the image the delta was made from; arm anything (the
//! engine arms the slot after [`apply`] returned Ok, which includes the read-back).

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use aloft_delta::{Delta, DeltaError, Description, FileImage, Sink};
use serde::{Deserialize, Serialize};

use crate::slot::{self, SlotError};

/// Windows between two durable resume points (16 MiB at the default window).
const SYNC_EVERY: u64 = 16;

/// How far an apply got, durably.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Record {
    /// Hex SHA-256 of the target.
    target: String,
    /// Hex digest of the target's windows.
    windows: String,
    /// The slot written.
    slot: PathBuf,
    /// Windows on the slot, synced.
    done: u64,
}

/// Why a delta could not be applied; the text is what the device reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The delta, or the slots, refused (see the reason).
    #[error(transparent)]
    Delta(#[from] DeltaError),
    /// Writing, syncing or reading back the slot failed.
    #[error(transparent)]
    Slot(#[from] SlotError),
    /// The resume record could not be written.
    #[error("cannot record the delta's progress in {path}")]
    Record {
        /// The record.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::state::StateError,
    },
}

impl ApplyError {
    /// Whether the running slot is not the image the delta was made from (the full artifact
    /// may still install).
    #[must_use]
    pub fn source_mismatch(&self) -> bool {
        matches!(self, ApplyError::Delta(DeltaError::SourceMismatch { .. }))
    }
}

/// Rebuilds the target described by the signed `described` from the image on `source` and
/// the delta read from `delta`, into `target`, resuming after the windows a cut-short apply of
/// the same target left on the same slot (recorded in `record`). At the end the slot is read
/// back and its SHA-256 must be the target's.
pub fn apply(
    target: &Path,
    source: &Path,
    record: &Path,
    delta: &mut dyn Read,
    described: &Description,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), ApplyError> {
    let d = Delta::open(delta)?;
    described.check(d.header())?;
    let size = d.header().target_size;
    let capacity = slot::capacity(target)?;
    if size > capacity {
        return Err(SlotError::TooSmall {
            path: target.to_owned(),
            size,
            capacity,
        }
        .into());
    }
    if slot::capacity(source)? < described.source_size {
        return Err(DeltaError::SourceMismatch {
            window: 0,
            offset: 0,
        }
        .into());
    }
    let mine = Record {
        target: hex::encode(described.target_sha256),
        windows: hex::encode(described.windows_digest),
        slot: target.to_owned(),
        done: 0,
    };
    let kept: Record = crate::state::load(record).unwrap_or_default();
    let same = kept.target == mine.target && kept.windows == mine.windows && kept.slot == mine.slot;
    let from = if same { kept.done } else { 0 };
    if from > 0 {
        tracing::info!(windows = from, "resuming the delta where it was cut");
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SlotError::Io { path, source }
    };
    let image = FileImage::new(
        File::open(source).map_err(io(source))?,
        described.source_size,
    );
    let out = OpenOptions::new()
        .write(true)
        .open(target)
        .map_err(io(target))?;
    let mut sink = SlotSink {
        out: &out,
        record,
        mine,
        unsynced: 0,
        failed: None,
    };
    let result = d.apply(&image, &mut sink, from, progress);
    if let Some(e) = sink.failed.take() {
        return Err(e);
    }
    result?;
    out.sync_all().map_err(io(target))?;
    drop(out);
    let verified = slot::verify(target, size, described.target_sha256);
    // Whether the slot holds the target or not, the record has served: a retry starts over.
    forget(record);
    Ok(verified?)
}

/// Removes the resume record durably: before anything else writes the slot it names.
pub fn forget(record: &Path) {
    if std::fs::remove_file(record).is_ok()
        && let Some(dir) = record.parent()
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Writes verified windows to the slot; every [`SYNC_EVERY`] windows syncs it and then
/// records how far it got.
struct SlotSink<'a> {
    out: &'a File,
    record: &'a Path,
    mine: Record,
    unsynced: u64,
    failed: Option<ApplyError>,
}

impl Sink for SlotSink<'_> {
    fn window(&mut self, index: u64, offset: u64, data: &[u8]) -> io::Result<()> {
        self.out.write_all_at(data, offset)?;
        self.unsynced += 1;
        if self.unsynced == SYNC_EVERY {
            self.out.sync_data()?;
            self.unsynced = 0;
            self.mine.done = index + 1;
            if let Err(source) = crate::state::save(self.record, &self.mine) {
                self.failed = Some(ApplyError::Record {
                    path: self.record.to_owned(),
                    source,
                });
                return Err(io::Error::other("cannot record the progress"));
            }
        }
        Ok(())
    }
}
