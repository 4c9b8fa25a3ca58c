//! Integration tests of the artifact library: real mender-artifact 3.9 vectors, hostile input,
//! and write → read round trips.

mod hostile;
mod roundtrip;
mod vectors;

use aloft_artifact::{ArtifactReader, ReadOptions, ReadSummary, VerifyingKey};

/// Opens and validates `bytes` with the given trusted keys.
fn read_all(
    bytes: &[u8],
    keys: &[VerifyingKey],
) -> aloft_artifact::Result<(aloft_artifact::ArtifactInfo, ReadSummary)> {
    let options = ReadOptions {
        trusted_keys: keys.to_vec(),
        ..ReadOptions::default()
    };
    let reader = ArtifactReader::open(bytes, &options)?;
    let info = reader.info().clone();
    let summary = reader.validate()?;
    Ok((info, summary))
}

/// The error and all its sources, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    aloft_artifact::error_chain(e)
}
