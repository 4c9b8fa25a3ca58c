//! Test file system images: ext4 from a folder with `mke2fs -d` (no root, no loop device, as
//! `aloftctl image build` makes them), and bytes that do not compress.

use std::path::Path;
use std::process::Command;

/// Bytes that do not compress, the same for the same seed.
#[must_use]
pub fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

/// An ext4 image of `size` bytes at `out` holding `tree`, with `block` bytes per block (a fixed
/// UUID and time, so the same tree makes the same image).
///
/// # Panics
/// When `mke2fs` is missing or fails.
pub fn ext4(tree: &Path, out: &Path, size: u64, block: u32) -> Vec<u8> {
    let f = std::fs::File::create(out).unwrap();
    f.set_len(size).unwrap();
    let st = Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-b", &block.to_string(), "-U", "clear"])
        .args(["-E", "root_owner=0:0", "-d"])
        .arg(tree)
        .arg(out)
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .status()
        .expect("mke2fs (e2fsprogs) is needed");
    assert!(st.success(), "mke2fs failed");
    std::fs::read(out).unwrap()
}

/// `cp -a FROM TO`: a copy of a tree with its links, modes and times.
///
/// # Panics
/// When the copy fails.
pub fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a failed");
}

/// A root filesystem tree with `count` libraries of `size` bytes of noise in `usr/lib/` (the
/// seed of `lib{i}.so` is `i`): content that moves between releases but does not compress.
///
/// # Panics
/// When the folder cannot be written.
pub fn library_tree(dir: &Path, count: u64, size: usize) {
    std::fs::create_dir_all(dir.join("usr/lib")).unwrap();
    for i in 0..count {
        std::fs::write(dir.join(format!("usr/lib/lib{i}.so")), noise(i, size)).unwrap();
    }
}
