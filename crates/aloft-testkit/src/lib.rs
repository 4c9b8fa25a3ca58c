//! Test helpers shared by the aloft crates: where the test vectors live, a raw artifact
//! crafter that can build any (also broken) member layout, and the named hostile fixtures.
//!
//! The crafter uses the `tar` crate on purpose: our own reader is then checked against an
//! independent tar writer. Nothing here is used by production code.

pub mod craft;
pub mod haproxy;
pub mod hostile;
pub mod images;
pub mod postgres;
pub mod s3;
pub mod vm;

use std::path::PathBuf;

/// `testdata/mender-artifacts` of this repository: artifacts written by mender-artifact 3.9,
/// with their inputs, keys and expected contents (its README says how they were made).
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/mender-artifacts")
}

/// A key file from the vectors' `keys/` folder, as text.
pub fn vector_key(name: &str) -> String {
    let path = vectors_dir().join("keys").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// SHA-256 of `data`, in lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

/// The members of an outer (uncompressed) tar, as (name, content).
pub fn outer_members(artifact: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read as _;
    let mut archive = tar::Archive::new(artifact);
    let mut out = Vec::new();
    for entry in archive.entries().expect("a tar") {
        let mut entry = entry.expect("a tar entry");
        let name = entry.path().expect("a path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("entry data");
        out.push((name, data));
    }
    out
}
