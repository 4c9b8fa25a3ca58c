//! The one error type of the artifact library.
//!
//! Every variant names the member or file it is about; messages are lower-case and the reporter
//! prints sources. [`ArtifactError::is_integrity`] tells callers which failures mean "these bytes
//! are not what was signed" (never retry them) from plain I/O trouble (retry may help).

use std::io;

use crate::keys::{KeyError, SignatureError};
use crate::tar::TarError;

/// Result alias for this crate.
pub type Result<T, E = ArtifactError> = std::result::Result<T, E>;

/// Why an artifact could not be read, verified or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// Reading or writing the stream failed.
    #[error("i/o error in {member}")]
    Io {
        /// Member or file being processed.
        member: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The stream ended early.
    #[error("truncated artifact: {member} ends early ({reason})")]
    Truncated {
        /// Member being read.
        member: String,
        /// Where and what was missing.
        reason: String,
    },
    /// A tar stream is malformed.
    #[error("malformed tar in {member}: {reason}")]
    Tar {
        /// Member being read.
        member: String,
        /// What is wrong.
        reason: String,
    },
    /// Members are missing, extra, or out of order.
    #[error("invalid artifact structure: {0}")]
    Structure(String),
    /// The `version` member is unusable.
    #[error("invalid version file: {0}")]
    Version(String),
    /// A manifest is malformed.
    #[error("invalid {member}")]
    Manifest {
        /// `manifest` or `manifest-augment`.
        member: &'static str,
        /// The parse error.
        #[source]
        source: crate::manifest::ManifestError,
    },
    /// A covered file's content does not match its manifest checksum.
    #[error("checksum mismatch for {path}: manifest says {expected}, content is {actual}")]
    Checksum {
        /// Manifest path.
        path: String,
        /// Hex from the manifest.
        expected: String,
        /// Hex of what was read.
        actual: String,
    },
    /// A file that must be covered by the manifest has no line in it.
    #[error("checksum missing from the manifest for {path}")]
    ChecksumMissing {
        /// The path that should have been listed.
        path: String,
    },
    /// Manifest lines whose files never appeared.
    #[error("files listed in the manifest are missing from the artifact: {}", paths.join(", "))]
    MissingFiles {
        /// Their manifest paths.
        paths: Vec<String>,
    },
    /// The artifact is signed but the signature is bad or by an untrusted key.
    #[error("signature verification failed")]
    Signature(#[from] SignatureError),
    /// Trusted keys were configured but the artifact carries no signature.
    #[error("the artifact is not signed, but a signature is required (trusted keys were given)")]
    SignatureMissing,
    /// A tar entry that could escape its directory or is not a regular file.
    #[error("unsafe entry {name:?} in {member}: {reason}")]
    UnsafeEntry {
        /// Member holding the entry.
        member: String,
        /// Entry name.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// A header JSON file or header entry is invalid.
    #[error("invalid {file}: {reason}")]
    Header {
        /// The header file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// Something exceeds a size limit.
    #[error("{what} is too large: {size} bytes (limit {limit})")]
    TooLarge {
        /// What it is.
        what: String,
        /// Its size, or the size reached when reading stopped.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The caller's consumer of a payload file failed.
    #[error("consumer of payload file {file} failed")]
    Consumer {
        /// The payload file.
        file: String,
        /// The consumer's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Input to the writer breaks a rule of the format.
    #[error("cannot write artifact: {0}")]
    Invalid(String),
    /// A key could not be loaded.
    #[error("key error")]
    Key(#[from] KeyError),
}

impl ArtifactError {
    pub(crate) fn io(member: &str, source: io::Error) -> Self {
        // Our own readers report truncation and checksum failures through io::Error; unwrap them.
        if source.get_ref().is_some_and(
            <dyn std::error::Error + std::marker::Send + std::marker::Sync + 'static>::is::<
                ArtifactError,
            >,
        ) {
            return *source
                .into_inner()
                .expect("checked")
                .downcast::<ArtifactError>()
                .expect("checked");
        }
        if source.kind() == io::ErrorKind::UnexpectedEof {
            return Self::Truncated {
                member: member.to_owned(),
                reason: source.to_string(),
            };
        }
        if source.kind() == io::ErrorKind::InvalidData
            || source.kind() == io::ErrorKind::InvalidInput
        {
            return Self::Tar {
                member: member.to_owned(),
                reason: format!("corrupt compressed data: {source}"),
            };
        }
        Self::Io {
            member: member.to_owned(),
            source,
        }
    }

    pub(crate) fn tar(member: &str, e: TarError) -> Self {
        match e {
            TarError::Io { source, .. } => Self::io(member, source),
            TarError::Truncated { offset, what } => Self::Truncated {
                member: member.to_owned(),
                reason: format!("at byte {offset}: {what}"),
            },
            TarError::Corrupt { .. } => Self::Tar {
                member: member.to_owned(),
                reason: e.to_string(),
            },
        }
    }

    /// True when the bytes are wrong (checksum, signature, structure): retrying the same bytes
    /// cannot help. False for I/O errors and consumer failures.
    pub fn is_integrity(&self) -> bool {
        !matches!(self, Self::Io { .. } | Self::Consumer { .. })
    }
}

/// An error and all its sources on one line, `outer: inner: innermost`, for messages and
/// reports where no `{:#}` formatter (anyhow) is at hand.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
