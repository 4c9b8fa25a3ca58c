//! What the encoder reads of an ext2/3/4 file system: its block size, from the superblock.
//! Files are allocated in whole blocks, so matching at the file system's own block size finds
//! every block that moved. Anything else is matched in the generic mode (4 KiB blocks).

/// The block size of an ext2/3/4 image from its superblock (1024 bytes in, magic `0xEF53`),
/// or `None` when `head` (the image's first 2048 bytes) is not one.
#[must_use]
pub fn block_size(head: &[u8]) -> Option<u32> {
    let sb = head.get(1024..1024 + 64)?;
    if u16::from_le_bytes([sb[56], sb[57]]) != 0xEF53 {
        return None;
    }
    let log = u32::from_le_bytes([sb[24], sb[25], sb[26], sb[27]]);
    (log <= 6).then(|| 1024u32 << log)
}

/// The block size of the generic mode.
pub const GENERIC_BLOCK: u32 = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_block_size_of_an_ext4_superblock_only() {
        let mut head = vec![0u8; 2048];
        assert_eq!(block_size(&head), None);
        head[1024 + 56] = 0x53;
        head[1024 + 57] = 0xEF;
        for (log, size) in [(0u8, 1024), (2, 4096), (6, 65536)] {
            head[1024 + 24] = log;
            assert_eq!(block_size(&head), Some(size));
        }
        head[1024 + 24] = 7;
        assert_eq!(block_size(&head), None, "out of range");
        assert_eq!(block_size(&head[..1500]), None, "short");
    }
}
