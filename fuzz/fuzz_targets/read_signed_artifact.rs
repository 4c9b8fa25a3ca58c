//! The reader with a trusted key: the signature path (base64, RSA/ECDSA/Ed25519 decoding) must
//! never panic on hostile `manifest.sig` content.
#![no_main]

use std::sync::OnceLock;

use aloft_artifact::{ArtifactReader, KeyType, ReadOptions, SigningKey};
use libfuzzer_sys::fuzz_target;

fn options() -> &'static ReadOptions {
    static OPTIONS: OnceLock<ReadOptions> = OnceLock::new();
    OPTIONS.get_or_init(|| ReadOptions {
        trusted_keys: [KeyType::Ecdsa, KeyType::Ed25519]
            .into_iter()
            .map(|k| SigningKey::generate(k).expect("key").verifying_key())
            .collect(),
        ..ReadOptions::default()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(reader) = ArtifactReader::open(data, options()) {
        let _ = reader.validate();
    }
});
