//! Writing a root filesystem image into a slot (a block device, or a file in simulation).
//!
//! Owns: the write → fsync → read back → compare sequence. Must not: touch the bootloader; a
//! slot is only armed by the caller after [`write_image`] returned Ok.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Why an image could not be put into a slot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlotError {
    /// The slot could not be opened, written or read back.
    #[error("i/o error on slot {path}")]
    Io {
        /// The slot device.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The image is larger than the slot.
    #[error("the image ({size} bytes) does not fit slot {path} ({capacity} bytes)")]
    TooSmall {
        /// The slot device.
        path: PathBuf,
        /// Image size.
        size: u64,
        /// Slot size.
        capacity: u64,
    },
    /// Reading the image from the artifact failed (checksum included).
    #[error("reading the image failed")]
    Source(#[source] io::Error),
    /// What was read back differs from what was written.
    #[error("slot {path} does not hold the image after writing (read back {actual})")]
    Verify {
        /// The slot device.
        path: PathBuf,
        /// Hex SHA-256 read back.
        actual: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SlotError + '_ {
    move |source| SlotError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Size of a slot: a block device's size, or a regular file's length.
pub fn capacity(path: &Path) -> Result<u64, SlotError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    f.seek(SeekFrom::End(0)).map_err(io_err(path))
}

/// Streams `size` bytes of `image` into the slot, syncs it, reads it back and compares the
/// SHA-256 with `expected`. `progress` is called with the bytes written so far.
pub fn write_image(
    path: &Path,
    image: &mut dyn Read,
    size: u64,
    expected: [u8; 32],
    progress: &mut dyn FnMut(u64),
) -> Result<(), SlotError> {
    let capacity = capacity(path)?;
    if size > capacity {
        return Err(SlotError::TooSmall {
            path: path.to_owned(),
            size,
            capacity,
        });
    }
    let mut slot = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        let n = match image.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SlotError::Source(e)),
        };
        if written + n as u64 > size {
            return Err(SlotError::Source(io::Error::new(
                io::ErrorKind::InvalidData,
                "image longer than announced",
            )));
        }
        slot.write_all(&buf[..n]).map_err(io_err(path))?;
        written += n as u64;
        progress(written);
    }
    if written != size {
        return Err(SlotError::Source(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "image shorter than announced",
        )));
    }
    slot.sync_all().map_err(io_err(path))?;
    drop(slot);
    verify(path, size, expected)
}

/// Reads the first `size` bytes of the slot back and compares their SHA-256 with `expected`.
pub fn verify(path: &Path, size: u64, expected: [u8; 32]) -> Result<(), SlotError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut check = File::open(path).map_err(io_err(path))?.take(size);
    let mut hasher = Sha256::new();
    loop {
        let n = check.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let actual: [u8; 32] = hasher.finalize().into();
    if actual != expected {
        return Err(SlotError::Verify {
            path: path.to_owned(),
            actual: hex::encode(actual),
        });
    }
    Ok(())
}
