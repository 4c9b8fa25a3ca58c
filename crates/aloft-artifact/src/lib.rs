//! Reader and writer of the Mender artifact format (version 3; version 2 read), streaming, with
//! manifest checksums and `manifest.sig` signatures verified on the way.
//!
//! # The format
//!
//! A `.mender` file is an uncompressed tar whose members come in this order:
//!
//! ```text
//! version                       {"format":"mender","version":3}
//! manifest                      "<sha256>  <path>\n" for version, header.tar*, data/NNNN/<file>
//! manifest.sig                  optional: base64 signature over the manifest bytes
//! manifest-augment              optional (read only): unsigned lines for the augment parts
//! header.tar[.gz|.xz|.zst]      header-info, scripts/*, headers/NNNN/{type-info,meta-data}
//! header-augment.tar*           optional (read only): unsigned header override
//! data/NNNN.tar[.gz|.xz|.zst]   the payload files, each hashed by its uncompressed content
//! ```
//!
//! The trust chain: the signature covers the manifest, the manifest covers `version`, the
//! compressed header member and every payload file's content. Nothing else is trusted.
//!
//! # Reading
//!
//! [`ArtifactReader::open`] reads up to the payload data: it checks `version` against the
//! manifest, verifies the signature with the trusted keys (required when any key is given)
//! **before** parsing the header, checks the compressed header against the manifest before
//! decompressing it, and returns the parsed [`ArtifactInfo`]. The caller decides whether to
//! install (device type, depends); only then does [`ArtifactReader::read_payloads`] stream each
//! payload file to a callback as a [`PayloadFile`] (a [`std::io::Read`]), whose checksum is
//! checked when its end is read: a mismatch is an error from `read`, so a consumer never
//! mistakes bad content for a complete file. Memory stays bounded whatever the artifact size:
//! every buffered member has a cap in [`Limits`], data is only streamed.
//!
//! # Writing
//!
//! [`ArtifactWriter`] streams payload files once, hashing them while it compresses the data tar
//! into a spool file, then writes `version`, `manifest`, the optional signature, the header and
//! the spooled data. The output is what mender-artifact 3.9 accepts (unless zstd is chosen).
#![forbid(unsafe_code)]

mod compression;
mod error;
mod header;
pub mod keys;
mod manifest;
mod reader;
mod sign;
mod tar;
mod writer;

pub use compression::{Compression, ZSTD_DEFAULT_LEVEL};
pub use error::{ArtifactError, Result, error_chain};
pub use header::{
    ArtifactInfo, Augment, DependValue, FileRef, PayloadHeader, PayloadType, SCRIPT_STATES,
    SignatureState, StateScript, TypeInfo, check_file_name, check_label, check_script_name,
};
pub use keys::{Algorithm, KeyType, SigningKey, VerifyingKey};
pub use manifest::{Manifest, ManifestEntry, ManifestError};
pub use reader::{
    ArtifactReader, ConsumerError, FileSummary, PayloadFile, ReadOptions, ReadSummary,
};
pub use sign::{SignMode, sign_artifact};
pub use writer::{ArtifactWriter, MAX_FILE_NAME, PayloadSource, SoftwareVersioning, WriteSummary};

/// Size limits for everything the reader buffers, and decoder memory ceilings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `version` member.
    pub max_version: u64,
    /// `manifest` and `manifest-augment`.
    pub max_manifest: u64,
    /// `manifest.sig`.
    pub max_signature: u64,
    /// Compressed `header.tar*` member (it is buffered to be checked before it is parsed).
    pub max_header_compressed: u64,
    /// The decompressed header tar (a larger one is a decompression bomb).
    pub max_header_uncompressed: u64,
    /// Any one JSON file in the header.
    pub max_json: u64,
    /// xz decoder memory (mender-artifact 3.9 writes 64 MiB dictionaries).
    pub xz_memlimit: u64,
    /// log2 of the largest zstd window.
    pub zstd_window_log_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_version: 4 * 1024,
            max_manifest: 1024 * 1024,
            max_signature: 64 * 1024,
            max_header_compressed: 10 * 1024 * 1024,
            max_header_uncompressed: 16 * 1024 * 1024,
            max_json: 1024 * 1024,
            xz_memlimit: 128 * 1024 * 1024,
            zstd_window_log_max: 27,
        }
    }
}

impl Limits {
    fn decoder(&self) -> compression::DecoderLimits {
        compression::DecoderLimits {
            xz_memlimit: self.xz_memlimit,
            zstd_window_log_max: self.zstd_window_log_max,
        }
    }
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}
