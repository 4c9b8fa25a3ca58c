//! Block-image deltas for A/B root filesystems.
//!
//! [`encode`] turns a source image (the running slot) and a target image (the new release)
//! into a delta: every target block is zeros, a copy of a block from anywhere in the source,
//! a difference against a close source block, or new data; the new data and the differences
//! are two literal streams compressed in independently decodable chunks. Blocks are the
//! file system's own (ext2/3/4 superblocks are read for it); other images use 4 KiB blocks.
//!
//! [`Delta`] reads a delta as a stream and rebuilds the target one window at a time: a window
//! is handed to the [`Sink`] only after its SHA-256 matched the list in the header, and the
//! list's digest ([`Header::windows_digest`]) is what a signed artifact header carries. Every
//! part of the delta has its own digest, so a damaged delta ([`DeltaError::Corrupt`]) is told
//! apart from a source that is not the image the delta was made from
//! ([`DeltaError::SourceMismatch`]). The decoder holds one window, one chunk per stream and the
//! operation list; it never reads source blocks the target does not use.
//!
//! The byte layout is in [`mod@format`]. Must never: write a byte the window digest did not
//! cover; panic or allocate beyond the header's checked limits on hostile input.

#![forbid(unsafe_code)]

#[cfg(feature = "artifact")]
pub mod artifact;
mod codec;
mod decode;
mod describe;
mod encode;
mod error;
pub mod ext4;
pub mod format;
mod source;

pub use decode::{Delta, Sink};
pub use describe::Description;
pub use encode::{EncodeOptions, Filter, Phase, Stats, encode};
pub use error::{DeltaError, Result};
pub use format::{Header, windows_digest};
pub use source::{FileImage, ReadAt};

/// A [`Sink`] that collects the target in memory (tests, small images).
impl Sink for Vec<u8> {
    fn window(&mut self, _index: u64, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let at = usize::try_from(offset).map_err(std::io::Error::other)?;
        if self.len() < at + data.len() {
            self.resize(at + data.len(), 0);
        }
        self[at..at + data.len()].copy_from_slice(data);
        Ok(())
    }
}

/// The payload type of a delta artifact (an Update Module of this name could apply it on a
/// stock Mender client; aloft applies it natively).
pub const PAYLOAD_TYPE: &str = "aloft-delta";

/// The key of the delta's description in the payload's signed `meta-data`.
pub const META_KEY: &str = "aloft-delta";
