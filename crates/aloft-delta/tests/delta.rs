//! Round trips and refusals of the block-image delta.
#![allow(clippy::cast_possible_truncation, clippy::cast_lossless)] // test data from a small generator

use std::io;
use std::path::Path;

use aloft_delta::{Delta, DeltaError, EncodeOptions, Sink, encode};
use proptest::prelude::*;

fn make(source: &[u8], target: &[u8], options: &EncodeOptions) -> (Vec<u8>, aloft_delta::Stats) {
    let mut out = Vec::new();
    let stats = encode(
        source,
        source.len() as u64,
        &mut &target[..],
        target.len() as u64,
        options,
        &mut out,
        &mut |_, _, _| {},
    )
    .unwrap();
    (out, stats)
}

fn apply(delta: &[u8], source: &[u8]) -> Result<Vec<u8>, DeltaError> {
    let mut out = Vec::new();
    Delta::open(delta)?.apply(source, &mut out, 0, &mut |_, _| {})?;
    Ok(out)
}

/// A pseudo-random generator, so the tests need no dependency for it.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 24) as u8).collect()
    }
}

/// A source of random blocks, and a target that moves, keeps, zeroes, edits and adds blocks,
/// with a size that is not a multiple of the block size.
fn pair(bs: usize, blocks: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng(seed);
    let source = rng.bytes(bs * blocks);
    let mut target = Vec::new();
    for i in 0..blocks + 7 {
        match rng.next() % 6 {
            0 => target.extend(std::iter::repeat_n(0, bs)),
            1 => target.extend(rng.bytes(bs)),
            2 => {
                // A close block: a few bytes changed.
                let at = (rng.next() as usize % blocks) * bs;
                let mut b = source[at..at + bs].to_vec();
                b[rng.next() as usize % bs] ^= 0x5a;
                target.extend(b);
            }
            3 => target.extend_from_slice(&source[(i % blocks) * bs..(i % blocks + 1) * bs]),
            _ => {
                let at = (rng.next() as usize % blocks) * bs;
                target.extend_from_slice(&source[at..at + bs]);
            }
        }
    }
    target.truncate(target.len() - bs / 3);
    (source, target)
}

fn small() -> EncodeOptions {
    EncodeOptions {
        block_size: Some(1024),
        window_size: 8192,
        chunk_size: 4096,
        preset: 1,
        ..EncodeOptions::default()
    }
}

#[test]
fn generic_images_round_trip_with_every_kind_of_block() {
    let (source, target) = pair(1024, 300, 7);
    let (delta, stats) = make(&source, &target, &small());
    assert_eq!(apply(&delta, &source).unwrap(), target);
    assert!(stats.copy_blocks > 0 && stats.zero_blocks > 0, "{stats:?}");
    assert!(stats.diff_blocks > 0 && stats.data_blocks > 0, "{stats:?}");
    assert!(
        delta.len() < target.len() / 2,
        "{} of {}",
        delta.len(),
        target.len()
    );
    // The header names the target and the source.
    let d = Delta::open(&delta[..]).unwrap();
    assert_eq!(d.header().target_size, target.len() as u64);
    assert_eq!(d.header().source_sha256, sha(&source));
    assert_eq!(d.header().target_sha256, sha(&target));
}

fn sha(b: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(b).into()
}

/// Records every window the decoder hands over, so a test sees what would reach the slot.
struct Recorder<'a> {
    target: &'a [u8],
    written: Vec<u64>,
}
impl Sink for Recorder<'_> {
    fn window(&mut self, index: u64, offset: u64, data: &[u8]) -> io::Result<()> {
        let at = offset as usize;
        assert_eq!(
            data,
            &self.target[at..at + data.len()],
            "a wrong byte reached the slot in window {index}"
        );
        self.written.push(index);
        Ok(())
    }
}

#[test]
fn damage_anywhere_is_refused_before_a_wrong_byte_is_written() {
    let (source, target) = pair(1024, 200, 11);
    let (delta, _) = make(&source, &target, &small());
    let header_len = Delta::open(&delta[..]).unwrap().header().to_bytes().len();
    // A flipped byte in the header, the operations, the first and the last chunk.
    let ops_len = Delta::open(&delta[..]).unwrap().header().ops_len as usize;
    for at in [
        3,
        20,
        header_len - 1,
        header_len + ops_len / 2,
        header_len + ops_len + 5,
        delta.len() - 2,
    ] {
        let mut bad = delta.clone();
        bad[at] ^= 1;
        let mut rec = Recorder {
            target: &target,
            written: vec![],
        };
        let r =
            Delta::open(&bad[..]).and_then(|d| d.apply(&source[..], &mut rec, 0, &mut |_, _| {}));
        assert!(matches!(r, Err(DeltaError::Corrupt(_))), "byte {at}: {r:?}");
    }
    // Cut short anywhere.
    for len in [0, 10, header_len, header_len + ops_len, delta.len() - 1] {
        let mut rec = Recorder {
            target: &target,
            written: vec![],
        };
        let r = Delta::open(&delta[..len])
            .and_then(|d| d.apply(&source[..], &mut rec, 0, &mut |_, _| {}));
        assert!(
            matches!(r, Err(DeltaError::Corrupt(_))),
            "cut at {len}: {r:?}"
        );
    }
    // Trailing bytes.
    let mut long = delta.clone();
    long.push(0);
    assert!(matches!(apply(&long, &source), Err(DeltaError::Corrupt(_))));
}

#[test]
fn a_changed_source_is_told_apart_and_stops_at_its_window() {
    let (source, target) = pair(1024, 200, 13);
    let (delta, _) = make(&source, &target, &small());
    let header = Delta::open(&delta[..]).unwrap().header().clone();
    // Change one byte of a source block that the target copies, in its last third.
    let mut rebuilt: Vec<(u64, u64)> = Vec::new(); // (target block, source block)
    {
        let bs = 1024;
        for (i, b) in target.chunks(bs).enumerate() {
            if let Some(p) = source
                .chunks(bs)
                .position(|s| s == b && b.iter().any(|x| *x != 0))
            {
                rebuilt.push((i as u64, p as u64));
            }
        }
    }
    let (tblock, sblock) = *rebuilt.iter().rev().nth(5).unwrap();
    let mut drifted = source.clone();
    drifted[(sblock * 1024 + 100) as usize] ^= 0xff;
    let mut rec = Recorder {
        target: &target,
        written: vec![],
    };
    let r = Delta::open(&delta[..])
        .unwrap()
        .apply(&drifted[..], &mut rec, 0, &mut |_, _| {});
    let Err(DeltaError::SourceMismatch { window, .. }) = r else {
        panic!("{r:?}")
    };
    assert!(window <= tblock / 8, "{window} {tblock}");
    assert_eq!(
        rec.written,
        (0..window).collect::<Vec<_>>(),
        "only windows before it"
    );
    // Another source altogether: refused at the first window that copies.
    let other = pair(1024, 200, 99).0;
    let r = apply(&delta, &other);
    assert!(matches!(r, Err(DeltaError::SourceMismatch { .. })), "{r:?}");
    assert_ne!(header.source_sha256, sha(&other));
}

#[test]
fn a_resumed_apply_writes_only_the_remaining_windows_and_they_match() {
    let (source, target) = pair(1024, 200, 17);
    let (delta, _) = make(&source, &target, &small());
    let mut rec = Recorder {
        target: &target,
        written: vec![],
    };
    Delta::open(&delta[..])
        .unwrap()
        .apply(&source[..], &mut rec, 10, &mut |_, _| {})
        .unwrap();
    let windows = target.len().div_ceil(8192) as u64;
    assert_eq!(rec.written, (10..windows).collect::<Vec<_>>());
}

#[test]
fn the_encoder_refuses_inconsistent_input_with_a_reason() {
    let (source, target) = pair(1024, 20, 3);
    let enc = |opts: &EncodeOptions, size: u64| {
        let mut out = Vec::new();
        encode(
            &source[..],
            source.len() as u64,
            &mut &target[..],
            size,
            opts,
            &mut out,
            &mut |_, _, _| {},
        )
        .map(|_| out)
    };
    let cases: [(EncodeOptions, u64, &str); 4] = [
        (
            EncodeOptions {
                block_size: Some(1000),
                ..small()
            },
            target.len() as u64,
            "block size",
        ),
        (
            EncodeOptions {
                window_size: 3000,
                ..small()
            },
            target.len() as u64,
            "window size",
        ),
        (small(), target.len() as u64 + 1, "ended at"),
        (small(), target.len() as u64 - 1, "longer than"),
    ];
    for (opts, size, says) in cases {
        let e = enc(&opts, size).unwrap_err().to_string();
        assert!(e.contains(says), "{says}: {e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_edits_round_trip(seed in 1u64.., blocks in 1usize..60, bs_log in 9u32..13) {
        let bs = 1usize << bs_log;
        let (source, target) = pair(bs, blocks, seed);
        let opts = EncodeOptions { block_size: Some(bs as u32), window_size: 1 << 14, chunk_size: 1 << 13, preset: 0, ..EncodeOptions::default() };
        let (delta, _) = make(&source, &target, &opts);
        prop_assert_eq!(apply(&delta, &source).unwrap(), target);
    }
}

fn ext4(dir: &Path, out: &Path, block: u32) -> Vec<u8> {
    aloft_testkit::images::ext4(dir, out, 16 << 20, block)
}

#[test]
fn ext4_pairs_round_trip_at_their_own_block_size() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = tmp.path().join("v1");
    let mut rng = Rng(5);
    std::fs::create_dir_all(v1.join("usr/bin")).unwrap();
    std::fs::create_dir_all(v1.join("etc")).unwrap();
    for i in 0..40 {
        std::fs::write(
            v1.join(format!("usr/bin/tool{i}")),
            rng.bytes(3000 + i * 977),
        )
        .unwrap();
    }
    std::fs::write(v1.join("etc/status"), rng.bytes(20000)).unwrap();
    std::fs::write(v1.join("etc/removed"), rng.bytes(9000)).unwrap();
    let v2 = tmp.path().join("v2");
    aloft_testkit::images::copy_tree(&v1, &v2);
    // Added, removed, modified, renamed, a hard link, a symlink, a sparse file.
    std::fs::write(v2.join("usr/bin/new"), rng.bytes(50000)).unwrap();
    std::fs::remove_file(v2.join("etc/removed")).unwrap();
    let mut modified = std::fs::read(v2.join("usr/bin/tool3")).unwrap();
    modified[1500] ^= 1;
    modified.extend(rng.bytes(700));
    std::fs::write(v2.join("usr/bin/tool3"), modified).unwrap();
    std::fs::rename(v2.join("etc/status"), v2.join("etc/status-old")).unwrap();
    std::fs::hard_link(v2.join("usr/bin/tool5"), v2.join("usr/bin/tool5-link")).unwrap();
    std::os::unix::fs::symlink("tool6", v2.join("usr/bin/tool6-link")).unwrap();
    let sparse = std::fs::File::create(v2.join("etc/sparse")).unwrap();
    sparse.set_len(5 << 20).unwrap();
    for block in [1024u32, 4096] {
        let a = ext4(&v1, &tmp.path().join("a.img"), block);
        let b = ext4(&v2, &tmp.path().join("b.img"), block);
        let (delta, stats) = make(
            &a,
            &b,
            &EncodeOptions {
                preset: 6,
                ..EncodeOptions::default()
            },
        );
        assert_eq!(stats.block_size, block, "the file system's block size");
        assert_eq!(apply(&delta, &a).unwrap(), b, "block size {block}");
        // Only the new and changed content travels: well under the new file's 50 kB plus the
        // metadata, against a 16 MiB image.
        assert!(
            delta.len() < 120_000,
            "{block}: {} bytes, {stats:?}",
            delta.len()
        );
    }
}
