//! A delta as a device receives it: whatever the bytes, the decoder must not panic or
//! allocate beyond its limits, and what it accepts must be the target its header names.
//! Input: a 2-byte source length, the source, then the delta.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::Digest as _;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = usize::from(u16::from_le_bytes([data[0], data[1]])).min(data.len() - 2);
    let (source, delta) = data[2..].split_at(n);
    let Ok(d) = aloft_delta::Delta::open(delta) else {
        return;
    };
    let target: [u8; 32] = d.header().target_sha256;
    let size = d.header().target_size;
    if size > 64 << 20 {
        return; // the sink is memory here
    }
    let mut out = Vec::new();
    if d.apply(source, &mut out, 0, &mut |_, _| {}).is_ok() {
        assert_eq!(out.len() as u64, size);
        assert_eq!(<[u8; 32]>::from(sha2::Sha256::digest(&out)), target);
    }
});
