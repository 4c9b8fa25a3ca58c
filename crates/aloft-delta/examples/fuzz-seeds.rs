//! Writes seed inputs of the `apply_delta` fuzz target into a folder: a 2-byte source length,
//! the source, a delta from it (generic and ext4-sized blocks, all four operations).
#![allow(missing_docs)]

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: fuzz-seeds DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut x = 7u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[3]
            })
            .collect()
    };
    let source = noise(16 << 10);
    for (i, bs) in [512u32, 1024, 4096].into_iter().enumerate() {
        let mut target = source[4096..12288].to_vec();
        target.extend(vec![0; 2048]);
        target.extend(noise(1500));
        let mut close = source[..4096].to_vec();
        close[10] ^= 1;
        target.extend(close);
        let mut delta = Vec::new();
        let options = aloft_delta::EncodeOptions {
            block_size: Some(bs),
            window_size: 4096,
            chunk_size: 4096,
            preset: 0,
            ..aloft_delta::EncodeOptions::default()
        };
        aloft_delta::encode(
            &source,
            source.len() as u64,
            &mut &target[..],
            target.len() as u64,
            &options,
            &mut delta,
            &mut |_, _, _| {},
        )
        .unwrap();
        let mut seed = u16::try_from(source.len()).unwrap().to_le_bytes().to_vec();
        seed.extend_from_slice(&source);
        seed.extend_from_slice(&delta);
        std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
    }
}
