//! Any byte string given to the artifact reader ends in Ok or Err: never a panic, a hang or an
//! unbounded allocation.
#![no_main]

use std::io::Read as _;

use aloft_artifact::{ArtifactReader, ReadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = ArtifactReader::open(data, &ReadOptions::default()) else { return };
    let _ = reader.read_payloads(|file| {
        let mut sink = Vec::new();
        // Consumers may stop early; the reader must cope.
        if file.size() % 2 == 0 {
            file.take(100).read_to_end(&mut sink)?;
        } else {
            file.read_to_end(&mut sink)?;
        }
        Ok(())
    });
});
