//! Why a delta could not be made or applied.

use std::io;

/// Why a delta was refused or could not be applied. The three causes a device reports apart:
/// the delta itself is damaged ([`DeltaError::Corrupt`]), the delta is fine but the running
/// slot is not the image it was made from ([`DeltaError::SourceMismatch`]), or reading the
/// source or writing the target failed ([`DeltaError::Source`], [`DeltaError::Sink`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeltaError {
    /// The delta's bytes do not check out: a digest, a length, a limit or an operation.
    #[error("delta corrupt: {0}")]
    Corrupt(String),
    /// The delta is intact but a window rebuilt from the source does not match the target's
    /// digest: the source is not the image the delta was made from (changed, trimmed, or
    /// another version).
    #[error(
        "source does not match: window {window} (target offset {offset}) differs from the image the delta was made for"
    )]
    SourceMismatch {
        /// Index of the first failing window.
        window: u64,
        /// Its offset in the target.
        offset: u64,
    },
    /// The delta is for another target than the one expected (its window list differs from
    /// the signed one).
    #[error("delta is for another target: {0}")]
    WrongTarget(String),
    /// Reading the delta stream failed.
    #[error("reading the delta failed")]
    Read(#[source] io::Error),
    /// Reading the source image failed.
    #[error("reading the source image at offset {offset} failed")]
    Source {
        /// The offset read.
        offset: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Writing a verified window failed.
    #[error("writing target window {window} failed")]
    Sink {
        /// The window index.
        window: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Reading the target image failed (encoder).
    #[error("reading the target image failed")]
    Target(#[source] io::Error),
    /// Writing the delta failed (encoder).
    #[error("writing the delta failed")]
    Write(#[source] io::Error),
    /// The encoder was given inconsistent input.
    #[error("cannot make the delta: {0}")]
    Input(String),
    /// Compression failed inside the codec.
    #[error("compression failed")]
    Codec(#[source] io::Error),
}

/// Result alias of this crate.
pub type Result<T, E = DeltaError> = std::result::Result<T, E>;

pub(crate) fn corrupt(what: impl Into<String>) -> DeltaError {
    DeltaError::Corrupt(what.into())
}
